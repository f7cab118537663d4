// CPU kernels of qlam::scan_forward and qlam::scan_backward.
//
// The scan runs vectorised across groups of states (lane_program.h), chunk by
// chunk over the sequence, groups in parallel. (The scalar per-state program
// of state_program.h runs on the CPU only as the CUDA kernel's emulation.)
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "lane_program.h"
#include "trig_tables.h"
#include "../scan_host.h"

namespace qlam {
namespace {

// Trig values kept per chunk: bounds the pre-pass's memory whatever T is.
// QLAM_CPU_CHUNK_TOKENS overrides the chunk length (the tests use it to cross
// chunk edges at small sizes).
constexpr int64_t kTrigBudget = int64_t(1) << 22;

int64_t chunk_tokens_override() {
  const char* env = std::getenv("QLAM_CPU_CHUNK_TOKENS");
  const long long v = env ? std::atoll(env) : 0;
  return v > 0 ? int64_t(v) : 0;
}

struct RingTables {
  std::vector<int32_t> perm, perm_inv;
  std::vector<int8_t> cz_sign, zz_sign;
  explicit RingTables(int n)
      : perm(int64_t(1) << n), perm_inv(int64_t(1) << n), cz_sign(int64_t(1) << n),
        zz_sign(num_pairs(n) << n) {
    const int64_t N = int64_t(1) << n;
    for (int64_t i = 0; i < N; ++i) {
      perm[i] = int32_t(cnot_ring_forward(i, n));
      perm_inv[i] = int32_t(cnot_ring_inverse(i, n));
      cz_sign[i] = int8_t(cz_ring_sign(i, n));
      for (int p = 0; p < num_pairs(n); ++p)
        zz_sign[p * N + i] = int8_t(zsign(i, pair_first(p)) * zsign(i, pair_second(p, n)));
    }
  }
  template <typename T>
  void attach(LaneTask<T>& task) const {
    task.cnot_perm = perm.data();
    task.cnot_perm_inv = perm_inv.data();
    task.cz_sign = cz_sign.data();
    task.zz_sign = zz_sign.data();
  }
};

// Calls whose states fit one narrow group run in it (lanes.h, kNarrowLanes): with one state a full
// 16-lane float32 group would carry 15 empty lanes through every instruction and per-lane loop.
// QLAM_CPU_LANES=narrow or =wide forces one width (the tests run both on the same inputs).
template <typename T>
bool use_narrow_lanes(const ScanArgs<T>& a) {
  const char* env = std::getenv("QLAM_CPU_LANES");
  if (env && std::string(env) == "narrow") return true;
  if (env && std::string(env) == "wide") return false;
  return a.num_states() <= kNarrowLanes<T>;
}

// The chunks of the sequence, in the order they are processed.
template <typename T>
std::vector<std::pair<int64_t, int64_t>> token_chunks(const ScanArgs<T>& a, bool reverse) {
  const int64_t per_token = std::max<int64_t>(1, a.B * a.H * a.L * a.n * kTrigPerGate);
  const int64_t fixed = chunk_tokens_override();
  const int64_t chunk = fixed > 0 ? fixed : std::max<int64_t>(1, kTrigBudget / per_token);
  std::vector<std::pair<int64_t, int64_t>> chunks;
  for (int64_t t0 = 0; t0 < a.T_len; t0 += chunk) chunks.push_back({t0, std::min(a.T_len, t0 + chunk)});
  if (reverse) std::reverse(chunks.begin(), chunks.end());
  return chunks;
}

template <typename T, int Width>
void lane_forward(const ForwardBuffers& f, const ScanArgs<T>& a) {
  // The running states live in final_state from the start.
  if (f.init_state.defined()) {
    f.final_state.copy_(f.init_state);
  } else {
    f.final_state.zero_();
    f.final_state.select(-1, 0).fill_(1);
  }
  const int64_t groups = (a.num_states() + Width - 1) / Width;
  Tensor inv_norm0 = at::zeros({a.num_states()}, f.angles.options().dtype(at::kDouble));
  RingTables rings(a.n);
  bool first = true;
  for (auto [t0, t1] : token_chunks(a, false)) {
    const Tensor trig = gate_trig(f.angles, t0, t1, Width);
    const Tensor ent_trig = f.ent_angles.defined() ? entangler_trig(f.ent_angles, f.angles, t0, t1, Width) : Tensor();
    LaneTask<T> task;
    task.a = a;
    task.trig = trig.const_data_ptr<T>();
    task.ent_trig = ent_trig.defined() ? ent_trig.const_data_ptr<T>() : nullptr;
    task.t0 = t0; task.t1 = t1;
    task.first_chunk = first;
    task.inv_norm0 = inv_norm0.data_ptr<double>();
    rings.attach(task);
    at::parallel_for(0, groups, 1, [&](int64_t begin, int64_t end) {
      LaneScratch<T, Width> scratch(a.N);
      for (int64_t g = begin; g < end; ++g) lane_forward_group(task, g, scratch);
    });
    first = false;
  }
}

template <typename T, int Width>
void lane_backward(const BackwardBuffers& b, const ScanArgs<T>& a) {
  // The running adjoint lives in grad_init_state, the running state in a copy of the final state.
  if (b.grad_final_state.defined()) {
    b.grad_init_state.copy_(b.grad_final_state);
  } else {
    b.grad_init_state.zero_();
  }
  Tensor psi_run = b.final_state.clone(at::MemoryFormat::Contiguous);
  const int64_t groups = (a.num_states() + Width - 1) / Width;
  Tensor inv_norm0 = at::zeros({a.num_states()}, b.angles.options().dtype(at::kDouble));
  RingTables rings(a.n);
  bool first = true;
  for (auto [t0, t1] : token_chunks(a, true)) {
    const Tensor trig = gate_trig(b.angles, t0, t1, Width);
    const Tensor ent_trig = b.ent_angles.defined() ? entangler_trig(b.ent_angles, b.angles, t0, t1, Width) : Tensor();
    LaneTask<T> task;
    task.a = a;
    task.trig = trig.const_data_ptr<T>();
    task.ent_trig = ent_trig.defined() ? ent_trig.const_data_ptr<T>() : nullptr;
    task.t0 = t0; task.t1 = t1;
    task.first_chunk = first;
    task.inv_norm0 = inv_norm0.data_ptr<double>();
    task.psi_run = reinterpret_cast<Cplx<T>*>(psi_run.data_ptr());
    rings.attach(task);
    at::parallel_for(0, groups, 1, [&](int64_t begin, int64_t end) {
      LaneScratch<T, Width> scratch(a.N);
      for (int64_t g = begin; g < end; ++g) lane_backward_group(task, g, scratch);
    });
    first = false;
  }
}

std::tuple<Tensor, Tensor, Tensor> scan_forward_cpu(const Tensor& angles, const OptTensor& ent_angles,
                                                    const OptTensor& init_state, const OptTensor& lengths,
                                                    c10::string_view entangler, bool pair_features,
                                                    int64_t checkpoint_every) {
  at::NoGradGuard no_grad;  // the trig pre-pass is internal arithmetic
  ForwardBuffers f = prepare_forward(angles, ent_angles, init_state, lengths, entangler, pair_features,
                                     checkpoint_every);
  AT_DISPATCH_FLOATING_TYPES(f.angles.scalar_type(), "qlam_scan_forward_cpu", [&] {
    const ScanArgs<scalar_t> a = forward_args<scalar_t>(f);
    if (a.num_states() == 0) return;
    if (use_narrow_lanes(a)) {
      lane_forward<scalar_t, kNarrowLanes<scalar_t>>(f, a);
    } else {
      lane_forward<scalar_t, Lanes<scalar_t>::W>(f, a);
    }
  });
  return {f.features, f.final_state, f.checkpoints};
}

std::tuple<Tensor, Tensor, Tensor> scan_backward_cpu(const OptTensor& grad_features,
                                                     const OptTensor& grad_final_state, const Tensor& angles,
                                                     const OptTensor& ent_angles, const Tensor& final_state,
                                                     const Tensor& checkpoints, const OptTensor& lengths,
                                                     c10::string_view entangler, bool pair_features,
                                                     int64_t checkpoint_every) {
  at::NoGradGuard no_grad;
  BackwardBuffers b = prepare_backward(grad_features, grad_final_state, angles, ent_angles, final_state,
                                       checkpoints, lengths, entangler, pair_features, checkpoint_every);
  AT_DISPATCH_FLOATING_TYPES(b.angles.scalar_type(), "qlam_scan_backward_cpu", [&] {
    const ScanArgs<scalar_t> a = backward_args<scalar_t>(b);
    if (a.num_states() == 0) return;
    if (use_narrow_lanes(a)) {
      lane_backward<scalar_t, kNarrowLanes<scalar_t>>(b, a);
    } else {
      lane_backward<scalar_t, Lanes<scalar_t>::W>(b, a);
    }
  });
  return {b.grad_angles, b.grad_ent_angles, b.grad_init_state};
}

}  // namespace

TORCH_LIBRARY_IMPL(qlam, CPU, m) {
  m.impl("scan_forward", &scan_forward_cpu);
  m.impl("scan_backward", &scan_backward_cpu);
}

}  // namespace qlam
