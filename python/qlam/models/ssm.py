"""The SSM baseline: S4D (Gu et al. 2022, "On the Parameterization and Initialization of Diagonal SSMs").

Each channel is a diagonal complex state-space model (S4D-Lin initialisation,
zero-order hold), applied as a long convolution by FFT; the kernel's A and dt
are marked ``_optim = {"lr": ..., "weight_decay": 0}`` as in the S4D code.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .common import ResidualBlock, SequenceClassifier


class S4DKernel(nn.Module):
    def __init__(self, d_model: int, d_state: int, dt_min: float, dt_max: float, lr: float):
        super().__init__()
        n = d_state // 2
        log_dt = torch.rand(d_model) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.C = nn.Parameter(torch.view_as_real(torch.randn(d_model, n, dtype=torch.cfloat) * 0.5 ** 0.5))
        self.log_dt = nn.Parameter(log_dt)
        self.log_A_real = nn.Parameter(torch.log(0.5 * torch.ones(d_model, n)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(n).float().repeat(d_model, 1))
        for p in (self.log_dt, self.log_A_real, self.A_imag):
            p._optim = {"lr": lr, "weight_decay": 0.0}

    def forward(self, length: int) -> Tensor:
        """The (d_model, length) convolution kernel."""
        dt = torch.exp(self.log_dt)
        C = torch.view_as_complex(self.C)
        A = -torch.exp(self.log_A_real) + 1j * self.A_imag
        dtA = A * dt.unsqueeze(-1)
        K = dtA.unsqueeze(-1) * torch.arange(length, device=A.device)
        C = C * (torch.exp(dtA) - 1.0) / A
        return 2 * torch.einsum("hn,hnl->hl", C, torch.exp(K)).real


class S4D(nn.Module):
    """(B, T, d) -> (B, T, d): y = K * u + D u, GELU, then a pointwise GLU projection."""

    def __init__(self, d_model: int, opts, dropout: float):
        super().__init__()
        self.kernel = S4DKernel(d_model, opts.d_state, opts.dt_min, opts.dt_max, opts.lr)
        self.D = nn.Parameter(torch.randn(d_model))
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(d_model, 2 * d_model)

    def forward(self, x: Tensor) -> Tensor:
        T = x.shape[1]
        u = x.transpose(1, 2).float()  # (B, d, T); the FFT runs in float32 also under autocast
        k = self.kernel(T)
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * T) * torch.fft.rfft(k, n=2 * T), n=2 * T)[..., :T]
        y = (y + u * self.D.unsqueeze(-1)).transpose(1, 2).to(x.dtype)
        return nn.functional.glu(self.out(self.drop(nn.functional.gelu(y))), dim=-1)


def build_ssm(cfg, in_channels: int, n_classes: int, seq_len: int) -> SequenceClassifier:
    blocks = [ResidualBlock(S4D(cfg.d_model, cfg.ssm, cfg.dropout), cfg.d_model, cfg.ff_mult, cfg.dropout)
              for _ in range(cfg.n_layers)]
    return SequenceClassifier(in_channels, cfg.d_model, blocks, n_classes, cfg.pooling)
