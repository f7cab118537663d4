// Compile-only instantiations of issue 15's register program (csrc/register_program.h) as CUDA
// kernels, for tests/test_ptxas_budget.py: ptxas reports their registers, spills and stack, and
// the test holds them to budgets. No code launches these kernels yet: the program is proven by
// its CPU emulation (tests/test_register_emulation.py), not on a GPU.
#include "register_program.h"

namespace qlam {
namespace regprog {

// Groups of G lanes within one warp; lanes of one group run one state.
template <typename T, int R>
__global__ void register_forward_kernel(ScanArgs<T> a, int G) {
  extern __shared__ unsigned char smem[];
  auto* scratch = reinterpret_cast<GroupScratch<T>*>(smem);
  const int lane = threadIdx.x & 31, group = lane / G;
  const int64_t s = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / G;
  if (s >= a.num_states()) return;  // whole groups leave together
  const unsigned mask = G == 32 ? 0xffffffffu : ((1u << G) - 1u) << (group * G);
  WarpGroupExecutor ex{lane % G, G, mask};
  RegisterState<T, R, WarpGroupExecutor> st;
  scan_forward_state(ex, a, s, st, scratch[threadIdx.x / G]);
}

// n = 8 over 32, 16 lanes (R = 8, 16) in float32; R = 8 in float64.
template __global__ void register_forward_kernel<float, 8>(ScanArgs<float>, int);
template __global__ void register_forward_kernel<float, 16>(ScanArgs<float>, int);
template __global__ void register_forward_kernel<double, 8>(ScanArgs<double>, int);

}  // namespace regprog
}  // namespace qlam
