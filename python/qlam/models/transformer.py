"""The Transformer baseline: pre-norm encoder blocks with ``scaled_dot_product_attention``.

Besides dense softmax attention, ``SelfAttention`` offers two attention variants from other
quantum-attention proposals (``model.transformer.attention``):

- ``sparse_rank1``: sparse-plus-rank-one attention (Guo, Song, Yang, Zhang, "Beyond Classical
  Attention: Quantum Attention for Scalable Computation"), see :func:`sparse_rank1_attention`;
- ``topk``: QSAT (Mani, Paul, Vijayaboopathy 2022, "Quantum-Inspired Sparse Attention
  Transformers"), see :func:`topk_attention`.

Both compute the schemes' *outputs* exactly on a classical machine (a chunked dense score pass
and a top-k per query). No quantum speed-up is claimed or measured: the quantum parts of those
proposals (e.g. Grover search for the large entries) are not simulated, only their results.
"""
from __future__ import annotations

import math
from contextlib import nullcontext

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .common import ResidualBlock, SequenceClassifier

ATTENTIONS = ("dense", "sparse_rank1", "topk")
DEFAULT_CHUNK = 256  # queries per chunk of the score pass


def _full_precision(q: Tensor, k: Tensor, v: Tensor):
    """(q, k, v) in float32 when they are half/bfloat16, and a context that turns autocast off meanwhile."""
    if q.dtype in (torch.float16, torch.bfloat16):
        q, k, v = q.float(), k.float(), v.float()
    if torch.is_autocast_enabled(q.device.type):
        return q, k, v, torch.autocast(q.device.type, enabled=False)
    return q, k, v, nullcontext()


def _gather_rows(v: Tensor, idx: Tensor) -> Tensor:
    """v (..., T, d), idx (..., c, k) with entries in [0, T) -> v's rows (..., c, k, d).

    Rows are taken with index_select on the flattened (N*T, d) values, so the backward is an index_add
    into a (N*T, d) buffer (never the (..., c, T, d) one a gather on an expanded v would need).
    """
    *lead, T, d = v.shape
    c, k = idx.shape[-2:]
    n = v[..., 0, 0].numel()
    offsets = (torch.arange(n, device=idx.device) * T).view(*lead, 1, 1)
    flat = (idx + offsets).reshape(-1)
    return v.reshape(n * T, d).index_select(0, flat).view(*lead, c, k, d)


def _clamp_k(k: int, T: int) -> int:
    if k < 1:
        raise ValueError(f"attention k must be >= 1, got {k}")
    return min(int(k), T)


def topk_attention(q: Tensor, k: Tensor, v: Tensor, top_k: int, *, chunk_size: int = DEFAULT_CHUNK,
                   dropout_p: float = 0.0, training: bool = False) -> Tensor:
    """QSAT-style sparse attention: per query, a softmax over its ``top_k`` largest scores, the rest masked.

    q, k, v: (..., T, d); returns (..., T, d). Scores are ``q.k / sqrt(d)``. The QSAT paper (Mani, Paul,
    Vijayaboopathy 2022) keeps "the most significant token interactions" of each query and gives no
    more precise rule; this per-query top-k softmax is *our reading* of it. It is an exact classical
    computation of that rule; no quantum speed-up is claimed or measured.

    ``top_k`` larger than T is clamped to T (then this equals dense softmax attention). Ties among
    equal scores are broken by ``torch.topk``. ``dropout_p`` drops kept weights after the softmax (as
    ``scaled_dot_product_attention`` does; masked entries are zero anyway).

    Cost: the scores are computed for ``chunk_size`` queries at a time, O(T^2 d) time in all and
    O(chunk_size * T) transient memory per head; ``torch.topk`` over each chunk costs about
    O(chunk_size * T * log k). Kept for the backward: per head T*k weights, T*k indices and the T*k*d
    gathered value rows, so O(T k) per head for a fixed head width (no T x T matrix is kept).
    """
    T, d = q.shape[-2], q.shape[-1]
    kk = _clamp_k(top_k, k.shape[-2])
    scale = 1.0 / math.sqrt(d)
    kt = k.transpose(-2, -1)
    outs = []
    for start in range(0, T, chunk_size):
        scores = (q[..., start:start + chunk_size, :] @ kt) * scale      # (..., c, T)
        vals, idx = scores.topk(kk, dim=-1)                               # (..., c, kk)
        weights = torch.softmax(vals, dim=-1)
        if dropout_p > 0.0 and training:
            weights = F.dropout(weights, dropout_p, training=True)
        outs.append((weights.unsqueeze(-2) @ _gather_rows(v, idx)).squeeze(-2))
    return torch.cat(outs, dim=-2)


