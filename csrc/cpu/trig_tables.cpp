// The CPU scan's trig pre-pass (trig_tables.h).
//
// Three paths, chosen per call so that every token of a call takes its values from one path:
// - float32 (training): one fused pass per (group, token) block, blocks in parallel, with this
//   file's own sincos (Cody-Waite reduction by pi/2, Taylor polynomials), whose loops vectorise
//   in each ISA clone. It replaced a dozen ATen passes (a lane-major copy with zero padding, the
//   half-angle sums and products, then sin and cos), ~15 % of a small model's training step.
// - small calls (<= kScalarTrigAngles angles: QLAMCell, streaming): one scalar loop in double.
// - float64: ATen's vectorised sin and cos over a lane-major copy.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "isa_clones.h"
#include "trig_tables.h"

namespace qlam {
namespace {

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

// sin and cos of x (float) for |x| <= kFusedTrigLimit: x = q pi/2 + r with |r| <= pi/4 (pi/2 in
// three parts, so q times the first is exact for |q| < 2^15), then Taylor polynomials of sin r
// (degree 9) and cos r (degree 10), whose truncation errors at pi/4 (2e-9, 1e-10) are far below
// float's rounding, and the quadrant's swap and signs. Branch-free, so the block loops vectorise.
constexpr float kFusedTrigLimit = 8192.0f;

inline void sincos_f32(float x, float& s, float& c) {
  const float kRound = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  const float q = (x * 0.636619772367581343f + kRound) - kRound;
  const float r = ((x - q * 1.5703125f) - q * 4.837512969970703125e-4f) - q * 7.54978995489188216e-8f;
  const float r2 = r * r;
  float ps = 1.0f / 362880;
  ps = ps * r2 - 1.0f / 5040;
  ps = ps * r2 + 1.0f / 120;
  ps = ps * r2 - 1.0f / 6;
  const float sin_r = r + r * r2 * ps;
  float pc = -1.0f / 3628800;
  pc = pc * r2 + 1.0f / 40320;
  pc = pc * r2 - 1.0f / 720;
  pc = pc * r2 + 1.0f / 24;
  pc = pc * r2 - 0.5f;
  const float cos_r = 1.0f + r2 * pc;
  const int quadrant = static_cast<int>(q == q ? q : 0.0f);  // NaN must not reach the conversion (undefined)
  const float sv = (quadrant & 1) ? cos_r : sin_r, cv = (quadrant & 1) ? sin_r : cos_r;
  s = (quadrant & 2) ? -sv : sv;
  c = ((quadrant + 1) & 2) ? -cv : cv;
}

// cos and sin of half-angle C of W lanes into two planes. One half-angle per loop, with restrict
// outputs: GCC did not vectorise a loop writing all six planes of a gate at once (its report:
// "no vectype" for the loads), so the sincos ran one lane at a time.
template <int C, class Halves>
inline void sincos_lanes(const float* in, int64_t W, Halves halves, float* __restrict cos_out,
                         float* __restrict sin_out) {
  for (int64_t w = 0; w < W; ++w) sincos_f32(halves.template half<C>(in, W, w), sin_out[w], cos_out[w]);
}

// The float32 pre-pass for the blocks (group g, token t0 + tt) with g * tc + tt in [begin, end).
// Each state's row of a token is contiguous in x (in_width values per item, `items` items); a
// block stages its W rows transposed, [value][lane], so the arithmetic runs across the lanes.
// Lanes past the last state stage zeros: the identity's values (cos 1, sin 0). A block with an
// angle beyond kFusedTrigLimit (or inf, or NaN) computes in double instead, like the small-call path.
struct BlockLayout {
  int64_t S, H, T, t0, tc, items, W, count;  // count: values per output plane
};

template <int InWidth, class Halves>
inline void trig_blocks(const float* x, float* out, const BlockLayout& k, int64_t begin, int64_t end,
                        float* stage, int64_t* row_start, Halves halves) {
  constexpr int kHalves = InWidth == 3 ? 3 : 1;
  const int64_t W = k.W, row = k.items * InWidth;
  for (int64_t block = begin; block < end; ++block) {
    const int64_t g = block / k.tc, tt = block % k.tc;
    // Value by value across the lanes (contiguous stores; the loads gather): lane by lane, the
    // stores strided by W cost as much as the sincos at n = 4.
    const int64_t live = std::min(W, k.S - g * W);
    for (int64_t w = 0; w < live; ++w) {
      const int64_t s = g * W + w;
      row_start[w] = (((s / k.H) * k.T + k.t0 + tt) * k.H + s % k.H) * row;
    }
    for (int64_t j = 0; j < row; ++j) {
      for (int64_t w = 0; w < live; ++w) stage[j * W + w] = x[row_start[w] + j];
      for (int64_t w = live; w < W; ++w) stage[j * W + w] = 0.0f;
    }
    // An OR of per-value tests rather than a running maximum, so that it vectorises; NaN fails
    // the test and takes the double path, which gives NaN as well.
    int out_of_range = 0;
    for (int64_t j = 0; j < row * W; ++j) out_of_range |= !(std::fabs(stage[j]) <= kFusedTrigLimit);
    const bool in_range = out_of_range == 0;
    for (int64_t item = 0; item < k.items; ++item) {
      float* o = out + (block * k.items + item) * W;
      const float* in = stage + item * InWidth * W;
      if (in_range) {  // not a branch per value, and one loop per half-angle: these vectorise
        sincos_lanes<0>(in, W, halves, o, o + k.count);
        if constexpr (kHalves == 3) {
          sincos_lanes<1>(in, W, halves, o + 2 * k.count, o + 3 * k.count);
          sincos_lanes<2>(in, W, halves, o + 4 * k.count, o + 5 * k.count);
        }
      } else {
        for (int64_t w = 0; w < W; ++w) {
          const float h[3] = {halves.template half<0>(in, W, w), halves.template half<1>(in, W, w),
                              halves.template half<2>(in, W, w)};
          for (int c = 0; c < kHalves; ++c) {
            o[2 * c * k.count + w] = float(std::cos(double(h[c])));
            o[(2 * c + 1) * k.count + w] = float(std::sin(double(h[c])));
          }
        }
      }
    }
  }
}

// Gate angles (phi, theta, omega) -> half-angle C: theta/2, (phi + omega)/2, (phi - omega)/2.
struct GateHalves {
  template <int C>
  static float half(const float* in, int64_t W, int64_t w) {
    if constexpr (C == 0) return in[W + w] * 0.5f;
    if constexpr (C == 1) return (in[w] + in[2 * W + w]) * 0.5f;
    return (in[w] - in[2 * W + w]) * 0.5f;
  }
};
struct PairHalf {
  template <int C>
  static float half(const float* in, int64_t, int64_t w) { return in[w] * 0.5f; }
};

QLAM_ISA_CLONES void gate_trig_blocks_f32(const float* x, float* out, const BlockLayout& k, int64_t begin,
                                          int64_t end, float* stage, int64_t* row_start) {
  trig_blocks<3>(x, out, k, begin, end, stage, row_start, GateHalves{});
}
QLAM_ISA_CLONES void pair_trig_blocks_f32(const float* x, float* out, const BlockLayout& k, int64_t begin,
                                          int64_t end, float* stage, int64_t* row_start) {
  trig_blocks<1>(x, out, k, begin, end, stage, row_start, PairHalf{});
}

// The fused float32 pre-pass over tokens [t0, t1) of x (B, T, H, ...items..., in_width):
// (2 * halves, groups, t1 - t0, items, W) planes.
Tensor fused_trig_f32(const Tensor& x_in, int64_t items, int in_width, int64_t t0, int64_t t1, int64_t W) {
  const Tensor x = x_in.contiguous();
  const int64_t B = x.size(0), H = x.size(2), S = B * H, tc = t1 - t0, groups = (S + W - 1) / W;
  const int planes = in_width == 3 ? 6 : 2;
  Tensor out = at::empty({planes, groups, tc * items, W}, x.options());
  const BlockLayout k{S, H, x.size(1), t0, tc, items, W, groups * tc * items * W};
  const float* xp = x.const_data_ptr<float>();
  float* op = out.mutable_data_ptr<float>();
  // Blocks per task: about 4k values each.
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, items * W));
  at::parallel_for(0, groups * tc, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> stage(items * in_width * W);
    std::vector<int64_t> row_start(W);
    if (in_width == 3)
      gate_trig_blocks_f32(xp, op, k, begin, end, stage.data(), row_start.data());
    else
      pair_trig_blocks_f32(xp, op, k, begin, end, stage.data(), row_start.data());
  });
  return out;
}

}  // namespace

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
  if (angles.scalar_type() == at::kFloat) return fused_trig_f32(angles, gates, 3, t0, t1, W);
  const Tensor lm = lane_major(angles, t0, t1, W).view({groups, tc * gates, 3, W});
  const Tensor phi = lm.select(2, 0), theta = lm.select(2, 1), omega = lm.select(2, 2);
  return cos_sin_planes({theta * 0.5, (phi + omega) * 0.5, (phi - omega) * 0.5});
}


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
  if (ent_angles.scalar_type() == at::kFloat) return fused_trig_f32(ent_angles, pairs, 1, t0, t1, W);
  return cos_sin_planes({lane_major(ent_angles, t0, t1, W) * 0.5});
}

}  // namespace qlam
