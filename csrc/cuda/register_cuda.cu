// qlam::_register_forward and qlam::_register_backward on CUDA: issue 15's register program
// (register_program.h) launched on a GPU, as test and benchmark hooks beside the default kernels
// of scan_cuda.cu, and for qlam::scan_forward / scan_backward when QLAM_CUDA_PROGRAM=register
// selects it (register_launch.h). Each group of G lanes of a warp runs one
// state with 2**n / G amplitudes per lane in registers; G comes from the caller or, with
// lanes_per_state = 0, from the host's rule (register_lanes below). At G = 32 in float32 (a
// training batch's few states) the *_warp_kernel variants run: the same program with the warp's
// constant lane mask, which spares every sync and shuffle group ptxas's convergence check. The
// backward (uncomputation, the arguments and results of scan_backward) has its own register limit
// (register_program.h kMaxBackwardRegisters): it keeps psi, lam and two partner arrays live. NEVER
// RUN ON A GPU: all these kernels are compiled only (tests/test_ptxas_budget.py checks their registers, spills and stack);
// the program itself is proven by its CPU emulation (tests/test_warp_register_emulation.py), and
// tests/test_register_cuda.py is written but has not run.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdlib>
#include <string>
#include <type_traits>

#include "../register_program.h"
#include "../scan_host.h"
#include "register_launch.h"

namespace qlam {
namespace {

using regprog::kMaxBackwardRegisters;
using regprog::kMaxForwardRegisters;
using regprog::kWarpLanes;

// This thread's group (G consecutive lanes of the one-warp block) and the state it runs.
template <bool kWholeWarp>
__device__ regprog::WarpGroupExecutor<kWholeWarp> group_executor(int G) {
  const int lane = int(threadIdx.x), group = lane / G;
  const unsigned mask = G == kWarpLanes ? 0xffffffffu : ((1u << G) - 1u) << (group * G);
  return regprog::WarpGroupExecutor<kWholeWarp>{lane % G, G, mask};
}
__device__ int64_t group_state(int G) { return int64_t(blockIdx.x) * (kWarpLanes / G) + threadIdx.x / G; }

// One warp per block; the warp's 32 / G groups each run one state.
template <typename T, int R, bool kWholeWarp>
__device__ __forceinline__ void forward_groups(const ScanArgs<T>& a, int G) {
  extern __shared__ __align__(16) unsigned char smem[];
  auto* scratch = reinterpret_cast<regprog::GroupScratch<T>*>(smem);
  const int64_t s = group_state(G);
  if (s >= a.num_states()) return;  // whole groups leave together; their masks name only themselves
  auto ex = group_executor<kWholeWarp>(G);
  regprog::RegisterState<T, R, decltype(ex)> st;
  regprog::scan_forward_state(ex, a, s, st, scratch[threadIdx.x / G]);
}

template <typename T, int R, bool kWholeWarp>
__device__ __forceinline__ void backward_groups(const ScanArgs<T>& a, int G) {
  extern __shared__ __align__(16) unsigned char smem[];
  auto* scratch = reinterpret_cast<regprog::BackwardScratch<T>*>(smem);
  const int64_t s = group_state(G);
  if (s >= a.num_states()) return;
  auto ex = group_executor<kWholeWarp>(G);
  regprog::AdjointState<T, R, decltype(ex)> st;
  regprog::scan_backward_state(ex, a, s, st, scratch[threadIdx.x / G]);
}

template <typename T, int R>
__global__ void register_forward_kernel(const ScanArgs<T> a, int G) {
  forward_groups<T, R, false>(a, G);
}
template <typename T, int R>
__global__ void register_backward_kernel(const ScanArgs<T> a, int G) {
  backward_groups<T, R, false>(a, G);
}
// G = 32, float32: one state per warp, with the warp's constant mask (register_program.h
// WarpGroupExecutor<true>: no convergence check before each sync and shuffle group). float64
// (tests, gradcheck) keeps the group kernels, which serve every G.
template <typename T, int R>
__global__ void register_forward_warp_kernel(const ScanArgs<T> a, int G) {
  forward_groups<T, R, true>(a, G);
}
template <typename T, int R>
__global__ void register_backward_warp_kernel(const ScanArgs<T> a, int G) {
  backward_groups<T, R, true>(a, G);
}

// One warp per block, 32 / G groups of it with one Scratch each in dynamic shared memory.
template <class Scratch, typename T, typename Kernel>
void launch_groups(Kernel kernel, const ScanArgs<T>& a, int G) {
  const int64_t groups_per_block = kWarpLanes / G, blocks = (a.num_states() + groups_per_block - 1) / groups_per_block;
  const size_t shared = sizeof(Scratch) * size_t(groups_per_block);
  if (shared > 48 * 1024)
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared)));
  kernel<<<dim3(unsigned(blocks)), dim3(kWarpLanes), shared, at::cuda::getCurrentCUDAStream()>>>(a, G);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void dispatch_forward(const ScanArgs<T>& a, int G) {
  const bool found = regprog::with_register_count<kMaxForwardRegisters<T>>(a.N, G, [&](auto r) {
    constexpr int R = decltype(r)::value;
    if constexpr (std::is_same<T, float>::value) {
      if (G == kWarpLanes) return launch_groups<regprog::GroupScratch<T>>(register_forward_warp_kernel<T, R>, a, G);
    }
    launch_groups<regprog::GroupScratch<T>>(register_forward_kernel<T, R>, a, G);
  });
  TORCH_CHECK(found, "qlam._register_forward: 2**n / lanes_per_state = ", a.N / G, " amplitudes per lane; at most ",
              kMaxForwardRegisters<T>, " are kept in registers for this dtype");
}

