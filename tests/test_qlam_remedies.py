"""The QLAM angle-map options (issue 16: the memory on long sequences) and the memory diagnostics."""
import math

import pytest
import torch

import qlam
from qlam import diagnostics as D
from qlam import reference
from qlam.models import build_model
from qlam.train.config import config_from_dict
from qlam.train.schema import ConfigError

SMALL = {"d_model": 8, "n_layers": 1, "qlam": {"n_qubits": 3, "n_heads": 2, "depth": 1}}


def _layer(**kw):
    torch.manual_seed(0)
    return qlam.QLAM(4, 5, batch_first=True, n_qubits=3, n_heads=2, depth=2, **kw).double()


def test_defaults_are_rzz_with_a_fixed_step():
    """The defaults chosen by results/qlam-remedies/README.md's table; layer and config agree."""
    layer = _layer()
    cell = layer.cells[0]
    assert layer.entangler == "rzz" and cell.step is None and cell.step_bias is not None
    assert "angle_" not in layer.extra_repr() and "step_size" not in layer.extra_repr()
    assert "entangler='rzz'" in layer.extra_repr()
    opts = config_from_dict({}).model.qlam
    assert (opts.entangler, opts.angle_init, opts.angle_bias, opts.angle_map, opts.step_size, opts.dt_min,
            opts.dt_max, opts.reset_state_every_token) == ("rzz", 0.5, True, "linear", "fixed", 0.001, 0.1, False)
    # One step per head, log-uniform over the heads in [dt_min, dt_max] at the start.
    steps = torch.nn.functional.softplus(cell.step_bias.detach())
    assert torch.allclose(steps, torch.tensor([0.001, 0.1], dtype=steps.dtype), rtol=1e-6)


def test_original_layer_is_one_option_away():
    """entangler="cnot", step_size="none" is the paper's map alpha = W x + b, with the same parameters in the
    same order as the layer had before the defaults changed (its checkpoints stay loadable)."""
    layer = _layer(entangler="cnot", step_size="none")
    cell = layer.cells[0]
    assert cell.step is None and cell.step_bias is None and cell.angles.bias is not None
    assert "step_size='none'" in layer.extra_repr() and "entangler='cnot'" in layer.extra_repr()
    assert [n for n, _ in layer.named_parameters()] == [
        "cells.0.angles.weight", "cells.0.angles.bias", "cells.0.query.weight", "cells.0.query.bias",
        "cells.0.readout.weight", "cells.0.readout.bias"]


def test_angle_init_scales_the_weights():
    a, b = _layer(angle_init=0.5), _layer(angle_init=0.05)
    assert torch.allclose(a.cells[0].angles.weight * 0.1, b.cells[0].angles.weight)


@pytest.mark.parametrize("step_size", ["none", "selective"])
def test_zero_input_is_the_identity_without_angle_bias_and_with_rzz(step_size):
    layer = _layer(angle_bias=False, entangler="rzz", step_size=step_size)
    assert layer.cells[0].angles.bias is None
    init = torch.randn(1, 3, 2, 8, dtype=torch.complex128)
    init = init / init.norm(dim=-1, keepdim=True)
    _, final = layer(torch.zeros(3, 11, 4, dtype=torch.float64), init)
    assert torch.allclose(final, init, atol=1e-12)


def test_tanh_angle_map_bounds_the_angles():
    layer = _layer(angle_map="tanh", entangler="rzz", step_size="none")
    cell = layer.cells[0]
    with torch.no_grad():
        cell.angles.weight.mul_(1e3)
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    angles, ent = cell.circuit_angles(x)
    raw = math.pi * torch.tanh(cell.angles(x))
    assert angles.abs().max() <= math.pi and ent.abs().max() <= math.pi
    assert torch.allclose(angles.flatten(2), raw[..., :angles[0, 0].numel()])


