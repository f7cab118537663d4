"""torch.autograd.gradcheck and torch.library.opcheck on the registered ops."""
import pytest
import torch

import qlam
from scan_cases import DEVICES, Case, make_inputs

GRAD_CASES = [
    Case(B=2, T=3, H=1, L=1, n=2, entangler="cnot"),
    Case(B=1, T=2, H=2, L=2, n=3, entangler="cz", pair_features=True),
    Case(B=2, T=3, H=1, L=1, n=3, entangler="rzz", pair_features=True),
    Case(B=2, T=2, H=1, L=2, n=1, entangler="none", with_init=True),
    Case(B=2, T=3, H=1, L=1, n=3, entangler="cnot", noncontiguous=True),
]


def _as_function(args: dict, checkpoint_every=None):
    keys = [k for k in ("angles", "ent_angles", "init_state") if args[k] is not None]

    def fn(*tensors):
        kw = {**args, **dict(zip(keys, tensors))}
        return qlam.ops.scan(**kw, checkpoint_every=checkpoint_every)

    return fn, [args[k] for k in keys]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", GRAD_CASES, ids=str)
def test_gradcheck(case, device):
    args = make_inputs(case, device=device, requires_grad=True)
    fn, inputs = _as_function(args)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradcheck_with_checkpoints():
    args = make_inputs(Case(B=2, T=5, H=1, L=1, n=2, entangler="rzz"), requires_grad=True)
    fn, inputs = _as_function(args, checkpoint_every=2)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_double_backward_is_a_clear_error():
    args = make_inputs(Case(), requires_grad=True)
    features, _ = qlam.ops.scan(**args)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(features.sum(), args["angles"], create_graph=True)


def _opcheck_args(case, device, dtype=torch.float64):
    a = make_inputs(case, device=device, dtype=dtype, requires_grad=True)
    return (a["angles"], a["ent_angles"], a["init_state"], a["lengths"], a["entangler"], a["pair_features"])


OPCHECK_CASES = [
    Case(B=2, T=3, H=2, L=1, n=3, entangler="cnot"),
    Case(B=2, T=3, H=1, L=2, n=2, entangler="rzz", pair_features=True),
    Case(B=1, T=2, H=1, L=1, n=4, entangler="cz", with_init=False, with_lengths=False),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", OPCHECK_CASES, ids=str)
def test_opcheck_scan(case, device):
    args = _opcheck_args(case, device)
    torch.library.opcheck(torch.ops.qlam.scan.default, args)
    torch.library.opcheck(torch.ops.qlam.scan_checkpointed.default, args + (2,))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_forward_and_backward_ops(device):
    args = _opcheck_args(OPCHECK_CASES[1], device)
    plain = tuple(x.detach() if isinstance(x, torch.Tensor) else x for x in args)
    features, final, checkpoints = torch.ops.qlam.scan_forward(*plain, 2)
    torch.library.opcheck(torch.ops.qlam.scan_forward.default, plain + (2,))
    backward_args = (torch.randn_like(features), torch.randn_like(final), plain[0], plain[1], final, checkpoints,
                     plain[3], plain[4], plain[5], 2)
    torch.library.opcheck(torch.ops.qlam.scan_backward.default, backward_args)
    torch.library.opcheck(torch.ops.qlam.scan_backward.default, (None, None) + backward_args[2:])
