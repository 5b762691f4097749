"""Waveform augmentation for SSL views: MUSAN-style noise/music/babble, RIR reverberation, speed, volume."""

from sslspk.augment.augmenter import Augmenter, mix_at_snr, reverberate
from sslspk.augment.sources import AudioSource, SourceError

__all__ = ["AudioSource", "Augmenter", "SourceError", "mix_at_snr", "reverberate"]
