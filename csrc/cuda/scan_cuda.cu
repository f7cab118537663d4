// CUDA kernels of qlam::scan_forward and qlam::scan_backward: one launch for
// the whole sequence; each warp owns one (b, h) state held in shared memory
// and runs the per-state program of state_program.h with its 32 lanes. With
// QLAM_CUDA_PROGRAM=register, the register program (register_cuda.cu) runs
// instead wherever the state fits its registers.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <map>
#include <mutex>
#include <utility>

#include "../scan_host.h"
#include "../state_program.h"
#include "register_launch.h"

namespace qlam {
namespace {

constexpr int kWarp = 32;
constexpr int kMaxWarpsPerBlock = 8;
constexpr size_t kDefaultSharedBytes = 48 * 1024;

struct WarpExecutor {
  int lane;
  __device__ int lanes() const { return kWarp; }
  template <class F>
  __device__ void run(F&& f) {
    f(lane);
  }
  __device__ void sync() { __syncwarp(); }
  template <int R, typename T, class F>
  __device__ void allreduce(T* out, int count, F&& f) {
    T part[R];
    for (int r = 0; r < R; ++r) part[r] = T(0);
    f(lane, part);
    for (int r = 0; r < count; ++r) {
      T v = part[r];
      for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
      out[r] = v;
    }
    __syncwarp();
  }
};

// Shared memory of one warp: `states` statevectors, then the layer's gate
// matrices and the cos and sin of the rzz half-angles; rounded up to keep every warp's slice aligned.
template <typename T>
size_t warp_scratch_bytes(const ScanArgs<T>& a, int states) {
  const size_t bytes = sizeof(Cplx<T>) * (states * a.N + 4 * a.n) + sizeof(T) * (2 * a.P + 1);
  return (bytes + 15) / 16 * 16;
}

template <typename T>
struct WarpScratch {
  Cplx<T>* psi;
  Cplx<T>* lam;
  Cplx<T>* mats;
  T* gzz;
};

template <typename T>
__device__ WarpScratch<T> carve(unsigned char* smem, const ScanArgs<T>& a, size_t per_warp, int states) {
  unsigned char* base = smem + (threadIdx.x / kWarp) * per_warp;
  WarpScratch<T> w;
  w.psi = reinterpret_cast<Cplx<T>*>(base);
  w.lam = states > 1 ? w.psi + a.N : nullptr;
  w.mats = w.psi + states * a.N;
  w.gzz = reinterpret_cast<T*>(w.mats + 4 * a.n);
  return w;
}

template <typename T>
__global__ void scan_forward_kernel(const ScanArgs<T> a, size_t per_warp) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int64_t s = int64_t(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (s >= a.num_states()) return;  // the whole warp leaves; no block-wide barriers follow
  WarpScratch<T> w = carve(smem, a, per_warp, 1);
  WarpExecutor ex{int(threadIdx.x % kWarp)};
  scan_forward_state(ex, a, s, w.psi, w.mats, w.gzz);
}

template <typename T>
__global__ void scan_backward_kernel(const ScanArgs<T> a, size_t per_warp) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int64_t s = int64_t(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (s >= a.num_states()) return;
  WarpScratch<T> w = carve(smem, a, per_warp, 2);
  WarpExecutor ex{int(threadIdx.x % kWarp)};
  scan_backward_state(ex, a, s, w.psi, w.lam, w.mats, w.gzz);
}

// Lets `kernel` use `shared` bytes of dynamic shared memory on the current device.
// The opt-in is per device and kernel, and here it only ever grows, under a lock:
// a launch can never find it lowered by another host thread's smaller launch (as
// when two threads run different n), and it is set once per new maximum, not on
// every launch.
template <typename Kernel>
void opt_in_shared(Kernel kernel, size_t shared) {
  static std::mutex mutex;
  static std::map<std::pair<int, const void*>, size_t> granted;
  const std::lock_guard<std::mutex> lock(mutex);
  size_t& have = granted[{int(c10::cuda::current_device()), reinterpret_cast<const void*>(kernel)}];
  if (shared <= have) return;
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared)));
  have = shared;
}

