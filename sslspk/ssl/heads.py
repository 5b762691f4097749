"""Projection heads of the SSL methods."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class MLPProjector(nn.Module):
    """SimCLR/MoCo projector: ``hidden_layers`` × (``Linear → BN → ReLU``) then ``Linear`` to ``out_dim``
    (the loss works on its output)."""

    def __init__(self, in_dim: int, hidden: int = 512, out_dim: int = 128, hidden_layers: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(hidden_layers):
            layers += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers, nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DINOHead(nn.Module):
    """DINO head: 3-layer MLP → bottleneck → L2 norm → weight-normalised linear to ``out_dim`` logits.

    ``bn``: a BatchNorm after each hidden linear layer (``Linear → BN → GELU``, twice), as sslsv builds it.
    """

    def __init__(self, in_dim: int, out_dim: int = 65536, hidden: int = 2048, bottleneck: int = 256,
                 bn: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        for d_in in (in_dim, hidden):
            layers += [nn.Linear(d_in, hidden), *([nn.BatchNorm1d(hidden)] if bn else []), nn.GELU()]
        self.mlp = nn.Sequential(*layers, nn.Linear(hidden, bottleneck))
        last = nn.Linear(bottleneck, out_dim, bias=False)
        self.last_layer = nn.utils.parametrizations.weight_norm(last)
        # Norm of each output direction fixed to 1 (DINO's norm_last_layer).
        self.last_layer.parametrizations.weight.original0.data.fill_(1.0)
        self.last_layer.parametrizations.weight.original0.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))
