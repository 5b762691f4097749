"""Acoustic front-ends computed on the fly: batched Kaldi fbank, MFCC, log-mel, CMN, SpecAugment."""

from sslspk.frontend.features import Frontend, FrontendConfig, KaldiFbank
from sslspk.frontend.specaug import SpecAugConfig, SpecAugment

__all__ = ["Frontend", "FrontendConfig", "KaldiFbank", "SpecAugConfig", "SpecAugment"]
