// qlam::_latency_probe on CUDA: microbenchmarks of the latencies benchmarks/cost_model.py assumes
// (its LAT table and CPI_SOLO), each one warp alone on the GPU timing a chain of dependent
// operations with clock64 (benchmarks/latencies.py runs them and sets the results beside the
// model's values). A benchmark hook, not part of the scan: at the sMNIST shape both CUDA programs
// are latency-bound (one warp's dependent chain per token), so these few numbers decide how far
// the model's predictions there can be trusted.
//
// Every probe is one block of one warp. Lane 0 reads clock64 before and after the timed loop and
// writes out = {cycles, a value the chain produced} (stored so the chain is not optimised away).
// The unrolled probes time `steps` operations, kUnroll per loop iteration, so the loop's own
// counter, compare and branch are a few instructions per 32 operations. Warp-level calls use the
// register program's group mask, computed per thread as register_cuda.cu does (here for groups of
// `group_lanes` = 32). Where a lane test comes before the sync (sync_phase, as the program's lane
// loops do), ptxas puts the program's convergence check before it (MATCH.ANY, REDUX.OR, VOTEU.ANY,
// BRA.DIV to a WARPSYNC.COLLECTIVE fallback); the sync itself, on a converged warp, is a NOP in
// the SASS (sm_90), in the register kernels as here.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <string>
#include <utility>