def sparse_rank1_attention(q: Tensor, k: Tensor, v: Tensor, top_k: int, *, rule: str = "topk",
                           tau: float = 1.0, chunk_size: int = DEFAULT_CHUNK, dropout_p: float = 0.0,
                           training: bool = False) -> Tensor:
    """Sparse-plus-rank-one attention (Guo, Song, Yang, Zhang, "Beyond Classical Attention: Quantum
    Attention for Scalable Computation"), computed exactly on a classical machine.

    q, k, v: (..., T, d); returns (..., T, d). With scores ``s = q.k / sqrt(d)``, ``A = exp(s)`` is
    approximated by ``B = B1 + B2``: ``B1`` holds ``exp(s_ij)`` exactly on each row's *large* entries,
    ``B2`` is the all-ones rank-one matrix that stands for the small ones (``exp(x) ~ 1``). The output is
    ``D(B)^{-1} B V``, i.e. for row i with support S_i (the large entries)

        out_i = (sum_{j in S_i} exp(s_ij) v_j + sum_j v_j - sum_{j in S_i} v_j) / (sum_{j in S_i} exp(s_ij) + T - |S_i|)

    so each small entry counts with weight exactly 1. The column sum ``1^T V`` is computed once for all
    rows (the rank-one part costs O(T d)). The large entries are

    - ``rule="topk"``: each row's ``top_k`` largest scores (by value);
    - ``rule="tau"``: the entries with ``|s_ij| > tau``, at most ``top_k`` per row (the paper's
      (tau, k)-good model assumes at most k such entries per row). The candidates are the ``top_k``
      entries of largest ``|s_ij|``, so a row with more than ``top_k`` entries above tau keeps the
      ``top_k`` largest in magnitude and counts the rest as small.

    ``top_k`` larger than T is clamped to T; with ``rule="topk"`` and ``top_k >= T`` every entry is in
    B1, so B = exp(s) and the output equals dense softmax attention.

    Numerics: the ones of B2 are absolute (``exp(0) = 1``), so the usual softmax shift by the row
    maximum would change the result if applied to B1 alone. Here numerator and denominator are both
    multiplied by ``exp(-m)``, ``m = max(0, max_{j in S_i} s_ij)`` (a detached constant per row): B1's
    entries become ``exp(s - m) <= 1`` and the ones become ``exp(-m)``, which keeps the math exact and
    avoids overflow of ``exp`` for large scores. Inputs in half/bfloat16 are computed in float32 (with
    autocast off) and the result is cast back.

    ``dropout_p`` drops entries of B1 (after normalisation, as ``scaled_dot_product_attention`` does);
    the rank-one part is never dropped (dropping its entries one by one would cost the T x T matrix).

    No quantum speed-up is claimed or measured: the quantum search for the large entries is replaced by
    a chunked dense score pass and ``torch.topk``. Cost as for :func:`topk_attention`: O(T^2 d) time,
    O(chunk_size * T) transient memory per head, O(T k) per head kept for the backward.
    """
    if rule not in ("topk", "tau"):
        raise ValueError(f"sparse_rank1 rule must be 'topk' or 'tau', got {rule!r}")
    if rule == "tau" and not tau > 0:
        raise ValueError(f"sparse_rank1 tau must be > 0, got {tau}")
    dtype = q.dtype
    q, k, v, ctx = _full_precision(q, k, v)
    with ctx:
        T, d = q.shape[-2], q.shape[-1]
        n_keys = k.shape[-2]
        kk = _clamp_k(top_k, n_keys)
        scale = 1.0 / math.sqrt(d)
        kt = k.transpose(-2, -1)
        col_sum = v.sum(dim=-2, keepdim=True)                             # 1^T V: (..., 1, d)
        outs = []
        for start in range(0, T, chunk_size):
            scores = (q[..., start:start + chunk_size, :] @ kt) * scale  # (..., c, T)
            if rule == "topk":
                vals, idx = scores.topk(kk, dim=-1)                       # sorted: vals[..., 0] is the max
                keep = None
                m = vals[..., :1].detach().clamp(min=0)
            else:
                idx = scores.detach().abs().topk(kk, dim=-1).indices
                # the kept scores again from q and the kept keys: gathering them from `scores` would keep the
                # (c, T) chunk for the backward
                vals = (q[..., start:start + chunk_size, :].unsqueeze(-2)
                        @ _gather_rows(k, idx).transpose(-2, -1)).squeeze(-2) * scale
                keep = vals.abs() > tau
                m = torch.where(keep, vals, torch.zeros_like(vals)).detach().amax(dim=-1, keepdim=True)
                m = m.clamp(min=0)
            ones = torch.exp(-m)                                          # the weight of a small entry
            b1 = torch.exp(vals - m)                                      # B1's entries, shifted
            if keep is not None:
                b1 = torch.where(keep, b1, ones)                          # not kept: counts as a one
            denom = (b1 - ones).sum(dim=-1, keepdim=True) + ones * n_keys
            if dropout_p > 0.0 and training:
                dropped = F.dropout(b1, dropout_p, training=True)
                b1 = dropped if keep is None else torch.where(keep, dropped, ones)
            weights = b1 - ones                                           # B1 V - S V, per kept entry
            sparse = (weights.unsqueeze(-2) @ _gather_rows(v, idx)).squeeze(-2)
            outs.append((sparse + ones * col_sum) / denom)
        out = torch.cat(outs, dim=-2)
    return out.to(dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention: dense softmax, or one of the sparse variants (no extra parameters).

    ``attention``: "dense" (``F.scaled_dot_product_attention``), "sparse_rank1"
    (:func:`sparse_rank1_attention`, with ``sparse_rule`` "topk" or "tau" and ``tau``) or "topk"
    (:func:`topk_attention`, our reading of QSAT); ``k`` entries per query for the variants, clamped
    to the sequence length. The variants simulate the schemes' outputs on a classical machine; no
    quantum speed-up is claimed or measured.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float, attention: str = "dense", k: int = 32,
                 sparse_rule: str = "topk", tau: float = 1.0, chunk_size: int = DEFAULT_CHUNK):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}; got {attention!r}")
        if k < 1:
            raise ValueError(f"attention k must be >= 1, got {k}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.n_heads, self.dropout = n_heads, dropout
        self.attention, self.k, self.sparse_rule, self.tau = attention, k, sparse_rule, tau
        self.chunk_size = chunk_size
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """(B, H, T, d_head) each -> (B, H, T, d_head)."""
        p = self.dropout if self.training else 0.0
        if self.attention == "sparse_rank1":
            return sparse_rank1_attention(q, k, v, self.k, rule=self.sparse_rule, tau=self.tau,
                                          chunk_size=self.chunk_size, dropout_p=p, training=self.training)
        if self.attention == "topk":
            return topk_attention(q, k, v, self.k, chunk_size=self.chunk_size, dropout_p=p,
                                  training=self.training)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p)

    def forward(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        y = self.attend(q, k, v)
        return self.out(y.transpose(1, 2).reshape(B, T, D))


class PositionalEncoding(nn.Module):
    """Adds sinusoidal (fixed) or learned position vectors."""

    def __init__(self, d_model: int, seq_len: int, kind: str):
        super().__init__()
        if kind == "learned":
            self.pos = nn.Parameter(torch.randn(seq_len, d_model) * 0.02)
        else:
            position = torch.arange(seq_len).unsqueeze(1)
            freq = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
            pe = torch.zeros(seq_len, d_model)
            pe[:, 0::2] = torch.sin(position * freq)
            pe[:, 1::2] = torch.cos(position * freq[: d_model // 2])
            self.register_buffer("pos", pe, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.pos[: x.shape[1]]


def build_transformer(cfg, in_channels: int, n_classes: int, seq_len: int) -> SequenceClassifier:
    opts = cfg.transformer
    blocks = [ResidualBlock(SelfAttention(cfg.d_model, opts.n_heads, cfg.dropout, attention=opts.attention,
                                          k=opts.attention_k, sparse_rule=opts.sparse_rule, tau=opts.attention_tau),
                            cfg.d_model, cfg.ff_mult, cfg.dropout) for _ in range(cfg.n_layers)]
    pre = PositionalEncoding(cfg.d_model, seq_len, opts.positional)
    return SequenceClassifier(in_channels, cfg.d_model, blocks, n_classes, cfg.pooling, pre=pre)
