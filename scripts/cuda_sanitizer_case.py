"""A small CUDA workload for compute-sanitizer: the scan's forward and backward kernels and the
register program's forward (csrc/cuda/register_cuda.cu), float32 and float64, every entangler,
with and without pair features and lengths.

    compute-sanitizer --tool memcheck python scripts/cuda_sanitizer_case.py

Small on purpose: the sanitizer slows kernels down by orders of magnitude. Prints one
line per case so the log shows that the kernels really ran under the tool.
"""
import sys

import torch

import qlam
from qlam import reference

if not torch.cuda.is_available() or not qlam._extension.supports(torch.device("cuda")):
    sys.exit("cuda_sanitizer_case: needs a CUDA GPU and qlam built with its CUDA kernels")

g = torch.Generator().manual_seed(0)
for dtype in (torch.float32, torch.float64):
    for n in (3, 8):
        for entangler in reference.ENTANGLERS:
            for pair_features in (False, True):
                B, T, H, L = 3, 5, 2, 2
                angles = (torch.rand(B, T, H, L, n, 3, generator=g, dtype=dtype) * 6.4 - 3.2).cuda().requires_grad_()
                ent = None
                if entangler == "rzz":
                    ent = torch.rand(B, T, H, L, reference.num_pairs(n), generator=g, dtype=dtype).cuda().requires_grad_()
                lengths = torch.tensor([T, 2, 0][:B]).cuda()
                features, final = qlam.ops.scan(angles, ent, None, lengths, entangler, pair_features)
                (features.square().sum() + final.real.sum()).backward()
                torch.cuda.synchronize()
                print(f"ran {dtype} n={n} {entangler} pair_features={pair_features}: "
                      f"features {tuple(features.shape)} finite={bool(torch.isfinite(features).all())}", flush=True)
                # Issue 15's register program, forward then backward, at the host's lanes and at one lane
                # per state where that fits its registers (R <= 16 / 4 forward, 16 / 8 backward).
                a, e = angles.detach(), None if ent is None else ent.detach()
                for lanes in (0, 1) if 2**n <= (16 if dtype == torch.float32 else 4) else (0,):
                    out = torch.ops.qlam._register_forward(a, e, None, lengths, entangler, pair_features, 2, lanes)
                    grads = torch.ops.qlam._register_backward(torch.ones_like(out[0]), None, a, e, out[1], out[2],
                                                              lengths, entangler, pair_features, 2, lanes)
                    torch.cuda.synchronize()
                    print(f"ran the register program, lanes_per_state={lanes}: "
                          f"finite={bool(torch.isfinite(out[0]).all() and torch.isfinite(grads[0]).all())}",
                          flush=True)
print("cuda_sanitizer_case: all cases ran")
