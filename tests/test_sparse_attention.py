"""The Transformer's attention variants: sparse-plus-rank-one attention (Guo et al.) and QSAT-style top-k.

Both are exact classical simulations of the schemes' outputs; the references here are built naively
(the explicit T x T matrix) in float64.
"""
import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from qlam.models import build_model, count_parameters
from qlam.models.transformer import SelfAttention, sparse_rank1_attention, topk_attention
from qlam.train.config import config_from_dict, load_config
from qlam.train.schema import ConfigError

F64 = dict(dtype=torch.float64)


def qkv(B=2, H=3, T=13, d=4, seed=0, dtype=torch.float64, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, d, generator=g, dtype=dtype) * scale for _ in range(3)]


def naive_sparse_rank1(q, k, v, top_k, rule="topk", tau=1.0):
    """D(B)^{-1} B V with B built explicitly: exp(score) on the support, 1 elsewhere."""
    s = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    kk = min(top_k, s.shape[-1])
    support = torch.zeros_like(s, dtype=torch.bool)
    if rule == "topk":
        support.scatter_(-1, s.topk(kk, dim=-1).indices, True)
    else:
        support.scatter_(-1, s.abs().topk(kk, dim=-1).indices, True)
        support &= s.abs() > tau
    b = torch.where(support, s.exp(), torch.ones_like(s))
    return (b @ v) / b.sum(-1, keepdim=True)


def naive_topk(q, k, v, top_k):
    s = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    kk = min(top_k, s.shape[-1])
    mask = torch.zeros_like(s, dtype=torch.bool).scatter_(-1, s.topk(kk, dim=-1).indices, True)
    return torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1) @ v


@pytest.mark.parametrize("T, chunk", [(13, 4), (37, 8), (5, 256), (1, 3)])
@pytest.mark.parametrize("extra", [0, 10])  # k = T, and k > T (clamped to T)
def test_k_equal_T_is_dense_softmax_attention(T, chunk, extra):
    q, k, v = qkv(T=T)
    dense = F.scaled_dot_product_attention(q, k, v)
    assert ((q @ k.transpose(-2, -1)).abs() > 1e-11).all()  # so the tau rule below keeps every entry
    for out in (topk_attention(q, k, v, T + extra, chunk_size=chunk),
                sparse_rank1_attention(q, k, v, T + extra, chunk_size=chunk),
                sparse_rank1_attention(q, k, v, T + extra, rule="tau", tau=1e-12, chunk_size=chunk)):
        torch.testing.assert_close(out, dense, atol=1e-10, rtol=0)


def test_tau_rule_is_exact_when_the_small_scores_are_exactly_zero():
    # K = sqrt(d) I makes the scores Q itself; each row of Q has 3 entries with |s| > tau and zeros elsewhere,
    # so B1 + B2 = exp(scores) exactly, with k = 4 < T kept per row.
    T, tau = 23, 0.5
    g = torch.Generator().manual_seed(1)
    scores = torch.zeros(2, 2, T, T, **F64)
    for b in range(2):
        for h in range(2):
            for i in range(T):
                cols = torch.randperm(T, generator=g)[:3]
                signs = torch.where(torch.rand(3, generator=g) < 0.5, -1.0, 1.0).double()
                scores[b, h, i, cols] = signs * (tau + 0.1 + 3 * torch.rand(3, generator=g, **F64))
    k = math.sqrt(T) * torch.eye(T, **F64).expand(2, 2, T, T)
    v = torch.randn(2, 2, T, 5, generator=g, **F64)
    s = (scores @ k.transpose(-2, -1)) / math.sqrt(T)
    assert ((s.abs() > tau).sum(-1) == 3).all() and (s[s.abs() <= tau] == 0).all()
    out = sparse_rank1_attention(scores, k, v, 4, rule="tau", tau=tau, chunk_size=7)
    torch.testing.assert_close(out, torch.softmax(s, -1) @ v, atol=1e-10, rtol=0)
    # the top-k rule is not exact here: it keeps the large negative entries out of B1
    assert not torch.allclose(sparse_rank1_attention(scores, k, v, 3, chunk_size=7), torch.softmax(s, -1) @ v)


@pytest.mark.parametrize("top_k", [1, 3, 7, 40])
@pytest.mark.parametrize("rule, tau", [("topk", 1.0), ("tau", 0.3), ("tau", 1.5)])
def test_rank_one_form_equals_the_explicit_matrix_B(top_k, rule, tau):
    q, k, v = qkv(T=19, d=6, seed=2, scale=1.5)
    out = sparse_rank1_attention(q, k, v, top_k, rule=rule, tau=tau, chunk_size=5)
    torch.testing.assert_close(out, naive_sparse_rank1(q, k, v, top_k, rule, tau), atol=1e-10, rtol=0)


@pytest.mark.parametrize("top_k", [1, 4, 11])
def test_topk_equals_masked_softmax(top_k):
    q, k, v = qkv(T=21, d=5, seed=3)
    out = topk_attention(q, k, v, top_k, chunk_size=6)
    torch.testing.assert_close(out, naive_topk(q, k, v, top_k), atol=1e-10, rtol=0)


def test_sparse_rank1_large_scores_do_not_overflow_in_float32():
    # scores up to ~ 300: exp would overflow float32 without the exact shift by the row maximum
    q, k, v = qkv(T=17, d=4, seed=4, scale=6.0)
    ref = naive_sparse_rank1(q, k, v, 5)
    assert (q @ k.transpose(-2, -1) / 2).max() > 100
    out = sparse_rank1_attention(q.float(), k.float(), v.float(), 5, chunk_size=4)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), ref, atol=1e-4, rtol=1e-4)