def test_selective_step_scales_each_heads_angles():
    layer = _layer(step_size="selective", dt_min=0.01, dt_max=1.0, entangler="rzz")
    cell = layer.cells[0]
    # softplus(bias) is log-uniform over the heads in [dt_min, dt_max].
    assert torch.allclose(torch.nn.functional.softplus(cell.step.bias), torch.tensor([0.01, 1.0], dtype=torch.float64))
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    delta = cell.step_sizes(x)
    assert delta.shape == (2, 6, 2) and (delta > 0).all()
    angles, ent = cell.circuit_angles(x)
    raw = cell.angles(x)
    n_rot = 2 * 2 * 3 * 3
    assert torch.allclose(angles, raw[..., :n_rot].reshape(2, 6, 2, 2, 3, 3) * delta[..., None, None, None])
    assert torch.allclose(ent, raw[..., n_rot:].reshape(2, 6, 2, 2, 3) * delta[..., None, None])


def test_selective_step_trains_and_kernel_matches_reference():
    layer = _layer(step_size="selective", entangler="rzz")
    x = torch.randn(2, 7, 4, dtype=torch.float64)
    ref = _layer(step_size="selective", entangler="rzz", backend="reference")
    y_k, s_k = layer(x)
    y_r, s_r = ref(x)
    assert torch.allclose(y_k, y_r, atol=1e-10) and torch.allclose(s_k, s_r, atol=1e-10)
    y_k.square().sum().backward()
    assert layer.cells[0].step.weight.grad.abs().sum() > 0 and layer.cells[0].step.bias.grad.abs().sum() > 0


def test_tiny_step_leaves_the_state_almost_unchanged():
    layer = _layer(step_size="selective", dt_min=1e-6, dt_max=1e-6, entangler="rzz")
    with torch.no_grad():
        layer.cells[0].step.weight.zero_()
    _, final = layer(torch.randn(2, 50, 4, dtype=torch.float64))
    assert (final[..., 0].abs() ** 2 > 1 - 1e-6).all()


def test_reset_every_token_has_no_memory():
    layer = _layer(reset_state_every_token=True, entangler="cnot")
    cell = layer.cells[0]
    x = torch.randn(3, 9, 4, dtype=torch.float64)
    y, final = layer(x)
    # Token t alone from |0...0>: the same features and output.
    for t in (0, 4, 8):
        y_t, s_t = _layer(entangler="cnot")(x[:, t:t + 1])
        assert torch.allclose(y[:, t], y_t[:, 0], atol=1e-12)
    assert torch.allclose(final, s_t, atol=1e-12)
    # Changing an early token changes nothing later.
    x2 = x.clone()
    x2[:, 0] += 1
    y2, _ = layer(x2)
    assert torch.allclose(y[:, 1:], y2[:, 1:]) and not torch.allclose(y[:, 0], y2[:, 0])
    # Lengths: padding gives zero features, the final state is the last valid token's.
    lengths = torch.tensor([9, 3, 0])
    feats, fin = cell._scan_reset(reference.scan, *cell.circuit_angles(x), None, lengths)
    assert feats[1, 3:].abs().max() == 0 and feats[2].abs().max() == 0
    assert torch.allclose(fin[1], _layer(entangler="cnot")(x[1:2, 2:3])[1][0, 0].detach())
    assert torch.allclose(fin[2, :, 0].abs(), torch.ones(2, dtype=torch.float64))


def test_config_keys_reach_the_layer():
    cfg = config_from_dict({"model": {"name": "qlam", **SMALL}}, [
        "model.qlam.step_size=selective", "model.qlam.dt_min=0.01", "model.qlam.dt_max=0.5",
        "model.qlam.angle_bias=false", "model.qlam.angle_map=tanh", "model.qlam.angle_init=0.1",
        "model.qlam.entangler=rzz", "model.qlam.reset_state_every_token=true"]).model
    model = build_model(cfg, 1, 10, 12)
    layer = model.blocks[0].mixer.qlam
    assert (layer.step_size, layer.dt_min, layer.dt_max, layer.angle_bias, layer.angle_map, layer.angle_init) == (
        "selective", 0.01, 0.5, False, "tanh", 0.1)
    assert layer.cells[0].reset_state_every_token
    assert model(torch.randn(2, 12, 1)).shape == (2, 10)
    with pytest.raises(ConfigError, match="dt_min"):
        config_from_dict({}, ["model.qlam.dt_min=1", "model.qlam.dt_max=0.1"])
    with pytest.raises(ValueError, match="step_size"):
        qlam.QLAM(2, 2, step_size="fast")


