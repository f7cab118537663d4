"""qlam.models: every model maps (B, T, C) to logits, trains, and reports its parameter count."""
import pytest
import torch

from qlam.models import build_model, count_parameters
from qlam.models.qlam_classifier import QLAMMixer
from qlam.train.config import config_from_dict

SMALL = {"d_model": 16, "n_layers": 2, "qlam": {"n_qubits": 3, "n_heads": 2, "depth": 1},
         "transformer": {"n_heads": 2}, "ssm": {"d_state": 8}}


@pytest.mark.parametrize("name", ["qlam", "lstm", "transformer", "ssm"])
@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_forward_backward(name, pooling):
    torch.manual_seed(0)
    cfg = config_from_dict({"model": {"name": name, "pooling": pooling, **SMALL}}).model
    model = build_model(cfg, 3, 10, 20)
    x = torch.randn(4, 20, 3)
    logits = model(x)
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    logits.logsumexp(-1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_qlam_classifier_uses_the_qlam_layer():
    cfg = config_from_dict({"model": {"name": "qlam", **SMALL}}).model
    model = build_model(cfg, 1, 10, 8)
    mixers = [m for m in model.modules() if isinstance(m, QLAMMixer)]
    assert len(mixers) == 2 and mixers[0].qlam.batch_first and mixers[0].qlam.n_heads == 2


def test_transformer_learned_positions_and_causality_free():
    cfg = config_from_dict({"model": {"name": "transformer", **SMALL,
                                      "transformer": {"n_heads": 2, "positional": "learned"}}}).model
    model = build_model(cfg, 1, 10, 12)
    assert model.pre.pos.shape == (12, 16) and model.pre.pos.requires_grad


def test_ssm_marks_its_dynamics_for_the_optimizer():
    from qlam.train.optim import param_groups
    cfg = config_from_dict({"model": {"name": "ssm", **SMALL}}).model
    model = build_model(cfg, 1, 10, 12)
    groups = param_groups(model, 1e-2, 0.1)
    special = [g for g in groups if g["lr"] == cfg.ssm.lr]
    assert special and special[0]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def _qlam_model(recompute_chunk, dropout=0.0, pooling="mean"):
    torch.manual_seed(0)
    cfg = config_from_dict({"model": {"name": "qlam", **SMALL, "dropout": dropout, "pooling": pooling,
                                      "qlam": {**SMALL["qlam"], "recompute_chunk": recompute_chunk}}}).model
    return build_model(cfg, 3, 10, 23).double()


def _loss_and_grads(model, x):
    model.zero_grad()
    x = x.detach().requires_grad_()
    loss = model(x).logsumexp(-1).sum()
    loss.backward()
    return loss.detach(), [x.grad] + [p.grad for p in model.parameters()]


def _assert_same(a, b):
    (loss_a, grads_a), (loss_b, grads_b) = a, b
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-12, atol=1e-12)
    assert len(grads_a) == len(grads_b)
    for g_a, g_b in zip(grads_a, grads_b):
        torch.testing.assert_close(g_a, g_b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("pooling", ["mean", "last"])
@pytest.mark.parametrize("chunk", [1, 5, 22, 23])
def test_recompute_chunk_gives_the_same_loss_and_gradients(chunk, pooling):
    # float64: the chunked, recomputed pass must be the one-pass computation, not an approximation
    x = torch.randn(3, 23, 3, dtype=torch.float64)
    _assert_same(_loss_and_grads(_qlam_model(chunk, pooling=pooling), x),
                 _loss_and_grads(_qlam_model(None, pooling=pooling), x))


def test_recompute_chunk_replays_dropout_masks(monkeypatch):
    # The backward's recomputation must draw the forward's dropout masks: the gradients equal those
    # of the same chunked run that keeps its activations (checkpoint replaced by a plain call).
    import qlam.models.qlam_classifier as qlam_classifier

    x = torch.randn(3, 23, 3, dtype=torch.float64)
    model = _qlam_model(5, dropout=0.3).train()
    torch.manual_seed(1)
    recomputed = _loss_and_grads(model, x)
    monkeypatch.setattr(qlam_classifier, "checkpoint", lambda fn, *args, **kwargs: fn(*args))
    torch.manual_seed(1)
    kept = _loss_and_grads(model, x)
    _assert_same(recomputed, kept)
    torch.manual_seed(2)  # and the masks are really random: another seed gives another loss
    assert not torch.allclose(_loss_and_grads(model, x)[0], kept[0])


def test_recompute_chunk_in_eval_is_one_pass():
    x = torch.randn(2, 23, 3, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(_qlam_model(4).eval()(x), _qlam_model(None).eval()(x), rtol=0, atol=0)
