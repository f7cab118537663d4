// qlam::_register_forward on CUDA: issue 15's register program (register_program.h) launched
// on a GPU, forward only, as a test and benchmark hook beside the default kernels of
// scan_cuda.cu (which qlam.ops.scan keeps using). Each group of G lanes of a warp runs one
// state with 2**n / G amplitudes per lane in registers; G comes from the caller or, with
// lanes_per_state = 0, from register_lanes below. NOT YET RUN ON A GPU: compiled only; the
// program itself is proven by its CPU emulation (tests/test_warp_register_emulation.py).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../register_program.h"
#include "../scan_host.h"

namespace qlam {
namespace {

constexpr int kWarpLanes = 32;

// Most amplitudes per lane: ptxas keeps R = 16 (float32) and R = 4 (float64) in registers
// without spills (tests/cuda/ptxas_budget.json); float64 R = 8 spills.
template <typename T>
constexpr int kMaxRegisters = sizeof(T) == 4 ? 16 : 4;

// One warp per block; the warp's 32 / G groups each run one state.
template <typename T, int R>
__global__ void register_forward_kernel(const ScanArgs<T> a, int G) {
  extern __shared__ __align__(16) unsigned char smem[];
  auto* scratch = reinterpret_cast<regprog::GroupScratch<T>*>(smem);
  const int lane = int(threadIdx.x), group = lane / G;
  const int64_t s = int64_t(blockIdx.x) * (kWarpLanes / G) + group;
  if (s >= a.num_states()) return;  // whole groups leave together; their masks name only themselves
  const unsigned mask = G == kWarpLanes ? 0xffffffffu : ((1u << G) - 1u) << (group * G);
  regprog::WarpGroupExecutor ex{lane % G, G, mask};
  regprog::RegisterState<T, R, regprog::WarpGroupExecutor> st;
  regprog::scan_forward_state(ex, a, s, st, scratch[group]);
}

template <typename T, int R>
void launch_register(const ScanArgs<T>& a, int G) {
  const int64_t groups_per_block = kWarpLanes / G, blocks = (a.num_states() + groups_per_block - 1) / groups_per_block;
  const size_t shared = sizeof(regprog::GroupScratch<T>) * size_t(groups_per_block);
  if (shared > 48 * 1024)
    C10_CUDA_CHECK(cudaFuncSetAttribute(register_forward_kernel<T, R>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared)));
  register_forward_kernel<T, R><<<dim3(unsigned(blocks)), dim3(kWarpLanes), shared,
                                  at::cuda::getCurrentCUDAStream()>>>(a, G);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void dispatch_registers(const ScanArgs<T>& a, int G) {
  const bool found = regprog::with_register_count<kMaxRegisters<T>>(
      a.N, G, [&](auto r) { launch_register<T, decltype(r)::value>(a, G); });
  TORCH_CHECK(found, "qlam._register_forward: 2**n / lanes_per_state = ", a.N / G, " amplitudes per lane; at most ",
              kMaxRegisters<T>, " are kept in registers for this dtype");
}

// Lanes per state when the caller leaves it to us: the fewest lanes that keep a state's
// amplitudes within kMaxRegisters per lane (fewer shuffles), at most a warp.
template <typename T>
int register_lanes(int64_t N) {
  int64_t G = 1;
  while (G < kWarpLanes && N / G > kMaxRegisters<T>) G *= 2;
  return int(G);
}

std::tuple<Tensor, Tensor, Tensor> register_forward_cuda(const Tensor& angles, const OptTensor& ent_angles,
                                                         const OptTensor& init_state, const OptTensor& lengths,
                                                         c10::string_view entangler, bool pair_features,
                                                         int64_t checkpoint_every, int64_t lanes_per_state) {
  TORCH_CHECK(lanes_per_state == 0 || (lanes_per_state >= 1 && lanes_per_state <= kWarpLanes &&
                                       (lanes_per_state & (lanes_per_state - 1)) == 0),
              "qlam._register_forward: lanes_per_state must be 0 (chosen from n) or a power of two from 1 to ",
              kWarpLanes, ", got ", lanes_per_state);
  const c10::cuda::CUDAGuard guard(angles.device());
  ForwardBuffers f = prepare_forward(angles, ent_angles, init_state, lengths, entangler, pair_features,
                                     checkpoint_every);
  AT_DISPATCH_FLOATING_TYPES(f.angles.scalar_type(), "qlam_register_forward_cuda", [&] {
    const ScanArgs<scalar_t> a = forward_args<scalar_t>(f);
    if (a.num_states() == 0) return;
    int G = lanes_per_state ? int(lanes_per_state) : register_lanes<scalar_t>(a.N);
    G = int(std::min<int64_t>(G, a.N));  // a state of 2**n < G amplitudes uses 2**n lanes
    dispatch_registers(a, G);
  });
  return {f.features, f.final_state, f.checkpoints};
}

}  // namespace

TORCH_LIBRARY_IMPL(qlam, CUDA, m) { m.impl("_register_forward", &register_forward_cuda); }

}  // namespace qlam