# -- diagnostics -------------------------------------------------------------------------------

def _model(**qlam_opts):
    torch.manual_seed(0)
    cfg = config_from_dict({"model": {"name": "qlam", **SMALL, "qlam": {**SMALL["qlam"], **qlam_opts}}}).model
    return build_model(cfg, 1, 10, 16).double()


def test_state_trajectory_ends_in_the_scans_final_state_and_motion_is_zero_at_rest():
    model = _model()
    x = torch.randn(3, 16, 1, dtype=torch.float64)
    (name, cell), = D.qlam_cells(model)
    inp = D.cell_inputs(model, x)[name]
    states = D.state_trajectory(cell, inp)
    _, final = cell(inp, None, None, True, None)
    assert states.shape == (3, 16, 2, 8) and torch.allclose(states[:, -1], final, atol=1e-12)
    assert D.state_motion(states).shape == (3, 16, 2)
    still = _model(angle_bias=False, entangler="rzz")
    (name, cell), = D.qlam_cells(still)
    assert D.state_motion(D.state_trajectory(cell, torch.zeros(2, 5, 8, dtype=torch.float64))).abs().max() < 1e-12


def test_gradient_profile_memory_contribution_and_probes():
    model = _model()
    x, y = torch.randn(4, 16, 1, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    prof = D.gradient_profile(model, x, y)
    (g,) = prof.values()
    assert g["angles"].shape == (16,) and g["input"].shape == (16,) and (g["angles"] > 0).all()
    mc = D.memory_contribution(model, [(x, y)])
    assert set(mc) == {"normal", "reset"} and mc["normal"]["loss"] != mc["reset"]["loss"]
    assert not D.qlam_cells(model)[0][1].reset_state_every_token  # restored
    feats = torch.randn(200, 5)
    labels = (feats[:, 0] > 0).long()
    assert D.linear_probe(feats[:100], labels[:100], feats[100:], labels[100:], n_classes=2)["test_acc"] > 0.9
    probes = D.probe_memory(model, (x, y), (x, y))
    assert set(next(iter(probes.values()))) == {"measured_features", "density_matrix"}
    assert D.parameter_sensitivity(D.qlam_cells(model)[0][1], D.cell_inputs(model, x)["blocks.0.mixer.qlam.cells.0"]
                                   ).shape == (16,)
    assert abs(D.random_state_spread(4) - 1 / math.sqrt(17)) < 1e-12


def test_fixed_step_is_the_same_at_every_token():
    layer = _layer(step_size="fixed", dt_min=0.01, dt_max=1.0, entangler="rzz")
    cell = layer.cells[0]
    assert cell.step is None and cell.step_bias.shape == (2,)
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    delta = cell.step_sizes(x)
    expected = torch.tensor([0.01, 1.0], dtype=torch.float64).expand(2, 6, 2)
    assert delta.shape == (2, 6, 2) and torch.allclose(delta, expected)
    y, _ = layer(x)
    y.square().sum().backward()
    assert cell.step_bias.grad.abs().sum() > 0


def test_angle_lr_gives_the_angle_projection_its_own_optimizer_group():
    from qlam.train.optim import param_groups
    cfg = config_from_dict({"model": {"name": "qlam", **SMALL}}, ["model.qlam.angle_lr=1e-5"]).model
    model = build_model(cfg, 1, 10, 12)
    groups = param_groups(model, 1e-3, 0.01)
    special = [g for g in groups if g["lr"] == 1e-5]
    angles = {id(p) for p in model.blocks[0].mixer.qlam.cells[0].angles.parameters()}
    assert len(special) == 1 and {id(p) for p in special[0]["params"]} == angles
    assert special[0]["weight_decay"] == 0.0
    assert not any(hasattr(p, "_optim") for p in build_model(config_from_dict(
        {"model": {"name": "qlam", **SMALL}}).model, 1, 10, 12).parameters())
