"""CUDA kernels against the CPU kernels and the reference (skipped without a GPU)."""
import pytest
import torch

import qlam
from qlam import reference
from scan_cases import Case, assert_close_results, make_inputs, value_and_grads

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and qlam._extension.supports(torch.device("cuda"))),
    reason="needs a CUDA GPU and qlam built with its CUDA kernels",
)

CASES = [
    Case(B=3, T=7, H=2, L=2, n=n, entangler=e, pair_features=p)
    for n in (1, 2, 3, 5, 8) for e in reference.ENTANGLERS for p in (False, True)
] + [Case(B=2, T=3, H=1, L=1, n=12, with_lengths=False), Case(B=2, T=4, H=3, L=1, n=6, noncontiguous=True)]


def backward_fits(n: int, dtype=torch.float64) -> bool:
    """Whether this GPU gives one warp the backward's shared memory: two states, the layer's gate matrices and
    the rzz cos/sin (csrc/cuda/scan_cuda.cu warp_scratch_bytes). n = 12 float64 needs 132,048 B: sm_80/90/100
    offer more, sm_86/89 (A10, L4, L40, RTX) less, and the op then refuses with a message."""
    real = torch.finfo(dtype).bits // 8
    need = 2 * real * (2 * 2**n + 4 * n) + real * (2 * reference.num_pairs(n) + 1)
    need = (need + 15) // 16 * 16
    return need <= torch.cuda.get_device_properties(torch.cuda.current_device()).shared_memory_per_block_optin


@pytest.mark.parametrize("case", CASES, ids=str)
def test_cuda_matches_cpu_float64(case):
    if not backward_fits(case.n):
        with pytest.raises(RuntimeError, match=r"bytes of shared memory per state on CUDA but this GPU offers"):
            value_and_grads(qlam.ops.scan, make_inputs(case, device="cuda", requires_grad=True))
        return
    cpu = value_and_grads(qlam.ops.scan, make_inputs(case, requires_grad=True))
    cuda = value_and_grads(qlam.ops.scan, make_inputs(case, device="cuda", requires_grad=True))
    assert_close_results([t.cpu() for t in cuda[:2]] + [[g.cpu() for g in cuda[2]]], cpu, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("n", [4, 8, 12])
def test_cuda_float32_close_to_float64(n):
    case = Case(B=4, T=50, H=2, L=2, n=n, entangler="rzz", pair_features=True)
    if not backward_fits(n):
        pytest.skip(f"this GPU has too little shared memory for the n = {n} float64 backward (tested above)")
    got = value_and_grads(qlam.ops.scan, make_inputs(case, device="cuda", dtype=torch.float32, requires_grad=True))
    want = value_and_grads(qlam.ops.scan, make_inputs(case, device="cuda", requires_grad=True))
    for a, b in zip(got[:2], want[:2]):
        torch.testing.assert_close(a.to(b.dtype), b, atol=1e-4, rtol=0)


def test_cuda_many_states_and_checkpoints():
    case = Case(B=64, T=33, H=8, L=2, n=6)
    args = make_inputs(case, device="cuda", requires_grad=True)
    plain = value_and_grads(qlam.ops.scan, args)
    ckpt = value_and_grads(lambda **kw: qlam.ops.scan(**kw, checkpoint_every=8), args)
    assert_close_results(ckpt, plain, atol=1e-12, rtol=1e-12)
    cpu = value_and_grads(qlam.ops.scan, make_inputs(case, requires_grad=True))
    assert_close_results([t.cpu() for t in plain[:2]] + [[g.cpu() for g in plain[2]]], cpu, atol=1e-10)


def test_cuda_layer_matches_cpu_layer():
    torch.manual_seed(0)
    layer = qlam.QLAM(3, 8, batch_first=True, n_qubits=5, n_heads=2, dtype=torch.float64)
    x = torch.randn(4, 9, 3, dtype=torch.float64)
    out_cpu, state_cpu = layer(x)
    out_gpu, state_gpu = layer.cuda()(x.cuda())
    torch.testing.assert_close(out_gpu.cpu(), out_cpu)
    torch.testing.assert_close(state_gpu.cpu(), state_cpu)
