// CPU kernels of qlam::scan_forward and qlam::scan_backward.
//
// The scan runs vectorised across groups of states (lane_program.h), chunk by
// chunk over the sequence, groups in parallel. (The scalar per-state program
// of state_program.h runs on the CPU only as the CUDA kernel's emulation.)
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <vector>

#include "lane_program.h"
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

// cos and sin of each of `halves` into planes 2k and 2k + 1 of one (2 * halves, ...) tensor. Each plane is
// written contiguously: a stack into a last dimension instead cost about twice the trig itself.
Tensor cos_sin_planes(std::initializer_list<Tensor> halves) {
  std::vector<int64_t> shape{2 * int64_t(halves.size())};
  const Tensor& first = *halves.begin();
  shape.insert(shape.end(), first.sizes().begin(), first.sizes().end());
  Tensor out = at::empty(shape, first.options());
  int64_t k = 0;
  for (const Tensor& h : halves) {
    Tensor c = out.select(0, k++), s = out.select(0, k++);
    at::cos_out(c, h);
    at::sin_out(s, h);
  }
  return out;
}

// Calls with at most this many angles in all build their trig tables in one scalar loop: ATen's
// vectorised sin/cos win on long sequences, but for a few tokens (QLAMCell, streaming) the dozen
// ATen calls around them cost more than the trig (~100 us per call at one token of the default
// layer). Decided per call, not per chunk, so every token of a call takes its values from one path.
constexpr int64_t kScalarTrigAngles = 4096;

bool scalar_trig(const Tensor& angles) { return angles.numel() <= kScalarTrigAngles; }

// cos and sin of v / 2 into planes `plane` and `plane + 1` of `out` (planes of `count` values),
// computed in double and rounded once.
template <typename T>
void put_cos_sin(T* out, int plane, int64_t count, int64_t r, double v) {
  out[plane * count + r] = T(std::cos(0.5 * v));
  out[(plane + 1) * count + r] = T(std::sin(0.5 * v));
}

// The kernels read the trig tables lane-major (lane_program.h, LaneTask::trig): value v of token
// t of state s = b * H + h sits at [((g * tc + t - t0) * per_token + v) * W + w] with g = s / W,
// w = s % W; lanes past the last state hold the identity's values (cos 1, sin 0).

// x (B, T, H, ...) for tokens [t0, t1) as (groups, (t1 - t0) * per_token, W), zero-padded states.
Tensor lane_major(const Tensor& x, int64_t t0, int64_t t1, int64_t W) {
  const int64_t B = x.size(0), tc = t1 - t0, H = x.size(2), S = B * H, groups = (S + W - 1) / W;
  const int64_t per_token = tc > 0 && S > 0 ? x.narrow(1, t0, tc).numel() / (S * tc) : 0;
  std::vector<int64_t> order{0, 2, 1};
  for (int64_t d = 3; d < x.dim(); ++d) order.push_back(d);
  Tensor padded = at::zeros({groups * W, tc * per_token}, x.options());
  padded.narrow(0, 0, S).copy_(x.narrow(1, t0, tc).permute(order).reshape({S, tc * per_token}));
  return padded.view({groups, W, tc * per_token}).permute({0, 2, 1}).contiguous();
}

// f(r, src) for every value of a chunk's lane-major table (groups, tc, per_token, W) of S states in
// groups of W: r its index there, src the index of the same value in the chunk's (B, tc, H,
// per_token) input, or -1 for the lanes that pad the last group.
template <class F>
void for_each_lane_value(int64_t S, int64_t H, int64_t W, int64_t tc, int64_t per_token, F&& f) {
  const int64_t groups = (S + W - 1) / W;
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t w = 0; w < W; ++w) {
      const int64_t s = g * W + w, b = s / H, h = s % H;
      for (int64_t tt = 0; tt < tc; ++tt)
        for (int64_t k = 0; k < per_token; ++k)
          f(((g * tc + tt) * per_token + k) * W + w, s < S ? ((b * tc + tt) * H + h) * per_token + k : -1);
    }
}

