"""MUSAN/RIR-style waveform augmentation of training views: additive noise, music or babble at a
random SNR, reverberation with a room impulse response, optional speed and volume perturbation.

Per call (one view), with probability ``prob`` the view is augmented as follows, in order:
speed perturbation (a factor drawn from ``speed``), reverberation (with probability
``reverb.prob``), a random equaliser (with probability ``eq.prob``: a different "channel" per
view, so that crops cannot be matched by their recording's frequency response), one additive
category drawn by ``weight`` among ``noise``/``music``/``babble`` (``num_speakers`` sources summed,
each at equal power, then scaled to an SNR drawn uniformly from ``snr`` dB relative to the view),
and a gain drawn from ``volume`` dB. With ``reverb.weight`` set, reverberation is instead one of the
drawn effects (reverb or one additive category, never both: voxceleb_trainer's scheme). The output
has the input's length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from sslspk.augment.sources import AudioSource
from sslspk.utils.config import ConfigError, check_ranges, from_dict

ADDITIVE = ("noise", "music", "babble")
#: Per-category defaults (MUSAN recipe ranges).
ADDITIVE_DEFAULTS: dict[str, dict[str, Any]] = {
    "noise": {"snr": [0.0, 15.0], "num_speakers": [1, 1]},
    "music": {"snr": [5.0, 15.0], "num_speakers": [1, 1]},
    "babble": {"snr": [13.0, 20.0], "num_speakers": [3, 7]},
}


@dataclass
class AdditiveConfig:
    """One additive category (``augment.noise`` / ``music`` / ``babble``)."""

    source: str | None = None  # Kaldi data dir (wav.scp) or list file of audio paths
    snr: list[float] = field(default_factory=lambda: [0.0, 15.0])  # dB range
    weight: float = 1.0  # relative probability of this category
    num_speakers: list[int] = field(default_factory=lambda: [1, 1])  # sources summed (babble: 3-7)
    snr_per_source: bool = False  # true: each source at its own SNR drawn from ``snr`` relative to the view, then
                                  # summed (voxceleb_trainer's babble); false: their equal-power sum at one SNR

    def __post_init__(self) -> None:
        check_ranges(self, weight=">=0", num_speakers=">=1")


@dataclass
class ReverbConfig:
    """``augment.reverb``: room impulse responses."""

    source: str | None = None
    prob: float = 0.3  # probability that an augmented view is reverberated (before its additive noise)
    weight: float | None = None  # set: reverb is drawn by this weight among the additive categories
                                 # instead (one effect per augmented view); prob is then not used

    def __post_init__(self) -> None:
        check_ranges(self, prob="[0,1]")


@dataclass
class EQConfig:
    """``augment.eq``: random parametric equaliser (peaking / low-shelf / high-shelf biquads)."""

    prob: float = 0.5                     # probability that an augmented view is equalised
    bands: list[int] = field(default_factory=lambda: [1, 3])            # number of biquads
    gain_db: list[float] = field(default_factory=lambda: [-12.0, 12.0])  # gain of each band

    def __post_init__(self) -> None:
        check_ranges(self, prob="[0,1]", bands=">=1")


@dataclass
class AugmentConfig:
    """The ``augment:`` block (sub-blocks as plain dicts, parsed by :meth:`Augmenter.from_config`)."""

    prob: float = 0.6
    noise: dict | None = None
    music: dict | None = None
    babble: dict | None = None
    reverb: dict | None = None
    eq: dict | None = None
    speed: list[float] | None = None  # e.g. [0.9, 1.0, 1.1]
    volume: list[float] | None = None  # gain range in dB, e.g. [-6, 6]
    cache_mb: float = 512.0  # decoded-audio cache per source

    def __post_init__(self) -> None:
        check_ranges(self, prob="[0,1]", speed=">0", cache_mb=">=0")


def _range(value: Any, where: str, cast: type = float) -> tuple[Any, Any]:
    try:
        lo, hi = (cast(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected [low, high], got {value!r}") from None
    if lo > hi:
        raise ConfigError(f"{where}: low {lo} > high {hi}")
    return lo, hi


def _check_prob(value: float, where: str) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{where}: expected a probability in [0, 1], got {value!r}")
    return float(value)


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``signal + g * noise`` with ``g`` such that ``10 log10(P_signal / P_{g noise}) = snr_db``.

    Powers are means over the whole arrays; a silent signal or noise is returned unchanged.
    """
    ps = float(np.mean(np.square(signal, dtype=np.float64)))
    pn = float(np.mean(np.square(noise, dtype=np.float64)))
    if ps <= 0.0 or pn <= 0.0:
        return signal
    return signal + np.sqrt(ps / (pn * 10.0 ** (snr_db / 10.0))) * noise