namespace qlam {
namespace {

using at::Tensor;

constexpr int kWarp = 32;
constexpr int kUnroll = 32;
constexpr int kLdsEntries = 1024;  // the shared-memory chase: 4 KiB, one cycle through every entry
constexpr int kLineFloats = 32;    // the stream probe's stride: one 128-byte line per step
constexpr int kWorkUnroll = 8;

__device__ unsigned group_mask(int group_lanes) {
  const int group = int(threadIdx.x) / group_lanes;
  return group_lanes == kWarp ? 0xffffffffu : ((1u << group_lanes) - 1u) << (group * group_lanes);
}

__device__ void record(int64_t* out, long long cycles, long long check) {
  if (threadIdx.x == 0) {
    out[0] = cycles;
    out[1] = check;
  }
}

// The timed chain of the unrolled probes: clock64 cycles over rounds x kUnroll calls of step(k),
// k = 0 .. kUnroll - 1 (a constant in each copy once unrolled).
template <class Step>
__device__ __forceinline__ long long timed_rounds(int64_t rounds, Step&& step) {
  const long long start = clock64();
  for (int64_t i = 0; i < rounds; ++i) {
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) step(k);
  }
  return clock64() - start;
}

// Dependent FFMA: the model's LAT["alu"].
__global__ void probe_ffma_kernel(int64_t rounds, float a, float b, int64_t* out) {
  float x = float(threadIdx.x);
  __syncwarp();
  const long long cycles = timed_rounds(rounds, [&](int) { x = fmaf(x, a, b); });
  record(out, cycles, __float_as_int(x));
}

// Eight independent FFMA chains interleaved: a lone warp's cycles per instruction when it never
// waits for a result (the model's CPI_SOLO).
__global__ void probe_ffma_ilp_kernel(int64_t rounds, float a, float b, int64_t* out) {
  constexpr int kChains = 8;
  float x[kChains];
#pragma unroll
  for (int c = 0; c < kChains; ++c) x[c] = float(threadIdx.x + c);
  __syncwarp();
  const long long cycles = timed_rounds(rounds, [&](int k) { x[k % kChains] = fmaf(x[k % kChains], a, b); });
  float sum = 0.f;
#pragma unroll
  for (int c = 0; c < kChains; ++c) sum += x[c];
  record(out, cycles, __float_as_int(sum));
}

// Dependent __shfl_xor_sync: LAT["shfl"].
__global__ void probe_shfl_kernel(int64_t rounds, int group_lanes, int64_t* out) {
  const unsigned mask = group_mask(group_lanes);
  int x = int(threadIdx.x);
  __syncwarp();
  const long long cycles = timed_rounds(rounds, [&](int k) { x = __shfl_xor_sync(mask, x, 1 + (k & 15)); });
  record(out, cycles, x);
}

// __syncwarp after __syncwarp: the bare barrier.
__global__ void probe_syncwarp_kernel(int64_t rounds, int group_lanes, int64_t* out) {
  const unsigned mask = group_mask(group_lanes);
  __syncwarp(mask);
  const long long cycles = timed_rounds(rounds, [&](int) { __syncwarp(mask); });
  record(out, cycles, 0);
}

// The register program's phase turnaround: each lane stores a value to shared memory, the warp
// syncs, each lane reads its neighbour's value and stores it on in the next step (two buffers, so
// one sync a step orders every access). Cycles per step = STS + __syncwarp + LDS, dependent. The
// store is behind a lane test (`writers` = 32: every lane), as the program's stores are behind its
// lane loops (load_layers: item i, i + G, ...), so ptxas checks convergence at the sync as there.
__global__ void probe_sync_phase_kernel(int64_t rounds, int group_lanes, int writers, int64_t* out) {
  const unsigned mask = group_mask(group_lanes);
  __shared__ int buffer[2][kWarp];
  const int lane = int(threadIdx.x);
  int x = lane;
  __syncwarp();
  const long long cycles = timed_rounds(rounds, [&](int k) {
    if (lane < writers) buffer[k & 1][lane] = x;
    __syncwarp(mask);
    x = buffer[k & 1][(lane + 1) & (kWarp - 1)];
  });
  record(out, cycles, x);
}

// A shuffle after a loop whose trip count is the lane's (here one trip for every lane), as the
// register program's shuffles follow its lane loops. kGroupMask: the shuffle takes the group's
// per-thread mask, and ptxas puts its convergence check before it (MATCH.ANY, REDUX.OR, VOTEU.ANY,
// BRA.DIV), as in the group kernels; otherwise the warp's constant mask, as in the G = 32 warp
// kernels (register_cuda.cu). Cycles per step of the two: what the warp kernels save per sync or
// shuffle group.
template <bool kGroupMask>
__global__ void probe_shfl_after_loop_kernel(int64_t rounds, int group_lanes, int trips, int64_t* out) {
  const unsigned mask = kGroupMask ? group_mask(group_lanes) : 0xffffffffu;
  const int lane = int(threadIdx.x);
  int x = lane;
  __syncwarp();
  const long long cycles = timed_rounds(rounds, [&](int k) {
    for (int j = lane; j < trips; j += kWarp) x += j;
    x = __shfl_xor_sync(mask, x, 1 + (k & 15));
  });
  record(out, cycles, x);
}

// Dependent shared-memory loads (each entry holds the next one's byte offset; lane l starts at
// entry l, so the lanes hit 32 different banks): LAT["smem"].
__global__ void probe_lds_kernel(int64_t rounds, int64_t* out) {
  __shared__ int next[kLdsEntries];
  const int lane = int(threadIdx.x);
  for (int e = lane; e < kLdsEntries; e += kWarp) next[e] = ((e + 97) & (kLdsEntries - 1)) * int(sizeof(int));
  __syncwarp();
  const char* base = reinterpret_cast<const char*>(next);
  int at = lane * int(sizeof(int));
  const long long cycles = timed_rounds(rounds, [&](int) { at = *reinterpret_cast<const int*>(base + at); });
  record(out, cycles, at);
}

// One global load (ld.global, as the program's loads through its kernel arguments; a pointer read
// from memory would be a generic LD).
__device__ __forceinline__ const int64_t* follow(const int64_t* p) {
  int64_t next;
  asm("ld.global.u64 %0, [%1];" : "=l"(next) : "l"(p));
  return reinterpret_cast<const int64_t*>(next);
}

// Dependent global loads through a buffer of pointers (a random cycle, one entry per 128-byte line,
// built by the caller): after `warm` loads that bring the cycle into the caches, `steps` timed
// ones. A buffer that fits L1 gives LAT["l1"], one that fits L2 but not L1 LAT["l2"], a cold one
// far larger than L2 LAT["dram"] (page-table misses included).
__global__ void probe_chase_kernel(const int64_t* first, int64_t warm, int64_t rounds, int64_t* out) {
  const int64_t* p = first;
  for (int64_t i = 0; i < warm; ++i) p = follow(p);
  __syncwarp();
  const long long cycles = timed_rounds(rounds, [&](int) { p = follow(p); });
  record(out, cycles, reinterpret_cast<long long>(p));
}

// The register program's token loop in miniature: per step `work` dependent FFMAs, a __syncwarp,
// then a load of a line never touched before (line i of a cold buffer) that the next step's work
// waits for. With kPrefetch, lane 0 first hints line i + 1 to L2 (prefetch.global.L2, as
// register_program.h prefetch_to_l2 does a token ahead): the load should then wait for L2, not DRAM.
template <bool kPrefetch>
__global__ void probe_stream_kernel(const float* data, int64_t steps, int64_t work, float a, float b,
                                    int group_lanes, int64_t* out) {
  const unsigned mask = group_mask(group_lanes);
  float x = float(threadIdx.x);
  __syncwarp(mask);
  const long long start = clock64();
  for (int64_t i = 0; i < steps; ++i) {
    if (kPrefetch && threadIdx.x == 0) asm volatile("prefetch.global.L2 [%0];" ::"l"(data + (i + 1) * kLineFloats));
    for (int64_t k = 0; k < work; k += kWorkUnroll) {
#pragma unroll
      for (int u = 0; u < kWorkUnroll; ++u) x = fmaf(x, a, b);
    }
    __syncwarp(mask);  // as the program's sync before load_layers: the load cannot move above it
    x += data[i * kLineFloats];
  }
  const long long stop = clock64();
  record(out, stop - start, __float_as_int(x));
}

// Writes a buffer of twice the L2's size on the current stream, evicting what L2 held, so that a cold
// probe's loads (the chase without warm-up, the stream) go to DRAM.
void flush_l2(const Tensor& like) {
  const int64_t l2 = at::cuda::getCurrentDeviceProperties()->l2CacheSize;
  at::empty({2 * l2}, like.options().dtype(at::kByte)).fill_(1);
}

enum class Probe { Ffma, FfmaIlp, Shfl, ShflChecked, ShflUnchecked, Syncwarp, SyncPhase, Lds, Chase, Stream,
                   StreamPrefetchL2 };
// Every probe by name, once: the op's dispatch and its error message both come from this table.
constexpr std::pair<const char*, Probe> kProbes[] = {
    {"ffma", Probe::Ffma}, {"ffma_ilp", Probe::FfmaIlp}, {"shfl", Probe::Shfl},
    {"shfl_checked", Probe::ShflChecked}, {"shfl_unchecked", Probe::ShflUnchecked},
    {"syncwarp", Probe::Syncwarp}, {"sync_phase", Probe::SyncPhase}, {"lds", Probe::Lds},
    {"chase", Probe::Chase}, {"stream", Probe::Stream}, {"stream_prefetch_l2", Probe::StreamPrefetchL2}};

Probe find_probe(const std::string& name) {
  std::string names;
  for (const auto& [known, probe] : kProbes) {
    if (name == known) return probe;
    names += (names.empty() ? "" : ", ") + std::string(known);
  }
  TORCH_CHECK(false, "qlam._latency_probe: unknown probe '", name, "'; the probes are ", names);
}

// buffer: the chase's next-entry indices (int64, each in [0, numel); with warm = 0 L2 is flushed
// first), the stream's data (float32, L2 flushed first,
// at least (steps + 1) * 32 values), any CUDA tensor for the others (it names the device).
// steps: timed operations (a multiple of 32 for the unrolled probes; the stream's steps);
// warm: untimed chase steps first; work: the stream's FFMAs per step (a multiple of 8).
// Returns int64 {cycles, check} on the buffer's device.
Tensor latency_probe_cuda(const Tensor& buffer, c10::string_view probe_view, int64_t steps, int64_t warm,
                          int64_t work) {
  const std::string probe(probe_view);
  const Probe kind = find_probe(probe);
  const bool chase = kind == Probe::Chase, stream = kind == Probe::Stream || kind == Probe::StreamPrefetchL2;
  const bool unrolled = !stream;
  TORCH_CHECK(steps >= 1 && steps <= (int64_t(1) << 26), "qlam._latency_probe: steps must be in [1, 2**26], got ",
              steps);
  TORCH_CHECK(!unrolled || steps % kUnroll == 0, "qlam._latency_probe: probe '", probe,
              "' times its operations ", kUnroll, " at a time: steps must be a multiple of ", kUnroll, ", got ",
              steps);
  TORCH_CHECK(warm >= 0 && (warm == 0 || chase), "qlam._latency_probe: warm must be 0, or >= 0 for 'chase'; got ",
              warm);
  TORCH_CHECK(work >= 0 && work % kWorkUnroll == 0 && work <= (1 << 16) && (work == 0 || stream),
              "qlam._latency_probe: work must be a multiple of ", kWorkUnroll, " in [0, 65536], and 0 except for "
              "the stream probes; got ", work);
  const c10::cuda::CUDAGuard guard(buffer.device());
  Tensor out = at::zeros({2}, buffer.options().dtype(at::kLong));
  auto stream_ = at::cuda::getCurrentCUDAStream();
  const int64_t rounds = steps / kUnroll;
  const float a = 0.999999f, b = 1e-7f;  // kernel arguments, so nothing folds at compile time
  const int group = kWarp;  // the sMNIST shape's lanes per state
  int64_t* o = out.data_ptr<int64_t>();
  Tensor keep;  // the chase's pointers (freed after the launch: the allocator orders reuse on this stream)
  if (chase) {
    TORCH_CHECK(buffer.scalar_type() == at::kLong && buffer.dim() == 1 && buffer.numel() > 0,
                "qlam._latency_probe: 'chase' wants a non-empty 1-D int64 tensor of next-entry indices, got ",
                buffer.scalar_type(), " of shape ", buffer.sizes());
    const auto range = at::aminmax(buffer);
    const int64_t lo = std::get<0>(range).item().toLong(), hi = std::get<1>(range).item().toLong();
    TORCH_CHECK(lo >= 0 && hi < buffer.numel(), "qlam._latency_probe: 'chase' indices must lie in [0, ",
                buffer.numel(), "), got [", lo, ", ", hi, "]");
    // Entry i becomes the address of entry buffer[i], in a copy the kernel follows.
    keep = at::empty({buffer.numel()}, buffer.options());
    keep.copy_(buffer.contiguous() * int64_t(sizeof(int64_t)) +
               int64_t(reinterpret_cast<intptr_t>(keep.data_ptr<int64_t>())));
    if (warm == 0) flush_l2(buffer);
    probe_chase_kernel<<<1, kWarp, 0, stream_>>>(keep.data_ptr<int64_t>(), warm, rounds, o);
  } else if (stream) {
    TORCH_CHECK(buffer.scalar_type() == at::kFloat && buffer.is_contiguous() &&
                    buffer.numel() >= (steps + 1) * kLineFloats,
                "qlam._latency_probe: '", probe, "' wants a contiguous float32 tensor of at least (steps + 1) * ",
                kLineFloats, " = ", (steps + 1) * kLineFloats, " values, got ", buffer.scalar_type(), " with ",
                buffer.numel());
    flush_l2(buffer);
    if (kind == Probe::Stream) {
      probe_stream_kernel<false><<<1, kWarp, 0, stream_>>>(buffer.data_ptr<float>(), steps, work, a, b, group, o);
    } else {
      probe_stream_kernel<true><<<1, kWarp, 0, stream_>>>(buffer.data_ptr<float>(), steps, work, a, b, group, o);
    }
  } else {
    switch (kind) {
      case Probe::Ffma: probe_ffma_kernel<<<1, kWarp, 0, stream_>>>(rounds, a, b, o); break;
      case Probe::FfmaIlp: probe_ffma_ilp_kernel<<<1, kWarp, 0, stream_>>>(rounds, a, b, o); break;
      case Probe::Shfl: probe_shfl_kernel<<<1, kWarp, 0, stream_>>>(rounds, group, o); break;
      case Probe::ShflChecked:
        probe_shfl_after_loop_kernel<true><<<1, kWarp, 0, stream_>>>(rounds, group, kWarp, o);
        break;
      case Probe::ShflUnchecked:
        probe_shfl_after_loop_kernel<false><<<1, kWarp, 0, stream_>>>(rounds, group, kWarp, o);
        break;
      case Probe::Syncwarp: probe_syncwarp_kernel<<<1, kWarp, 0, stream_>>>(rounds, group, o); break;
      case Probe::SyncPhase: probe_sync_phase_kernel<<<1, kWarp, 0, stream_>>>(rounds, group, kWarp, o); break;
      case Probe::Lds: probe_lds_kernel<<<1, kWarp, 0, stream_>>>(rounds, o); break;
      default: TORCH_CHECK(false, "qlam._latency_probe: probe '", probe, "' has no launch");  // chase, stream: above
    }
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(qlam, CUDA, m) { m.impl("_latency_probe", &latency_probe_cuda); }

}  // namespace qlam
