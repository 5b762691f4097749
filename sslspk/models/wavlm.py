"""Pretrained speech encoder (Hugging Face ``transformers``) with a speaker-embedding head.

``model: {type: pretrained, pretrained: microsoft/wavlm-base-plus, backbone: auto, ...}`` loads the
backbone with ``from_pretrained`` (a hub name or a local ``save_pretrained`` directory) and adds a
pooling head over its hidden states. ``type: wavlm`` is the same model (the name of existing configs
and experiment directories). ``backbone`` (default ``auto``: the ``model_type`` of the checkpoint's
``config.json``) is one of

* ``wavlm``, ``hubert``, ``wav2vec2``: ``WavLMModel`` / ``HubertModel`` / ``Wav2Vec2Model`` on the raw
  waveform (CNN feature encoder → projection → positional convolution → Transformer layers);
* ``whisper``: the encoder of a Whisper checkpoint (a ``WhisperModel`` or
  ``WhisperForConditionalGeneration`` checkpoint, whose ``.encoder`` is taken, or a ``WhisperEncoder``
  one, its ``config.json`` ``architectures`` saying ``WhisperEncoder``). Its input is the log-mel
  spectrogram of ``WhisperFeatureExtractor``, computed here in torch (:class:`WhisperLogMel`, batched,
  on the model's device) with the extractor's mel filterbank, *without* padding to 30 s: the layers are
  called here (conv1 → GELU → conv2 (stride 2) → GELU → + rows ``[:T]`` of the positional table →
  Transformer layers → final LayerNorm), as ``WhisperEncoder.forward`` insists on 3000 mel frames.
  Inputs longer than the table (30 s) are cut into 30-s windows, each encoded on its own (positions
  restarting at 0), and their frames concatenated before pooling.

The hidden states are transformers' ``output_hidden_states`` list for every backbone: the input of
the first Transformer layer, then each layer's output, the last after the encoder's final LayerNorm
when the model has one there (``do_stable_layer_norm`` wav2vec2/WavLM Large, Whisper); ``num_layers: K``
keeps only the first ``K`` Transformer layers (the backbone is built with ``K`` layers, the others'
weights are not loaded), so the last state is then layer ``K``'s output through that final LayerNorm.

* ``layer_weighting``: how the hidden states are combined: ``weighted_sum`` (learnable
  softmax-normalised weights), ``average`` or ``last``.
* ``head: ecapa``: two TDNN layers of ``head_channels`` (the second residual and dilated) →
  attentive statistics pooling → BN → Linear → BN.
* ``head: mhfa``: multi-head factorized attentive pooling (Peng et al., SLT 2022): keys and
  values come from two separate layer weightings, each compressed by a linear layer to
  ``mhfa_compression`` dims; ``mhfa_heads`` attention distributions over time are computed
  from the keys; each head's weighted mean of the values is concatenated → Linear.
* ``head: stats``: the mean and standard deviation over time of each hidden state (padded frames
  left out), concatenated, standardised by a BatchNorm1d → Linear (a learned linear map of the frozen
  statistics that a shrinkage LDA found speaker-discriminative in issue #29; the Linear weighs the
  layers, so ``layer_weighting`` must stay at its default and is not used).

``freeze_cnn`` (default true, as theolepage/wavlm_ssl_sv:models/Baseline/WavLM.py runs its CNN
under ``torch.no_grad`` and leaves it out of the optimiser) keeps the convolutional front of the
backbone at its pretrained weights: the CNN feature encoder, or Whisper's conv1 and conv2 (its
analogue: the convolutions before the Transformer): ``requires_grad`` false, no graph built through
it, and not in :meth:`backbone_parameters`. (A gradient *scale* on the CNN would not do this: Adam(W)
divides each parameter's step by its own gradient's RMS, so a constant scale changes nothing but the
relative weight of Adam's epsilon.) Whisper's sinusoidal positional table is never trained (as in
``transformers``). :meth:`backbone_layer_parameters` (one list per Transformer layer, bottom first)
and :meth:`backbone_other_parameters` (the rest of the trainable backbone) let an optimiser give each
layer its own learning rate; :meth:`head_parameters` and :meth:`set_backbone_trainable` support a
head-only training (``freeze_backbone`` here: the backbone's parameters do not require gradients, the one way
to freeze it).

``mask_time_prob`` / ``mask_feature_prob`` set the SpecAugment-style masking that ``transformers``
applies to the projected CNN features in training (``WavLMConfig``'s own default turns time
masking on, at 0.05); both default to 0 whatever the checkpoint's ``config.json`` says, as the
authors' fine-tuning calls ``extract_features`` without ``mask=True``. The Whisper encoder has no such
masking (non-zero values are a ConfigError). The dropout rates are the checkpoint's own, as in
the authors' code (which reads them from the checkpoint's ``cfg``).

Input: raw 16 kHz waveforms ``[B, T]``: equal-length crops in training; zero-padded
utterances with their ``lengths`` in extraction, which embed as one at a time only when the
front-end treats each frame on its own: a CNN feature encoder that normalises each frame
(``feat_extract_norm: layer``, WavLM Large, HuBERT Large, wav2vec 2.0 Large-lv60) or Whisper (the
spectrogram of each row reflects at its own end, its log floor is its own maximum - 8, padded frames
are zeroed before each convolution): then the Transformer gets an attention mask and the head masks
the padded frames. WavLM/HuBERT/wav2vec 2.0 Base (``group``) normalise each CNN channel over the
whole input, padding included, so their embeddings change with padding and
:attr:`PretrainedEncoder.honours_lengths` is false (extraction then batches equal-length utterances
only). ``normalize`` applies the per-utterance zero-mean/unit-variance normalisation of
``Wav2Vec2FeatureExtractor`` (``do_normalize``). It defaults to false because ``microsoft/wavlm-base-plus``
ships ``do_normalize: false`` in its ``preprocessor_config.json``; WavLM Large expects ``true``.
``layerdrop`` (default: the checkpoint's ``config.json`` value, ``encoder_layerdrop`` for Whisper, as
the authors' code takes ``encoder_layerdrop`` from the checkpoint's ``cfg`` and applies it in training)
skips each Transformer layer with that probability in training: the skipped layer's output is
its input, so the layer weighting still gets every hidden state. It is applied here rather than by
``transformers`` (whose own layer drop is disabled at load time), since ``transformers`` records
the hidden states with hooks on the layers and a skipped layer would shorten their list. WavLM's
first layer is never skipped (as in ``transformers``: it computes the relative position bias the
others reuse); the authors' WavLM.py may skip it too, which then runs that step without position bias.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sslspk.frontend.features import frame_mask
from sslspk.models.base import Model
from sslspk.models.pooling import AttentiveStatsPool
from sslspk.utils.config import ConfigError, from_dict

LAYER_WEIGHTINGS = ("weighted_sum", "average", "last")
HEADS = ("ecapa", "mhfa", "stats")
#: ``backbone`` values; ``auto`` reads the checkpoint's ``config.json`` ``model_type``.
BACKBONES = ("auto", "wavlm", "hubert", "wav2vec2", "whisper")
#: The sample rate every supported backbone was pretrained on.
SAMPLE_RATE = 16000


@dataclass
class PretrainedEncoderConfig:
    """Keys of a ``model: {type: pretrained}`` (or ``type: wavlm``) block (besides ``type``)."""

    pretrained: str = "microsoft/wavlm-base-plus"  # HF hub name or local dir (save_pretrained)
    backbone: str = "auto"                         # auto | wavlm | hubert | wav2vec2 | whisper
    num_layers: int | None = None                  # keep the first K Transformer layers; null = all
    layer_weighting: str = "weighted_sum"          # weighted_sum | average | last
    freeze_cnn: bool = True                        # conv front (CNN / Whisper conv1+conv2) kept pretrained
    head: str = "mhfa"                             # mhfa (the authors' back-end) | ecapa | stats
    embedding_dim: int = 256
    head_channels: int = 512                       # ecapa: TDNN channels
    attention_channels: int = 128                  # ecapa: attentive-pooling bottleneck
    mhfa_heads: int = 64
    mhfa_compression: int = 128
    freeze_backbone: bool = False                  # start with the backbone frozen (head only)
    normalize: bool = False                        # per-utterance zero mean / unit variance
    mask_time_prob: float = 0.0                    # transformers' time masking of the CNN features (training)
    mask_feature_prob: float = 0.0                 # transformers' channel masking of the CNN features (training)
    layerdrop: float | None = None                 # P(skip a Transformer layer) in training; null = checkpoint's

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ConfigError(f"model.backbone: {self.backbone!r} is not one of {', '.join(BACKBONES)}")
        if self.num_layers is not None and self.num_layers < 1:
            raise ConfigError(f"model.num_layers must be >= 1 or null, got {self.num_layers}")
        if self.layer_weighting not in LAYER_WEIGHTINGS:
            raise ConfigError(f"model.layer_weighting: {self.layer_weighting!r} is not one of "
                              f"{', '.join(LAYER_WEIGHTINGS)}")
        if self.head not in HEADS:
            raise ConfigError(f"model.head: {self.head!r} is not one of {', '.join(HEADS)}")
        if self.head == "stats" and self.layer_weighting != "weighted_sum":
            raise ConfigError(f"model.layer_weighting: {self.layer_weighting!r}: head stats has no layer weighting "
                              "(its Linear weighs the layers' statistics); leave layer_weighting out")
        if min(self.embedding_dim, self.head_channels, self.attention_channels, self.mhfa_heads,
               self.mhfa_compression) < 1:
            raise ConfigError("model: embedding_dim, head_channels, attention_channels, mhfa_heads and "
                              "mhfa_compression must be >= 1")
        for key in ("mask_time_prob", "mask_feature_prob"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"model.{key} must be in [0, 1), got {getattr(self, key)}")
        if self.layerdrop is not None and not 0.0 <= self.layerdrop < 1.0:
            raise ConfigError(f"model.layerdrop must be in [0, 1) or null, got {self.layerdrop}")


class LayerWeighting(nn.Module):
    """Combine hidden states ``L x [B, T, D]`` into ``[B, T, D]`` (weighted_sum | average | last)."""

    def __init__(self, num_states: int, mode: str):
        super().__init__()
        self.mode = mode
        self.num_states = num_states
        self.logits = nn.Parameter(torch.zeros(num_states)) if mode == "weighted_sum" else None

    def weights(self) -> torch.Tensor:
        """The normalised weights over the hidden states (one-hot on the last for ``last``)."""
        if self.logits is not None:
            return torch.softmax(self.logits, dim=0)
        if self.mode == "average":
            return torch.full((self.num_states,), 1.0 / self.num_states)
        w = torch.zeros(self.num_states)
        w[-1] = 1.0
        return w

    def forward(self, states: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(states) != self.num_states:
            raise ValueError(f"expected {self.num_states} hidden states, got {len(states)}")
        if self.mode == "last":
            return states[-1]
        stacked = torch.stack(list(states), dim=0)
        if self.mode == "average":
            return stacked.mean(dim=0)
        w = torch.softmax(self.logits, dim=0).to(stacked.dtype)
        return (w.view(-1, 1, 1, 1) * stacked).sum(dim=0)


class _Tdnn(nn.Module):
    """Conv1d ('same' length) → ReLU → BatchNorm1d."""

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)
        self.bn = nn.BatchNorm1d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(torch.relu(self.conv(x)))


class EcapaHead(nn.Module):
    """Weighted hidden states ``[B, T, D]`` → TDNN(k=5) → residual TDNN(k=3, d=2) → ASP → BN → Linear → BN."""

    def __init__(self, num_states: int, hidden: int, channels: int, attention_channels: int,
                 embedding_dim: int, weighting: str):
        super().__init__()
        self.weighting = LayerWeighting(num_states, weighting)
        self.tdnn1 = _Tdnn(hidden, channels, 5)
        self.tdnn2 = _Tdnn(channels, channels, 3, dilation=2)
        self.pool = AttentiveStatsPool(channels, attention_channels, global_context=True)
        self.pool_bn = nn.BatchNorm1d(2 * channels)
        self.fc = nn.Linear(2 * channels, embedding_dim)
        self.emb_bn = nn.BatchNorm1d(embedding_dim)

    def forward(self, states: Sequence[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask`` ``[B, 1, T]``: 1 = valid frame (padded frames are zeroed before each convolution)."""
        x = self.weighting(states).transpose(1, 2)
        x = self.tdnn1(x if mask is None else x * mask)
        x = x + self.tdnn2(x if mask is None else x * mask)
        return self.emb_bn(self.fc(self.pool_bn(self.pool(x, mask))))