def reverberate(signal: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with ``rir`` aligned and scaled so that its direct path (largest |peak|) is a unit
    impulse at lag 0: the output keeps the input's length, timing and direct-sound level."""
    from scipy.signal import fftconvolve

    rir = np.asarray(rir, dtype=np.float64)
    d = int(np.argmax(np.abs(rir)))
    if rir[d] == 0.0:
        return signal
    h = rir[d:] / rir[d]
    return fftconvolve(signal, h)[:len(signal)]


def biquad(kind: str, freq: float, q: float, gain_db: float, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """``(b, a)`` of a peaking or shelving equaliser biquad (the audio-EQ-cookbook formulas)."""
    amp = 10.0 ** (gain_db / 40.0)
    w0 = 2 * np.pi * freq / sample_rate
    cw, alpha = np.cos(w0), np.sin(w0) / (2 * q)
    if kind == "peaking":
        b = [1 + alpha * amp, -2 * cw, 1 - alpha * amp]
        a = [1 + alpha / amp, -2 * cw, 1 - alpha / amp]
    else:
        sq = 2 * np.sqrt(amp) * alpha
        sign = 1 if kind == "lowshelf" else -1
        b = [amp * ((amp + 1) - sign * (amp - 1) * cw + sq), sign * 2 * amp * ((amp - 1) - sign * (amp + 1) * cw),
             amp * ((amp + 1) - sign * (amp - 1) * cw - sq)]
        a = [(amp + 1) + sign * (amp - 1) * cw + sq, -sign * 2 * ((amp - 1) + sign * (amp + 1) * cw),
             (amp + 1) + sign * (amp - 1) * cw - sq]
    b, a = np.asarray(b), np.asarray(a)
    return b / a[0], a / a[0]


def random_eq(signal: np.ndarray, cfg: EQConfig, sample_rate: int, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """Filter through ``cfg.bands`` random biquads; returns the signal and the bands used."""
    from scipy.signal import lfilter

    bands = []
    for _ in range(int(rng.integers(cfg.bands[0], cfg.bands[1] + 1))):
        kind = ("peaking", "lowshelf", "highshelf")[int(rng.integers(3))]
        freq = float(np.exp(rng.uniform(np.log(100.0), np.log(0.4 * sample_rate))))
        q = float(rng.uniform(0.5, 2.0))
        gain = float(rng.uniform(*cfg.gain_db))
        b, a = biquad(kind, freq, q, gain, sample_rate)
        signal = lfilter(b, a, signal)
        bands.append((kind, round(freq), round(q, 2), round(gain, 1)))
    return signal, bands


def change_speed(signal: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """Speed (tempo and pitch) perturbation by resampling, then a random crop or zero padding to the input length."""
    if factor == 1.0:
        return signal
    from scipy.signal import resample_poly

    frac = Fraction(factor).limit_denominator(100)
    y = resample_poly(signal, frac.denominator, frac.numerator)
    n = len(signal)
    if len(y) >= n:
        start = int(rng.integers(0, len(y) - n + 1))
        return y[start:start + n]
    return np.pad(y, (0, n - len(y)))


class Augmenter:
    """Callable ``augmenter(wav [T] float32, rng) -> wav [T] float32`` (see module docstring).

    :meth:`apply` also returns what was done (``info``: category, SNR, source ids, RIR id, ...).
    """

    def __init__(self, sample_rate: int, prob: float = 0.6,
                 additive: dict[str, tuple[AdditiveConfig, AudioSource]] | None = None,
                 reverb: tuple[ReverbConfig, AudioSource] | None = None, eq: EQConfig | None = None,
                 speed: list[float] | None = None, volume: tuple[float, float] | None = None):
        self.sample_rate = sample_rate
        self.prob = prob
        self.additive = {k: v for k, v in (additive or {}).items() if v[0].weight > 0}
        self.reverb = reverb
        self.eq = eq
        self.speed = list(speed) if speed else None
        self.volume = volume

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None, sample_rate: int) -> "Augmenter":
        """Build from an ``augment:`` block (``None``/empty: an augmenter that changes nothing).

        Sources are listed (and checked to exist and be non-empty) now; audio is read on first use.
        """
        if not cfg:
            return cls(sample_rate, 0.0)
        c = from_dict(AugmentConfig, cfg, "augment")
        prob = _check_prob(c.prob, "augment.prob")
        additive: dict[str, tuple[AdditiveConfig, AudioSource]] = {}
        for name in ADDITIVE:
            block = getattr(c, name)
            if block is None:
                continue
            if not isinstance(block, dict):
                raise ConfigError(f"augment.{name}: expected a mapping or null, got {block!r}")
            a = from_dict(AdditiveConfig, {**ADDITIVE_DEFAULTS[name], **block}, f"augment.{name}")
            if not a.source:
                raise ConfigError(f"augment.{name}: 'source' is required (a data dir or list file)")
            a.snr = list(_range(a.snr, f"augment.{name}.snr"))
            a.num_speakers = list(_range(a.num_speakers, f"augment.{name}.num_speakers", int))
            if a.num_speakers[0] < 1:
                raise ConfigError(f"augment.{name}.num_speakers: need at least 1, got {a.num_speakers}")
            if not isinstance(a.weight, (int, float)) or a.weight < 0:
                raise ConfigError(f"augment.{name}.weight: expected a non-negative number, got {a.weight!r}")
            additive[name] = (a, AudioSource(a.source, sample_rate, name, c.cache_mb))
        reverb = None
        if c.reverb is not None:
            if not isinstance(c.reverb, dict):
                raise ConfigError(f"augment.reverb: expected a mapping or null, got {c.reverb!r}")
            r = from_dict(ReverbConfig, c.reverb, "augment.reverb")
            if not r.source:
                raise ConfigError("augment.reverb: 'source' is required (a data dir or list file of RIRs)")
            r.prob = _check_prob(r.prob, "augment.reverb.prob")
            if r.weight is not None and ("prob" in c.reverb or not r.weight > 0):
                raise ConfigError(f"augment.reverb: weight (a positive number, got {r.weight!r}) replaces prob: "
                                  "give one of them")
            reverb = (r, AudioSource(r.source, sample_rate, "reverb", c.cache_mb))
        eq = None
        if c.eq is not None:
            if not isinstance(c.eq, dict):
                raise ConfigError(f"augment.eq: expected a mapping or null, got {c.eq!r}")
            eq = from_dict(EQConfig, c.eq, "augment.eq")
            eq.prob = _check_prob(eq.prob, "augment.eq.prob")
            eq.bands = list(_range(eq.bands, "augment.eq.bands", int))
            eq.gain_db = list(_range(eq.gain_db, "augment.eq.gain_db"))
        speed = None
        if c.speed:
            try:
                speed = [float(f) for f in c.speed]
            except (TypeError, ValueError):
                raise ConfigError(f"augment.speed: expected a list of factors, got {c.speed!r}") from None
            if min(speed) <= 0:
                raise ConfigError(f"augment.speed: factors must be positive, got {speed}")
        volume = _range(c.volume, "augment.volume") if c.volume is not None else None
        return cls(sample_rate, prob, additive, reverb, eq, speed, volume)

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(wav, rng)[0]

    def _reverberate(self, x: np.ndarray, rng: np.random.Generator, info: dict[str, Any]) -> np.ndarray:
        src = self.reverb[1]
        i = int(rng.integers(len(src)))
        info["reverb"] = src.id(i)
        return reverberate(x, src.load(i))

    def apply(self, wav: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        """Augment one view; returns ``(float32 samples of the same length, info)``."""
        wav = np.asarray(wav)
        if wav.ndim != 1:
            raise ValueError(f"expected a 1-D waveform, got shape {wav.shape}")
        info: dict[str, Any] = {"augmented": False}
        if len(wav) == 0 or rng.uniform() >= self.prob:
            return wav.astype(np.float32, copy=True), info
        info["augmented"] = True
        x = wav.astype(np.float64)
        n = len(x)
        if self.speed:
            factor = float(self.speed[int(rng.integers(len(self.speed)))])
            x = change_speed(x, factor, rng)
            info["speed"] = factor
        reverb_drawn = self.reverb is not None and self.reverb[0].weight is not None
        if self.reverb is not None and not reverb_drawn and rng.uniform() < self.reverb[0].prob:
            x = self._reverberate(x, rng, info)
        if self.eq is not None and rng.uniform() < self.eq.prob:
            x, info["eq"] = random_eq(x, self.eq, self.sample_rate, rng)
        names = list(self.additive) + (["reverb"] if reverb_drawn else [])
        if names:
            weights = np.array([self.additive[k][0].weight if k != "reverb" else self.reverb[0].weight
                                for k in names], dtype=np.float64)
        name = names[int(rng.choice(len(names), p=weights / weights.sum()))] if names else None
        if name == "reverb":
            x = self._reverberate(x, rng, info)
        elif name is not None:
            a, src = self.additive[name]
            k = int(rng.integers(a.num_speakers[0], a.num_speakers[1] + 1))
            picks = rng.choice(len(src), size=k, replace=k > len(src))
            segs = [src.segment(int(i), n, rng).astype(np.float64) for i in picks]
            if a.snr_per_source:
                snrs = [float(rng.uniform(a.snr[0], a.snr[1])) for _ in segs]
                x = x + sum(mix_at_snr(x, seg, snr) - x for seg, snr in zip(segs, snrs))
                info.update(additive=name, snr_db=snrs, sources=[src.id(int(i)) for i in picks])
            else:
                noise = np.zeros(n)
                for seg in segs:
                    p = float(np.mean(seg ** 2))
                    noise += seg / np.sqrt(p) if p > 0 else seg
                snr = float(rng.uniform(a.snr[0], a.snr[1]))
                x = mix_at_snr(x, noise, snr)
                info.update(additive=name, snr_db=snr, sources=[src.id(int(i)) for i in picks])
        if self.volume is not None:
            gain = float(rng.uniform(*self.volume))
            x = x * 10.0 ** (gain / 20.0)
            info["gain_db"] = gain
        return x.astype(np.float32), info
