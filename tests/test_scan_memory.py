"""The memory claim: apart from the op's own inputs, what autograd saves for
the scan does not grow with the sequence length (docs/design.md §3)."""
import pytest
import torch

import qlam
from scan_cases import Case, make_inputs


def _saved_bytes_beyond_inputs(T: int, checkpoint_every=None) -> int:
    args = make_inputs(Case(B=2, T=T, H=2, L=2, n=4), dtype=torch.float32, requires_grad=True)
    inputs = {id(x.untyped_storage()) for x in args.values() if isinstance(x, torch.Tensor)}
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        features, final = qlam.ops.scan(**args, checkpoint_every=checkpoint_every)
    assert features.requires_grad and saved, "autograd saved nothing: the test measures nothing"
    return sum(t.numel() * t.element_size() for t in saved if id(t.untyped_storage()) not in inputs)


def test_saved_memory_is_independent_of_length():
    sizes = {T: _saved_bytes_beyond_inputs(T) for T in (10, 100, 1000)}
    assert sizes[10] > 0  # the final state is kept
    assert sizes[10] == sizes[100] == sizes[1000], sizes


def test_checkpoints_cost_what_they_keep():
    plain = _saved_bytes_beyond_inputs(100)
    with_ckpt = _saved_bytes_beyond_inputs(100, checkpoint_every=10)
    state_bytes = 2 * 2 * 16 * 8  # B * H * 2**n complex64
    assert with_ckpt - plain == 10 * state_bytes