class MhfaHead(nn.Module):
    """Multi-head factorized attentive pooling (Peng et al., 2022) over ``L x [B, T, D]``.

    ``K = W_k (sum_l a_l h_l)``, ``V = W_v (sum_l b_l h_l)`` with two separate layer
    weightings ``a``, ``b``; ``A = softmax_t(W_a K)`` gives ``heads`` distributions over time;
    head ``h`` pools ``sum_t A[t, h] V[t]``; the ``heads x compression`` vector (head-major) → Linear.
    The back-end of theolepage/wavlm_ssl_sv:models/Baseline/Spk_Encoder.py (``MHFA``) computes the
    same function with the same parameters; its layer logits start at 1 where ours start at 0
    (the same softmax).
    """

    def __init__(self, num_states: int, hidden: int, heads: int, compression: int, embedding_dim: int,
                 weighting: str):
        super().__init__()
        self.key_weighting = LayerWeighting(num_states, weighting)
        self.value_weighting = LayerWeighting(num_states, weighting)
        self.key_proj = nn.Linear(hidden, compression)
        self.value_proj = nn.Linear(hidden, compression)
        self.attention = nn.Linear(compression, heads)
        self.fc = nn.Linear(heads * compression, embedding_dim)

    def forward(self, states: Sequence[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask`` ``[B, 1, T]``: 1 = valid frame (padded frames get no attention)."""
        k = self.key_proj(self.key_weighting(states))            # [B, T, C]
        v = self.value_proj(self.value_weighting(states))        # [B, T, C]
        logits = self.attention(k).float()                       # [B, T, H]
        if mask is not None:
            logits = logits.masked_fill(mask.transpose(1, 2) == 0, float("-inf"))
        att = torch.softmax(logits, dim=1)                       # sums to 1 over T
        pooled = torch.einsum("bth,btc->bhc", att, v.float())    # [B, H, C]
        return self.fc(pooled.flatten(1).to(v.dtype))


class StatsHead(nn.Module):
    """Per-state mean and standard deviation over time of ``L x [B, T, D]`` → ``[B, 2 L D]`` (state-major,
    mean then std) → BatchNorm1d → Linear (see the module docstring, ``head: stats``)."""

    def __init__(self, num_states: int, hidden: int, embedding_dim: int):
        super().__init__()
        self.num_states = num_states
        self.norm = nn.BatchNorm1d(2 * num_states * hidden)
        self.fc = nn.Linear(2 * num_states * hidden, embedding_dim)

    def forward(self, states: Sequence[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask`` ``[B, 1, T]``: 1 = valid frame (the statistics are over the valid frames only)."""
        if len(states) != self.num_states:
            raise ValueError(f"expected {self.num_states} hidden states, got {len(states)}")
        x = torch.stack(list(states), dim=1).float()                      # [B, L, T, D]
        if mask is None:
            mean, var = x.mean(dim=2), x.var(dim=2, unbiased=False)
        else:
            w = mask.float().transpose(1, 2)[:, None]                     # [B, 1, T, 1]
            n = w.sum(dim=2).clamp_min(1.0)
            mean = (x * w).sum(dim=2) / n
            var = ((x - mean[:, :, None]).square() * w).sum(dim=2) / n
        stats = torch.cat([mean, var.clamp_min(1e-8).sqrt()], dim=2)      # [B, L, 2D]
        return self.fc(self.norm(stats.flatten(1)))


class WhisperLogMel(nn.Module):
    """Waveforms ``[B, T]`` → Whisper log-mel spectrograms ``[B, n_mels, T // hop]`` (no padding to 30 s).

    The recipe of transformers' ``WhisperFeatureExtractor._torch_extract_fbank_features``: STFT with a
    periodic Hann window of ``n_fft`` (400) and hop ``hop_length`` (160), centred with reflect padding,
    the last frame dropped; power spectrum × the extractor's ``mel_filters``; ``log10`` floored at 1e-10
    and at the utterance's maximum − 8; ``(x + 4) / 4``. With ``lengths``, each row is treated as its own
    ``lengths[b]`` samples (reflected at its own end, floored at its own maximum) and its frames past
    ``lengths[b] // hop`` are zero.
    """

    def __init__(self, mel_filters: torch.Tensor, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("mel_filters", mel_filters.float(), persistent=False)   # [n_freq, n_mels]

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Mel frames of utterances of ``lengths`` samples."""
        return torch.div(lengths, self.hop_length, rounding_mode="floor")

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Float32 log-mel spectrograms (autocast off: bf16 would round the power spectrum before the log)."""
        with torch.autocast(device_type=wav.device.type, enabled=False):
            return self._logmel(wav.float(), lengths)

    def _logmel(self, wav: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        pad = self.n_fft // 2
        shortest = wav.shape[1] if lengths is None else int(lengths.min())
        if shortest <= pad:
            raise ValueError(f"Whisper log-mel: an input of {shortest} samples is too short "
                             f"(more than {pad} needed)")
        if lengths is None:
            padded = nn.functional.pad(wav[:, None], (pad, pad), mode="reflect")[:, 0]
        else:  # reflect each row at its own end: index j of the padded row reads sample |j - pad| mirrored
            n = lengths.to(wav.device)[:, None]
            idx = (torch.arange(wav.shape[1] + 2 * pad, device=wav.device) - pad).abs()[None]
            idx = torch.where(idx >= n, 2 * (n - 1) - idx, idx).clamp(0, wav.shape[1] - 1)
            padded = torch.gather(wav, 1, idx)
        spec = torch.stft(padded, self.n_fft, self.hop_length, window=self.window, center=False,
                          return_complex=True)
        power = spec[..., :-1].abs() ** 2                                        # [B, n_freq, F]
        logmel = (self.mel_filters.T @ power).clamp_min(1e-10).log10()          # [B, n_mels, F]
        if lengths is None:
            floor = logmel.amax(dim=(1, 2), keepdim=True) - 8.0
            return (torch.maximum(logmel, floor) + 4.0) / 4.0
        valid = frame_mask(self.frame_lengths(lengths.to(wav.device)), logmel.shape[2])[:, None]   # [B, 1, F]
        floor = logmel.masked_fill(valid == 0, float("-inf")).amax(dim=(1, 2), keepdim=True) - 8.0
        return (torch.maximum(logmel, floor) + 4.0) / 4.0 * valid


def _load_wav2vec2_family(cfg: PretrainedEncoderConfig, kind: str) -> tuple[nn.Module, float]:
    """WavLM / HuBERT / wav2vec 2.0 backbone and the layer-drop probability to apply."""
    import transformers

    config_cls, model_cls = {"wavlm": (transformers.WavLMConfig, transformers.WavLMModel),
                             "hubert": (transformers.HubertConfig, transformers.HubertModel),
                             "wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model)}[kind]
    hf_cfg = config_cls.from_pretrained(cfg.pretrained)
    layerdrop = float(hf_cfg.layerdrop if cfg.layerdrop is None else cfg.layerdrop)
    hf_cfg.layerdrop = 0.0  # applied by PretrainedEncoder._drop_layer instead
    hf_cfg.num_hidden_layers = _kept_layers(cfg, hf_cfg.num_hidden_layers)
    hf_cfg.mask_time_prob, hf_cfg.mask_feature_prob = cfg.mask_time_prob, cfg.mask_feature_prob
    if cfg.mask_feature_prob > 0 and "mask_feature_min_masks" not in hf_cfg.to_dict():
        hf_cfg.mask_feature_min_masks = 0  # read by channel masking, not in WavLMConfig
    return model_cls.from_pretrained(cfg.pretrained, config=hf_cfg), layerdrop


def _load_whisper(cfg: PretrainedEncoderConfig) -> tuple[nn.Module, float, WhisperLogMel]:
    """Whisper encoder (of a WhisperModel/WhisperForConditionalGeneration or WhisperEncoder checkpoint),
    the layer-drop probability to apply and the log-mel front-end of its feature extractor."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    if cfg.mask_time_prob or cfg.mask_feature_prob:
        raise ConfigError("model.mask_time_prob/mask_feature_prob: the Whisper encoder has no feature masking")
    hf_cfg = WhisperConfig.from_pretrained(cfg.pretrained)
    layerdrop = float(hf_cfg.encoder_layerdrop if cfg.layerdrop is None else cfg.layerdrop)
    hf_cfg.encoder_layerdrop = 0.0
    hf_cfg.encoder_layers = _kept_layers(cfg, hf_cfg.encoder_layers)
    if "WhisperEncoder" in (hf_cfg.architectures or []):
        encoder, info = WhisperEncoder.from_pretrained(cfg.pretrained, config=hf_cfg, output_loading_info=True)
        prefix = ""
    else:
        model, info = WhisperModel.from_pretrained(cfg.pretrained, config=hf_cfg, output_loading_info=True)
        encoder, prefix = model.encoder, "encoder."
    missing = sorted(k for k in info["missing_keys"] if k.startswith(prefix))
    if missing:
        raise ConfigError(f"model.pretrained: {cfg.pretrained!r} has no Whisper encoder weights for "
                          f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    try:
        extractor = WhisperFeatureExtractor.from_pretrained(cfg.pretrained)
    except OSError:  # no preprocessor_config.json: the extractor's defaults for this number of mel bins
        extractor = WhisperFeatureExtractor(feature_size=hf_cfg.num_mel_bins)
    if extractor.sampling_rate != SAMPLE_RATE or extractor.feature_size != hf_cfg.num_mel_bins:
        raise ConfigError(f"model.pretrained: {cfg.pretrained!r}: the feature extractor's sampling_rate "
                          f"{extractor.sampling_rate} / feature_size {extractor.feature_size} do not match "
                          f"{SAMPLE_RATE} Hz / the encoder's {hf_cfg.num_mel_bins} mel bins")
    logmel = WhisperLogMel(torch.as_tensor(extractor.mel_filters), extractor.n_fft, extractor.hop_length)
    return encoder, layerdrop, logmel


def _kept_layers(cfg: PretrainedEncoderConfig, total: int) -> int:
    """``num_layers`` checked against the checkpoint's ``total`` layers (all of them when null)."""
    if cfg.num_layers is None:
        return total
    if cfg.num_layers > total:
        raise ConfigError(f"model.num_layers: {cfg.num_layers} > the {total} Transformer layers of "
                          f"{cfg.pretrained!r}")
    return cfg.num_layers


class PretrainedEncoder(Model):
    """Waveforms ``[B, T]`` → speaker embeddings ``[B, embedding_dim]`` (see module docstring)."""

    type_name = "pretrained"
    type_aliases = ("wavlm",)   # its earlier name, kept for old configs
    fixed_sample_rate = 16000   # the rate of the audio the backbones were pretrained on

    def __init__(self, cfg: PretrainedEncoderConfig):
        super().__init__()
        from transformers import AutoConfig

        self.cfg = cfg
        try:
            kind = AutoConfig.from_pretrained(cfg.pretrained).model_type
            if kind not in BACKBONES[1:] or cfg.backbone not in ("auto", kind):
                raise ConfigError(f"model.backbone: {cfg.backbone}: {cfg.pretrained!r} is a {kind!r} model "
                                  f"({'' if cfg.backbone == 'auto' else 'set backbone: auto, or '}use one of "
                                  f"{', '.join(BACKBONES[1:])})")
            self.kind = kind
            self.logmel: WhisperLogMel | None = None
            if kind == "whisper":
                self.backbone, self.layerdrop, self.logmel = _load_whisper(cfg)
            else:
                self.backbone, self.layerdrop = _load_wav2vec2_family(cfg, kind)
        except OSError as e:
            raise ConfigError(f"model.pretrained: cannot load a {cfg.backbone} model from {cfg.pretrained!r}: "
                              f"{e}") from e
        first = 1 if kind == "wavlm" else 0   # WavLM's first layer computes the position bias the others use
        for layer in list(self.layers)[first:]:
            layer.register_forward_hook(self._drop_layer, prepend=True)  # before transformers' capture hooks
        num_states = len(self.layers) + 1
        hidden = self.backbone.config.d_model if kind == "whisper" else self.backbone.config.hidden_size
        if cfg.head == "ecapa":
            self.head: nn.Module = EcapaHead(num_states, hidden, cfg.head_channels,
                                             cfg.attention_channels, cfg.embedding_dim, cfg.layer_weighting)
        elif cfg.head == "mhfa":
            self.head = MhfaHead(num_states, hidden, cfg.mhfa_heads, cfg.mhfa_compression,
                                 cfg.embedding_dim, cfg.layer_weighting)
        else:
            self.head = StatsHead(num_states, hidden, cfg.embedding_dim)
        self._backbone_trainable = True
        self.set_backbone_trainable(not cfg.freeze_backbone)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "PretrainedEncoder":
        """Build from a ``model:`` block (``type: pretrained|wavlm`` plus :class:`PretrainedEncoderConfig` keys)."""
        cfg = dict(cfg)
        where = f"model (type {cfg.pop('type', cls.type_name)})"
        try:
            return cls(from_dict(PretrainedEncoderConfig, cfg, where))
        except ConfigError:
            raise
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {e}") from e

    @property
    def embedding_dim(self) -> int:
        return self.cfg.embedding_dim

    @property
    def layers(self) -> nn.ModuleList:
        """The Transformer layers of the backbone, bottom first."""
        return self.backbone.layers if self.kind == "whisper" else self.backbone.encoder.layers

    def _front_modules(self) -> list[nn.Module]:
        """The convolutional front that ``freeze_cnn`` keeps at its pretrained weights."""
        if self.kind == "whisper":
            return [self.backbone.conv1, self.backbone.conv2]
        return [self.backbone.feature_extractor]

    def _fixed_parameters(self) -> set[int]:
        """Ids of backbone parameters never trained: Whisper's sinusoidal positional table."""
        return {id(self.backbone.embed_positions.weight)} if self.kind == "whisper" else set()

    def _drop_layer(self, layer: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        """Forward hook of the Transformer layers (but WavLM's first): in training, with probability
        ``layerdrop``, the layer's output is replaced by its input (the layer is skipped).

        The skipped layer stays in the graph with a zero weight, so its parameters get zero
        gradients rather than none: DistributedDataParallel (without ``find_unused_parameters``)
        needs every trainable parameter to get one in every step.
        """
        if layer.training and self.layerdrop > 0 and float(torch.rand(())) < self.layerdrop:
            if isinstance(output, tuple):   # WavLM: (hidden states, position bias)
                return (args[0] + 0.0 * output[0], *output[1:])
            return args[0] + 0.0 * output
        return None

    # ------------------------------------------------------------ parameters
    def backbone_layer_parameters(self) -> list[list[nn.Parameter]]:
        """The parameters of each Transformer layer of the backbone, one list per layer, bottom layer first.

        For layer-wise learning rates: theolepage/wavlm_ssl_sv:SpeakerNet.py (ModelTrainer) gives layer
        ``i`` (0-based) ``LR_Transformer * LLRD_factor ** i`` and puts no other backbone parameter in its
        optimiser (see :meth:`backbone_other_parameters`).
        """
        return [list(layer.parameters()) for layer in self.layers]

    def backbone_other_parameters(self) -> list[nn.Parameter]:
        """The trainable backbone parameters outside the Transformer layers: for WavLM/HuBERT/wav2vec 2.0
        the feature projection (LayerNorm + Linear), the positional convolution, the encoder's LayerNorm
        and the masking vector (when masking is on); for Whisper the final LayerNorm; the convolutional
        front too when ``freeze_cnn`` is false.

        The authors' optimiser holds none of these (only the layers and the back-end), so their
        training leaves them at the pretrained values; an optimiser reproducing that leaves this list out.
        """
        in_layers = {id(p) for ps in self.backbone_layer_parameters() for p in ps}
        return [p for p in self.backbone_parameters() if id(p) not in in_layers]

    def backbone_parameters(self) -> list[nn.Parameter]:
        """The backbone parameters that training may update: all of the pretrained backbone but the
        convolutional front when ``freeze_cnn`` is set and Whisper's positional table
        (:meth:`backbone_layer_parameters` + :meth:`backbone_other_parameters`)."""
        fixed = self._fixed_parameters()
        if self.cfg.freeze_cnn:
            fixed |= {id(p) for m in self._front_modules() for p in m.parameters()}
        return [p for p in self.backbone.parameters() if id(p) not in fixed]

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters trained from scratch: layer weights and pooling head."""
        return self.head.parameters()

    def set_backbone_trainable(self, flag: bool) -> None:
        """(Un)freeze the backbone; the convolutional front stays frozen when ``freeze_cnn`` is set.

        A frozen backbone runs under ``torch.no_grad`` (no activations kept for backward).
        """
        self._backbone_trainable = bool(flag)
        trainable = {id(p) for p in self.backbone_parameters()} if self._backbone_trainable else set()
        for p in self.backbone.parameters():
            p.requires_grad = id(p) in trainable
        cnn_trainable = self._backbone_trainable and not self.cfg.freeze_cnn
        for fe in self._front_modules():
            # HF's feature encoder marks its input as requiring grad in training unless frozen this way.
            if hasattr(fe, "_requires_grad"):
                fe._requires_grad = cnn_trainable

    @property
    def backbone_trainable(self) -> bool:
        return self._backbone_trainable

    @property
    def honours_lengths(self) -> bool:
        """Whether ``forward(wav, lengths)`` embeds padded utterances as one at a time (see module doc)."""
        return self.kind == "whisper" or self.backbone.config.feat_extract_norm == "layer"

    # --------------------------------------------------------------- forward
    def prepare(self, wav: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Float waveform ``[B, T]``, normalised per utterance when ``normalize`` is set
        (over the ``valid`` samples, ``[B, T]`` 0/1, when given)."""
        if wav.ndim != 2:
            raise ValueError(f"expected waveforms [B, T], got shape {tuple(wav.shape)}")
        wav = wav.float()
        if self.cfg.normalize and valid is None:
            mean = wav.mean(dim=1, keepdim=True)
            var = wav.var(dim=1, unbiased=False, keepdim=True)
            wav = (wav - mean) / torch.sqrt(var + 1e-7)
        elif self.cfg.normalize:
            n = valid.sum(dim=1, keepdim=True)
            mean = (wav * valid).sum(dim=1, keepdim=True) / n
            var = ((wav - mean).square() * valid).sum(dim=1, keepdim=True) / n
            wav = (wav - mean) / torch.sqrt(var + 1e-7) * valid
        return wav

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Hidden-state frames of utterances of ``lengths`` samples."""
        if self.logmel is not None:   # conv2 has stride 2, padding 1
            return torch.div(self.logmel.frame_lengths(lengths) + 1, 2, rounding_mode="floor")
        return self.backbone._get_feat_extract_output_lengths(lengths)

    def hidden_states(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """All ``len(layers) + 1`` hidden states ``[B, frames, hidden]`` of the backbone
        (``lengths``: samples of each zero-padded row, passed on as the attention mask)."""
        valid = None
        if lengths is not None:
            if not self.honours_lengths:
                raise ValueError(f"this {self.kind} normalises its CNN features over the whole (padded) input "
                                 "(feat_extract_norm: group): embed utterances of different lengths one at a time")
            valid = (torch.arange(wav.shape[1], device=wav.device) < lengths.to(wav.device)[:, None]).long()
        x = self.prepare(wav, valid)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self._backbone_trainable):
            if self.logmel is not None:
                return self._whisper_states(x, None if lengths is None else lengths.to(wav.device))
            out = self.backbone(x, attention_mask=valid, output_hidden_states=True, return_dict=True)
        return tuple(out.hidden_states)

    def _whisper_states(self, wav: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """Whisper hidden states of waveforms, encoded in windows of the positional table's length (30 s)."""
        with torch.no_grad():
            mel = self.logmel(wav, lengths)
        frames = None if lengths is None else self.logmel.frame_lengths(lengths)
        window = 2 * self.backbone.config.max_source_positions       # mel frames per positional table
        pieces = []
        for start in range(0, mel.shape[2], window):
            n = None if frames is None else (frames - start).clamp(0, window)
            pieces.append(self._whisper_window(mel[:, :, start:start + window], n))
        if len(pieces) == 1:
            return pieces[0]
        return tuple(torch.cat(states, dim=1) for states in zip(*pieces))

    def _whisper_window(self, mel: torch.Tensor, frames: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """conv1 → GELU → conv2 → GELU → + positions ``[:T]`` → layers → LayerNorm on at most 30 s of mel
        frames ``[B, n_mels, F]`` (``frames``: valid ones per row; the rest are kept out of every step)."""
        enc = self.backbone
        x = nn.functional.gelu(enc.conv1(mel))
        if frames is not None:
            x = x * frame_mask(frames, x.shape[2])[:, None].to(x.dtype)
        x = nn.functional.gelu(enc.conv2(x)).transpose(1, 2)                # [B, T, D]
        h = x + enc.embed_positions.weight[:x.shape[1]]
        h = nn.functional.dropout(h, p=enc.dropout, training=self.training)
        mask = None
        if frames is not None:   # keys past each row's end masked (all kept in a row with none: no NaN)
            keep = frame_mask(torch.div(frames + 1, 2, rounding_mode="floor"), h.shape[1]).bool()
            keep = (keep | (frames == 0)[:, None])[:, None, None, :].expand(-1, 1, h.shape[1], -1)
            if enc.config._attn_implementation == "sdpa":     # a boolean mask, whatever dtype autocast computes in
                mask = keep
            else:                                             # eager: an additive bias
                mask = torch.zeros(keep.shape, dtype=h.dtype, device=h.device).masked_fill(
                    ~keep, torch.finfo(h.dtype).min)
        states = [h]
        for layer in enc.layers:
            out = layer(states[-1], mask)
            states.append(out[0] if isinstance(out, tuple) else out)   # older transformers return a tuple
        states[-1] = enc.layer_norm(states[-1])
        return tuple(states)

    def pool(self, states: Sequence[torch.Tensor], frames: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings ``[B, embedding_dim]`` of hidden states ``L x [B, T, hidden]`` (:meth:`hidden_states`, or
        a cache of them): the head; ``frames``: the valid frames of each row (None: all ``T``)."""
        if frames is None:
            return self.head(states)
        return self.head(states, frame_mask(frames, states[0].shape[1]).unsqueeze(1))

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        states = self.hidden_states(wav, lengths)
        return self.pool(states, None if lengths is None else self.frame_lengths(lengths.to(wav.device)))


#: The name of the encoder in ``type: wavlm`` configs, experiment directories and earlier code.
WavLMEncoder = PretrainedEncoder