def test_gradcheck():
    q, k, v = (t.requires_grad_() for t in qkv(B=1, H=2, T=7, d=3, seed=5))
    assert torch.autograd.gradcheck(lambda *a: topk_attention(*a, 3, chunk_size=4), (q, k, v))
    assert torch.autograd.gradcheck(lambda *a: sparse_rank1_attention(*a, 3, chunk_size=4), (q, k, v))
    assert torch.autograd.gradcheck(lambda *a: sparse_rank1_attention(*a, 4, rule="tau", tau=0.5, chunk_size=4),
                                    (q, k, v))


@pytest.mark.parametrize("attention", ["sparse_rank1", "topk"])
@pytest.mark.parametrize("T", [1, 6, 31])
def test_module_odd_lengths_and_chunking(attention, T):
    torch.manual_seed(0)
    x = torch.randn(2, T, 8, **F64)
    small = SelfAttention(8, 2, 0.0, attention=attention, k=4, chunk_size=3).double()
    big = SelfAttention(8, 2, 0.0, attention=attention, k=4, chunk_size=1024).double()
    big.load_state_dict(small.state_dict())
    out = small(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    torch.testing.assert_close(out, big(x), atol=1e-12, rtol=0)


@pytest.mark.parametrize("attention", ["sparse_rank1", "topk"])
def test_dropout_only_in_training(attention):
    torch.manual_seed(0)
    m = SelfAttention(8, 2, 0.5, attention=attention, k=3)
    x = torch.randn(2, 9, 8)
    m.eval()
    torch.testing.assert_close(m(x), m(x))
    m.train()
    out = m(x)
    assert torch.isfinite(out).all() and not torch.allclose(out, m.eval()(x))


def test_sparse_rank1_under_bf16_autocast_computes_in_float32():
    q, k, v = qkv(T=12, d=4, dtype=torch.float32, seed=6)
    ref = sparse_rank1_attention(q, k, v, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sparse_rank1_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), 4)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=0.05, rtol=0.05)


@pytest.mark.parametrize("attention", ["sparse_rank1", "topk"])
def test_torch_compile_matches_eager(attention):
    dynamo = pytest.importorskip("torch._dynamo", reason="torch.compile needs torch._dynamo")
    if not dynamo.is_dynamo_supported():
        pytest.skip("torch.compile is not supported on this platform/Python")
    torch.manual_seed(0)
    m = SelfAttention(8, 2, 0.0, attention=attention, k=4, chunk_size=4)
    x = torch.randn(2, 11, 8)
    eager = m(x)
    eager.sum().backward()
    grads = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    out = torch.compile(m, backend="aot_eager")(x)
    out.sum().backward()
    torch.testing.assert_close(out, eager)
    for p, g in zip(m.parameters(), grads):
        torch.testing.assert_close(p.grad, g)


def transformer_config(**opts):
    return {"model": {"name": "transformer", "d_model": 16, "n_layers": 1, "transformer": {"n_heads": 2, **opts}}}


@pytest.mark.parametrize("opts, words", [
    ({"attention_k": 0}, ["model.transformer.attention_k", ">= 1"]),
    ({"attention_k": -3}, ["model.transformer.attention_k", ">= 1"]),
    ({"attention": "bogus"}, ["model.transformer.attention", "'dense'", "'sparse_rank1'", "'topk'", "'bogus'"]),
    ({"sparse_rule": "median"}, ["model.transformer.sparse_rule", "'topk'", "'tau'"]),
    ({"attention_tau": 0}, ["model.transformer.attention_tau", "> 0"]),
])
def test_config_errors_name_the_key(opts, words):
    with pytest.raises(ConfigError) as info:
        config_from_dict(transformer_config(**opts))
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_variants_add_no_parameters_and_clamp_k_above_T():
    counts = {}
    for attention in ("dense", "sparse_rank1", "topk"):
        cfg = config_from_dict(transformer_config(attention=attention, attention_k=1000))
        torch.manual_seed(0)
        model = build_model(cfg.model, 1, 10, 9).double()
        counts[attention] = count_parameters(model)
        out = model(torch.randn(2, 9, 1, **F64))  # k = 1000 > T = 9: clamped, so equal to dense
        if attention == "dense":
            dense = out
        else:
            torch.testing.assert_close(out, dense, atol=1e-10, rtol=0)
    assert len(set(counts.values())) == 1, counts
    cfg = config_from_dict(transformer_config(attention="sparse_rank1"))
    assert cfg.run_dir().name == "smnist-transformer-sparse_rank1-seed0"
    assert config_from_dict(transformer_config()).run_dir().name == "smnist-transformer-seed0"


@pytest.mark.parametrize("task", ["smnist", "scifar10"])
def test_shipped_variant_configs_match_the_transformer_parameter_count(task):
    root = Path(__file__).resolve().parents[1] / "configs" / task
    channels = 3 if task == "scifar10" else 1
    counts = {}
    for stem in ("transformer", "sparse_rank1", "qsat"):
        cfg = load_config(root / f"{stem}.yaml")
        counts[stem] = count_parameters(build_model(cfg.model, channels, 10, 64))
    assert len(set(counts.values())) == 1, counts
    assert load_config(root / "qsat.yaml").model.transformer.attention == "topk"
    assert load_config(root / "sparse_rank1.yaml").model.transformer.attention == "sparse_rank1"
