"""Bad inputs give a clear error that says what was wrong and what is allowed."""
import pytest
import torch

import qlam
from scan_cases import Case, make_inputs


def _args(**change):
    args = make_inputs(Case(B=2, T=4, H=2, L=1, n=3))
    args.update(change)
    return args


def _raises(match, **change):
    with pytest.raises(RuntimeError, match=match):
        qlam.ops.scan(**_args(**change))


def test_angles_wrong_rank():
    _raises(r"angles must have shape \(B, T, H, L, n, 3\)", angles=torch.zeros(2, 4, 2, 3, 3))


def test_angles_last_dim_not_three():
    _raises(r"must be 3", angles=torch.zeros(2, 4, 2, 1, 3, 2, dtype=torch.float64))


def test_angles_integer_dtype():
    _raises(r"angles must be float32 or float64, got Long", angles=torch.zeros(2, 4, 2, 1, 3, 3, dtype=torch.long))


def test_too_many_qubits():
    n = qlam._extension.max_qubits() + 1
    args = make_inputs(Case(B=1, T=1, H=1, L=1, n=n, with_init=False, with_lengths=False))
    with pytest.raises(RuntimeError, match=rf"n_qubits \(angles.shape\[4\]\) must be in \[1, {n - 1}\].*got {n}"):
        qlam.ops.scan(**args)


def test_zero_qubits():
    _raises(r"must be in \[1, 12\], got 0", angles=torch.zeros(2, 4, 2, 1, 0, 3, dtype=torch.float64),
            init_state=None)


def test_unknown_entangler():
    _raises(r"unknown entangler 'cx'; expected one of 'cnot', 'cz', 'rzz', 'none'", entangler="cx")


def test_rzz_without_ent_angles():
    _raises(r"entangler='rzz' needs ent_angles of shape \(B, T, H, L, P\) with P = 3", entangler="rzz")


def test_ent_angles_with_other_entangler():
    _raises(r"ent_angles is only used with entangler='rzz'", ent_angles=torch.zeros(2, 4, 2, 1, 3, dtype=torch.float64))


def test_ent_angles_wrong_shape():
    _raises(r"ent_angles must have shape \(B, T, H, L, P\) = \(2, 4, 2, 1, 3\)", entangler="rzz",
            ent_angles=torch.zeros(2, 4, 2, 1, 2, dtype=torch.float64))


def test_ent_angles_wrong_dtype():
    _raises(r"ent_angles must have the dtype of angles", entangler="rzz",
            ent_angles=torch.zeros(2, 4, 2, 1, 3, dtype=torch.float32))


def test_init_state_wrong_shape():
    _raises(r"init_state must have shape \(B, H, 2\*\*n\) = \(2, 2, 8\)", init_state=torch.zeros(2, 2, 4, dtype=torch.complex128))


def test_init_state_real():
    _raises(r"init_state must be ComplexDouble to go with Double angles, got Double",
            init_state=torch.zeros(2, 2, 8, dtype=torch.float64))


def test_lengths_out_of_range():
    _raises(r"lengths must lie in \[0, T\] = \[0, 4\], got values in \[-1, 5\]", lengths=torch.tensor([5, -1]))


def test_lengths_wrong_dtype():
    _raises(r"lengths must be int64, got Float", lengths=torch.tensor([1.0, 2.0]))


def test_lengths_wrong_shape():
    _raises(r"lengths must have shape \(B,\) = \(2,\)", lengths=torch.tensor([1, 2, 3]))


def test_negative_checkpoint_interval():
    with pytest.raises(RuntimeError, match="checkpoint_every must be >= 0"):
        torch.ops.qlam.scan_checkpointed(*_args().values(), -1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_mismatched_devices():
    _raises(r"init_state is on cpu but angles is on cuda", angles=_args()["angles"].cuda())


def test_meta_tensors_mismatched_device_is_reported():
    args = _args(angles=torch.zeros(2, 4, 2, 1, 3, 3, dtype=torch.float64, device="meta"))
    with pytest.raises(RuntimeError, match=r"init_state is on cpu but angles is on meta"):
        qlam.ops.scan(**args)


def test_backward_rechecks_lengths():
    """The backward op reads `lengths` again: called directly with lengths past T, or after the lengths were
    changed in place since the forward, it raises instead of indexing out of bounds."""
    g = torch.Generator().manual_seed(0)
    angles = torch.randn(2, 4, 1, 1, 3, 3, generator=g, dtype=torch.float64)
    lengths = torch.tensor([4, 2])
    features, final, checkpoints = torch.ops.qlam.scan_forward(angles, None, None, lengths, "cnot", False, 0)
    bad = torch.tensor([4, 9])
    with pytest.raises(RuntimeError, match=r"lengths must lie in \[0, T\] = \[0, 4\], got values in \[4, 9\]"):
        torch.ops.qlam.scan_backward(torch.ones_like(features), None, angles, None, final, checkpoints, bad, "cnot",
                                     False, 0)
    x = angles.clone().requires_grad_(True)
    lengths = torch.tensor([4, 2])
    out, _ = qlam.ops.scan(x, lengths=lengths)
    lengths.fill_(-7)
    with pytest.raises(RuntimeError, match=r"modified by an inplace operation|lengths must lie in \[0, T\]"):
        out.sum().backward()