// cos/sin of theta/2, (phi + omega)/2, (phi - omega)/2 of every gate of tokens [t0, t1):
// six lane-major planes (6, groups, t1 - t0, L, n, W) in that order.
Tensor gate_trig(const Tensor& angles, int64_t t0, int64_t t1, int64_t W) {
  const int64_t B = angles.size(0), tc = t1 - t0, H = angles.size(2), S = B * H, groups = (S + W - 1) / W;
  const int64_t gates = angles.size(3) * angles.size(4);  // per token and state
  if (scalar_trig(angles)) {
    const Tensor rows = angles.narrow(1, t0, tc).contiguous();  // (B, tc, H, L, n, 3)
    Tensor out = at::empty({6, groups, tc * gates, W}, angles.options());
    const int64_t count = groups * tc * gates * W;
    AT_DISPATCH_FLOATING_TYPES(angles.scalar_type(), "qlam_gate_trig", [&] {
      const scalar_t* x = rows.const_data_ptr<scalar_t>();
      scalar_t* o = out.mutable_data_ptr<scalar_t>();
      for_each_lane_value(S, H, W, tc, gates, [&](int64_t r, int64_t src) {
        // Padding lanes get the identity's values (all angles 0).
        const double phi = src < 0 ? 0 : x[3 * src], theta = src < 0 ? 0 : x[3 * src + 1],
                     omega = src < 0 ? 0 : x[3 * src + 2];
        put_cos_sin(o, 0, count, r, theta);
        put_cos_sin(o, 2, count, r, phi + omega);
        put_cos_sin(o, 4, count, r, phi - omega);
      });
    });
    return out;
  }
  const Tensor lm = lane_major(angles, t0, t1, W).view({groups, tc * gates, 3, W});
  const Tensor phi = lm.select(2, 0), theta = lm.select(2, 1), omega = lm.select(2, 2);
  return cos_sin_planes({theta * 0.5, (phi + omega) * 0.5, (phi - omega) * 0.5});
}

// rzz: cos and sin of g_p / 2 for tokens [t0, t1): two lane-major planes (2, groups, t1 - t0, L, P, W).
Tensor entangler_trig(const Tensor& ent_angles, const Tensor& angles, int64_t t0, int64_t t1, int64_t W) {
  const int64_t B = ent_angles.size(0), tc = t1 - t0, H = ent_angles.size(2), S = B * H;
  const int64_t groups = (S + W - 1) / W, pairs = ent_angles.size(3) * ent_angles.size(4);
  if (scalar_trig(angles)) {
    const Tensor rows = ent_angles.narrow(1, t0, tc).contiguous();  // (B, tc, H, L, P)
    Tensor out = at::empty({2, groups, tc * pairs, W}, ent_angles.options());
    const int64_t count = groups * tc * pairs * W;
    AT_DISPATCH_FLOATING_TYPES(ent_angles.scalar_type(), "qlam_entangler_trig", [&] {
      const scalar_t* x = rows.const_data_ptr<scalar_t>();
      scalar_t* o = out.mutable_data_ptr<scalar_t>();
      for_each_lane_value(S, H, W, tc, pairs, [&](int64_t r, int64_t src) {
        put_cos_sin(o, 0, count, r, src < 0 ? 0.0 : double(x[src]));
      });
    });
    return out;
  }
  return cos_sin_planes({lane_major(ent_angles, t0, t1, W) * 0.5});
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
  Tensor norm0 = at::zeros({a.num_states()}, f.angles.options().dtype(at::kDouble));
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
    task.norm0 = norm0.data_ptr<double>();
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
  Tensor norm0 = at::zeros({a.num_states()}, b.angles.options().dtype(at::kDouble));
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
    task.norm0 = norm0.data_ptr<double>();
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
