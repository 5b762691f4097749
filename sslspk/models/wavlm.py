"""Pretrained WavLM (Hugging Face ``transformers``) with a speaker-embedding head.

``model: {type: wavlm, pretrained: microsoft/wavlm-base-plus, ...}`` loads the backbone with
``transformers.WavLMModel.from_pretrained`` (a hub name or a local directory) and adds a
pooling head over its hidden states:

* ``layer_weighting``: how the hidden states (the encoder input, i.e. the projected CNN
  features after the positional convolution, plus every Transformer layer output) are
  combined: ``weighted_sum`` (learnable softmax-normalised weights), ``average`` or ``last``.
* ``head: ecapa``: two TDNN layers of ``head_channels`` (the second residual and dilated) →
  attentive statistics pooling → BN → Linear → BN.
* ``head: mhfa``: multi-head factorized attentive pooling (Peng et al., SLT 2022): keys and
  values come from two separate layer weightings, each compressed by a linear layer to
  ``mhfa_compression`` dims; ``mhfa_heads`` attention distributions over time are computed
  from the keys; each head's weighted mean of the values is concatenated → Linear.

``freeze_cnn`` (default true, as theolepage/wavlm_ssl_sv:models/Baseline/WavLM.py runs its CNN
under ``torch.no_grad`` and leaves it out of the optimiser) keeps the CNN feature encoder at its
pretrained weights: ``requires_grad`` false, no graph built through it, and not in
:meth:`backbone_parameters`. (A gradient *scale* on the CNN would not do this: Adam(W) divides each
parameter's step by its own gradient's RMS, so a constant scale changes nothing but the relative
weight of Adam's epsilon.)
:meth:`backbone_layer_parameters` (one list per Transformer layer, bottom first) and
:meth:`backbone_other_parameters` (the rest of the trainable backbone) let an optimiser give each
layer its own learning rate; :meth:`head_parameters` and :meth:`set_backbone_trainable` support a
head-only phase followed by full fine-tuning.

``mask_time_prob`` / ``mask_feature_prob`` set the SpecAugment-style masking that ``transformers``
applies to the projected CNN features in training (``WavLMConfig``'s own default turns time
masking on, at 0.05); both default to 0 whatever the checkpoint's ``config.json`` says, as the
authors' fine-tuning calls ``extract_features`` without ``mask=True``. The dropout rates are the checkpoint's own, as in
the authors' code (which reads them from the checkpoint's ``cfg``).

Input: raw 16 kHz waveforms ``[B, T]``: equal-length crops in training; zero-padded
utterances with their ``lengths`` in extraction, which embed as one at a time only when the CNN
feature encoder normalises each frame (``feat_extract_norm: layer``, WavLM Large): then the
backbone gets an attention mask and the head masks the padded frames. WavLM Base/Base+
(``group``) normalise each CNN channel over the whole input, padding included, so their
embeddings change with padding and :attr:`WavLMEncoder.honours_lengths` is false (extraction
then batches equal-length utterances only). ``normalize`` applies the
per-utterance zero-mean/unit-variance normalisation of ``Wav2Vec2FeatureExtractor``
(``do_normalize``). It defaults to false because ``microsoft/wavlm-base-plus`` ships
``do_normalize: false`` in its ``preprocessor_config.json``; WavLM Large expects ``true``.
``layerdrop`` (default: the checkpoint's ``config.json`` value, as the authors' code takes
``encoder_layerdrop`` from the checkpoint's ``cfg`` and applies it in training) skips each
Transformer layer but the first with that probability in training: the skipped layer's output is
its input, so the layer weighting still gets every hidden state. It is applied here rather than by
``transformers`` (whose own layer drop is disabled at load time), since ``transformers`` records
the hidden states with hooks on the layers and a skipped layer would shorten their list. The first
layer is never skipped (as in ``transformers``: it computes the relative position bias the others
reuse); the authors' WavLM.py may skip it too, which then runs that step without position bias.
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
HEADS = ("ecapa", "mhfa")


@dataclass
class WavLMEncoderConfig:
    """Keys of a ``model: {type: wavlm}`` block (besides ``type``)."""

    pretrained: str = "microsoft/wavlm-base-plus"  # HF hub name or local dir (save_pretrained)
    layer_weighting: str = "weighted_sum"          # weighted_sum | average | last
    freeze_cnn: bool = True                        # CNN feature encoder kept at its pretrained weights
    head: str = "mhfa"                             # mhfa (the authors' back-end) | ecapa
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
        if self.layer_weighting not in LAYER_WEIGHTINGS:
            raise ConfigError(f"model.layer_weighting: {self.layer_weighting!r} is not one of "
                              f"{', '.join(LAYER_WEIGHTINGS)}")
        if self.head not in HEADS:
            raise ConfigError(f"model.head: {self.head!r} is not one of {', '.join(HEADS)}")
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


class WavLMEncoder(Model):
    """Waveforms ``[B, T]`` → speaker embeddings ``[B, embedding_dim]`` (see module docstring)."""

    type_name = "wavlm"

    def __init__(self, cfg: WavLMEncoderConfig):
        super().__init__()
        from transformers import WavLMConfig, WavLMModel

        self.cfg = cfg
        try:
            hf_cfg = WavLMConfig.from_pretrained(cfg.pretrained)
            self.layerdrop = float(hf_cfg.layerdrop if cfg.layerdrop is None else cfg.layerdrop)
            hf_cfg.layerdrop = 0.0  # applied by _drop_layer instead
            hf_cfg.mask_time_prob, hf_cfg.mask_feature_prob = cfg.mask_time_prob, cfg.mask_feature_prob
            if cfg.mask_feature_prob > 0 and "mask_feature_min_masks" not in hf_cfg.to_dict():
                hf_cfg.mask_feature_min_masks = 0  # read by channel masking, not in WavLMConfig
            self.backbone = WavLMModel.from_pretrained(cfg.pretrained, config=hf_cfg)
        except OSError as e:
            raise ConfigError(f"model.pretrained: cannot load WavLM from {cfg.pretrained!r}: {e}") from e
        hcfg = self.backbone.config
        for layer in list(self.backbone.encoder.layers)[1:]:
            layer.register_forward_hook(self._drop_layer, prepend=True)  # before transformers' capture hooks
        num_states = hcfg.num_hidden_layers + 1
        if cfg.head == "ecapa":
            self.head: nn.Module = EcapaHead(num_states, hcfg.hidden_size, cfg.head_channels,
                                             cfg.attention_channels, cfg.embedding_dim, cfg.layer_weighting)
        else:
            self.head = MhfaHead(num_states, hcfg.hidden_size, cfg.mhfa_heads, cfg.mhfa_compression,
                                 cfg.embedding_dim, cfg.layer_weighting)
        self._backbone_trainable = True
        self.set_backbone_trainable(not cfg.freeze_backbone)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "WavLMEncoder":
        """Build from a ``model:`` block (``type: wavlm`` plus :class:`WavLMEncoderConfig` keys)."""
        cfg = dict(cfg)
        cfg.pop("type", None)
        try:
            return cls(from_dict(WavLMEncoderConfig, cfg, "model (type wavlm)"))
        except ConfigError:
            raise
        except (TypeError, ValueError) as e:
            raise ConfigError(f"model (type wavlm): {e}") from e

    @property
    def embedding_dim(self) -> int:
        return self.cfg.embedding_dim

    def _drop_layer(self, layer: nn.Module, args: tuple[Any, ...], output: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """Forward hook of the Transformer layers but the first: in training, with probability
        ``layerdrop``, the layer's output is replaced by its input (the layer is skipped).

        The skipped layer stays in the graph with a zero weight, so its parameters get zero
        gradients rather than none: DistributedDataParallel (without ``find_unused_parameters``)
        needs every trainable parameter to get one in every step.
        """
        if layer.training and self.layerdrop > 0 and float(torch.rand(())) < self.layerdrop:
            return (args[0] + 0.0 * output[0], *output[1:])
        return None

    # ------------------------------------------------------------ parameters
    def backbone_layer_parameters(self) -> list[list[nn.Parameter]]:
        """The parameters of each Transformer layer of the backbone, one list per layer, bottom layer first.

        For layer-wise learning rates: theolepage/wavlm_ssl_sv:SpeakerNet.py (ModelTrainer) gives layer
        ``i`` (0-based) ``LR_Transformer * LLRD_factor ** i`` and puts no other backbone parameter in its
        optimiser (see :meth:`backbone_other_parameters`).
        """
        return [list(layer.parameters()) for layer in self.backbone.encoder.layers]

    def backbone_other_parameters(self) -> list[nn.Parameter]:
        """The trainable backbone parameters outside the Transformer layers: the feature projection
        (LayerNorm + Linear), the positional convolution, the encoder's LayerNorm and the masking
        vector (when masking is on); the CNN feature encoder too when ``freeze_cnn`` is false.

        The authors' optimiser holds none of these (only the layers and the back-end), so their
        training leaves them at the pretrained values; an optimiser reproducing that leaves this list out.
        """
        in_layers = {id(p) for ps in self.backbone_layer_parameters() for p in ps}
        return [p for p in self.backbone_parameters() if id(p) not in in_layers]

    def backbone_parameters(self) -> list[nn.Parameter]:
        """The backbone parameters that training may update: all of the pretrained WavLM but the
        CNN feature encoder when ``freeze_cnn`` is set (:meth:`backbone_layer_parameters` +
        :meth:`backbone_other_parameters`)."""
        cnn = {id(p) for p in self.backbone.feature_extractor.parameters()} if self.cfg.freeze_cnn else set()
        return [p for p in self.backbone.parameters() if id(p) not in cnn]

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters trained from scratch: layer weights and pooling head."""
        return self.head.parameters()

    def set_backbone_trainable(self, flag: bool) -> None:
        """(Un)freeze the backbone; the CNN stays frozen when ``freeze_cnn`` is set.

        A frozen backbone runs under ``torch.no_grad`` (no activations kept for backward).
        """
        self._backbone_trainable = bool(flag)
        for p in self.backbone.parameters():
            p.requires_grad = self._backbone_trainable
        cnn_trainable = self._backbone_trainable and not self.cfg.freeze_cnn
        fe = self.backbone.feature_extractor
        for p in fe.parameters():
            p.requires_grad = cnn_trainable
        # HF's feature encoder marks its input as requiring grad in training unless frozen this way.
        if hasattr(fe, "_requires_grad"):
            fe._requires_grad = cnn_trainable

    @property
    def backbone_trainable(self) -> bool:
        return self._backbone_trainable

    @property
    def honours_lengths(self) -> bool:
        """Whether ``forward(wav, lengths)`` embeds padded utterances as one at a time (see module doc)."""
        return self.backbone.config.feat_extract_norm == "layer"

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

    def hidden_states(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """All ``num_hidden_layers + 1`` hidden states ``[B, frames, hidden]`` of the backbone
        (``lengths``: samples of each zero-padded row, passed on as the attention mask)."""
        valid = None
        if lengths is not None:
            if not self.honours_lengths:
                raise ValueError("this WavLM normalises its CNN features over the whole (padded) input "
                                 "(feat_extract_norm: group): embed utterances of different lengths one at a time")
            valid = (torch.arange(wav.shape[1], device=wav.device) < lengths.to(wav.device)[:, None]).long()
        x = self.prepare(wav, valid)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self._backbone_trainable):
            out = self.backbone(x, attention_mask=valid, output_hidden_states=True, return_dict=True)
        return tuple(out.hidden_states)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        states = self.hidden_states(wav, lengths)
        if lengths is None:
            return self.head(states)
        frames = self.backbone._get_feat_extract_output_lengths(lengths.to(wav.device))
        return self.head(states, frame_mask(frames, states[0].shape[1]).unsqueeze(1))