template <typename T>
void dispatch_backward(const ScanArgs<T>& a, int G) {
  const bool found = regprog::with_register_count<kMaxBackwardRegisters<T>>(a.N, G, [&](auto r) {
    constexpr int R = decltype(r)::value;
    if constexpr (std::is_same<T, float>::value) {
      if (G == kWarpLanes) return launch_groups<regprog::BackwardScratch<T>>(register_backward_warp_kernel<T, R>, a, G);
    }
    launch_groups<regprog::BackwardScratch<T>>(register_backward_kernel<T, R>, a, G);
  });
  TORCH_CHECK(found, "qlam._register_backward: 2**n / lanes_per_state = ", a.N / G,
              " amplitudes per lane; at most ", kMaxBackwardRegisters<T>,
              " are kept in registers for this dtype in the backward");
}

// The caller's lanes_per_state: 0 (chosen by the host) or a power of two up to a warp.
void check_lanes_argument(const char* op, int64_t lanes_per_state) {
  TORCH_CHECK(lanes_per_state == 0 || (lanes_per_state >= 1 && lanes_per_state <= kWarpLanes &&
                                       (lanes_per_state & (lanes_per_state - 1)) == 0),
              "qlam.", op, ": lanes_per_state must be 0 (chosen by the host) or a power of two from 1 to ", kWarpLanes,
              ", got ", lanes_per_state);
}

// Lanes per state: the caller's, or when it leaves it to us (0) the host's choice from n, the number
// of states and the device's multiprocessors (register_program.h choose_lanes_per_state); never
// more lanes than amplitudes.
int register_lanes(int64_t lanes_per_state, int64_t N, int64_t states, int max_r) {
  if (lanes_per_state == 0) {
    const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
    return regprog::choose_lanes_per_state(N, states, sms, max_r);
  }
  return int(std::min<int64_t>(lanes_per_state, N));
}

// The forward on prepared buffers; false where the caller lets the host choose (lanes_per_state 0)
// and no lane count keeps 2**n amplitudes in registers.
bool run_forward(const ForwardBuffers& f, int64_t lanes_per_state) {
  bool fits = true;
  AT_DISPATCH_FLOATING_TYPES(f.angles.scalar_type(), "qlam_register_forward_cuda", [&] {
    const ScanArgs<scalar_t> a = forward_args<scalar_t>(f);
    fits = lanes_per_state != 0 || a.N <= int64_t(kWarpLanes) * kMaxForwardRegisters<scalar_t>;
    if (!fits || a.num_states() == 0) return;
    dispatch_forward(a, register_lanes(lanes_per_state, a.N, a.num_states(), kMaxForwardRegisters<scalar_t>));
  });
  return fits;
}