// Chooses warps per block from the shared memory one warp needs, opts in to
// more than 48 KiB where needed, and launches one warp per state.
template <typename T, typename Kernel>
void launch(Kernel kernel, const ScanArgs<T>& a, int states_per_warp) {
  const int64_t S = a.num_states();
  if (S == 0) return;
  const size_t per_warp = warp_scratch_bytes(a, states_per_warp);
  const auto* prop = at::cuda::getCurrentDeviceProperties();
  TORCH_CHECK(per_warp <= prop->sharedMemPerBlockOptin, "qlam.scan: n = ", a.n, " needs ", per_warp,
              " bytes of shared memory per state on CUDA but this GPU offers ", prop->sharedMemPerBlockOptin,
              "; use fewer qubits or float32");
  int warps = int(std::max<size_t>(1, std::min<size_t>(kMaxWarpsPerBlock, kDefaultSharedBytes / per_warp)));
  warps = int(std::min<int64_t>(warps, S));
  const size_t shared = per_warp * warps;
  if (shared > kDefaultSharedBytes) opt_in_shared(kernel, shared);
  const int64_t blocks = (S + warps - 1) / warps;
  kernel<<<dim3(unsigned(blocks)), dim3(warps * kWarp), shared, at::cuda::getCurrentCUDAStream()>>>(a, per_warp);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<Tensor, Tensor, Tensor> scan_forward_cuda(const Tensor& angles, const OptTensor& ent_angles,
                                                     const OptTensor& init_state, const OptTensor& lengths,
                                                     c10::string_view entangler, bool pair_features,
                                                     int64_t checkpoint_every) {
  const c10::cuda::CUDAGuard guard(angles.device());
  ForwardBuffers f = prepare_forward(angles, ent_angles, init_state, lengths, entangler, pair_features,
                                     checkpoint_every);
  if (cuda_program_is_register() && launch_register_forward(f)) return {f.features, f.final_state, f.checkpoints};
  AT_DISPATCH_FLOATING_TYPES(f.angles.scalar_type(), "qlam_scan_forward_cuda", [&] {
    launch(scan_forward_kernel<scalar_t>, forward_args<scalar_t>(f), 1);
  });
  return {f.features, f.final_state, f.checkpoints};
}

std::tuple<Tensor, Tensor, Tensor> scan_backward_cuda(const OptTensor& grad_features,
                                                      const OptTensor& grad_final_state, const Tensor& angles,
                                                      const OptTensor& ent_angles, const Tensor& final_state,
                                                      const Tensor& checkpoints, const OptTensor& lengths,
                                                      c10::string_view entangler, bool pair_features,
                                                      int64_t checkpoint_every) {
  const c10::cuda::CUDAGuard guard(angles.device());
  BackwardBuffers b = prepare_backward(grad_features, grad_final_state, angles, ent_angles, final_state,
                                       checkpoints, lengths, entangler, pair_features, checkpoint_every);
  if (cuda_program_is_register() && launch_register_backward(b)) {
    return {b.grad_angles, b.grad_ent_angles, b.grad_init_state};
  }
  AT_DISPATCH_FLOATING_TYPES(b.angles.scalar_type(), "qlam_scan_backward_cuda", [&] {
    launch(scan_backward_kernel<scalar_t>, backward_args<scalar_t>(b), 2);
  });
  return {b.grad_angles, b.grad_ent_angles, b.grad_init_state};
}

}  // namespace

TORCH_LIBRARY_IMPL(qlam, CUDA, m) {
  m.impl("scan_forward", &scan_forward_cuda);
  m.impl("scan_backward", &scan_backward_cuda);
}

}  // namespace qlam
