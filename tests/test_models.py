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