bool run_backward(const BackwardBuffers& b, int64_t lanes_per_state) {
  bool fits = true;
  AT_DISPATCH_FLOATING_TYPES(b.angles.scalar_type(), "qlam_register_backward_cuda", [&] {
    const ScanArgs<scalar_t> a = backward_args<scalar_t>(b);
    fits = lanes_per_state != 0 || a.N <= int64_t(kWarpLanes) * kMaxBackwardRegisters<scalar_t>;
    if (!fits || a.num_states() == 0) return;
    dispatch_backward(a, register_lanes(lanes_per_state, a.N, a.num_states(), kMaxBackwardRegisters<scalar_t>));
  });
  return fits;
}

std::tuple<Tensor, Tensor, Tensor> register_forward_cuda(const Tensor& angles, const OptTensor& ent_angles,
                                                         const OptTensor& init_state, const OptTensor& lengths,
                                                         c10::string_view entangler, bool pair_features,
                                                         int64_t checkpoint_every, int64_t lanes_per_state) {
  check_lanes_argument("_register_forward", lanes_per_state);  // before any input is read
  const c10::cuda::CUDAGuard guard(angles.device());
  ForwardBuffers f = prepare_forward(angles, ent_angles, init_state, lengths, entangler, pair_features,
                                     checkpoint_every);
  TORCH_CHECK(run_forward(f, lanes_per_state), "qlam._register_forward: 2**n = ", f.shape.N,
              " amplitudes over at most ", kWarpLanes, " lanes: ", f.shape.N / kWarpLanes,
              " amplitudes per lane; at most ",
              f.angles.scalar_type() == at::kDouble ? kMaxForwardRegisters<double> : kMaxForwardRegisters<float>,
              " are kept in registers for this dtype");
  return {f.features, f.final_state, f.checkpoints};
}

std::tuple<Tensor, Tensor, Tensor> register_backward_cuda(
    const OptTensor& grad_features, const OptTensor& grad_final_state, const Tensor& angles,
    const OptTensor& ent_angles, const Tensor& final_state, const Tensor& checkpoints, const OptTensor& lengths,
    c10::string_view entangler, bool pair_features, int64_t checkpoint_every, int64_t lanes_per_state) {
  check_lanes_argument("_register_backward", lanes_per_state);
  const c10::cuda::CUDAGuard guard(angles.device());
  BackwardBuffers b = prepare_backward(grad_features, grad_final_state, angles, ent_angles, final_state,
                                       checkpoints, lengths, entangler, pair_features, checkpoint_every);
  TORCH_CHECK(run_backward(b, lanes_per_state), "qlam._register_backward: 2**n = ", b.shape.N,
              " amplitudes over at most ", kWarpLanes, " lanes: ", b.shape.N / kWarpLanes,
              " amplitudes per lane; at most ",
              b.angles.scalar_type() == at::kDouble ? kMaxBackwardRegisters<double> : kMaxBackwardRegisters<float>,
              " are kept in registers for this dtype in the backward");
  return {b.grad_angles, b.grad_ent_angles, b.grad_init_state};
}

}  // namespace

bool cuda_program_is_register() {
  const char* value = std::getenv("QLAM_CUDA_PROGRAM");
  const std::string program = value ? value : "";
  TORCH_CHECK(program.empty() || program == "shared" || program == "register",
              "QLAM_CUDA_PROGRAM must be 'shared' (today's kernels, the default) or 'register' (issue 15's "
              "register program where the state fits), got '", program, "'");
  return program == "register";
}

bool launch_register_forward(const ForwardBuffers& f) { return run_forward(f, 0); }
bool launch_register_backward(const BackwardBuffers& b) { return run_backward(b, 0); }

TORCH_LIBRARY_IMPL(qlam, CUDA, m) {
  m.impl("_register_forward", &register_forward_cuda);
  m.impl("_register_backward", &register_backward_cuda);
}

}  // namespace qlam
