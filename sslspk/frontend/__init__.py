"""Acoustic front-ends computed on the fly: Kaldi fbank/MFCC, log-mel, CMN."""
