// CPU kernel of qlam::gated_gelu (gated_gelu.cpp): y = GELU(a) v for each row
// x = [a | v] of 2h values, and its backward in one pass that writes the whole
// (..., 2h) gradient, rows in parallel.
//
// float32 uses its own branch-free erf and exp (below), so that the row loops
// vectorise in each ISA clone; std::erf and std::exp are scalar library calls.
// float64 (tests, gradcheck) uses std::erf and std::exp; half and bfloat16 go
// to the composite.
#include <ATen/Parallel.h>
#include <c10/util/accumulate.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "../gated_gelu.h"
#include "isa_clones.h"

namespace qlam {
namespace {

constexpr double kSqrtHalf = 0.70710678118654752440;   // 1 / sqrt(2)
constexpr double kInvSqrt2Pi = 0.39894228040143267794;  // 1 / sqrt(2 pi)

// erf(x) for float: x P(x^2) / Q(x^2) on [-4, 4] (beyond, erf rounds to +-1 in
// float). The coefficients are a weighted least-squares (Lawson) fit of the
// relative error over [0, 4] in float64 (relative error 2e-9 there); evaluated
// in float32 the result is within 7 ulp of erf, as close to the exact GELU as
// ATen's own float kernel (tests/test_gated_gelu.py measures both).
inline float erf_f32(float x) {
  x = x < -4.0f ? -4.0f : x;  // ternaries, not fmin/fmax: they vectorise, and NaN stays NaN
  x = x > 4.0f ? 4.0f : x;
  const float z = x * x;
  float p = -1.3202312190e-08f;
  p = p * z + 4.6847966341e-06f;
  p = p * z + 3.7960936971e-04f;
  p = p * z + 3.8496039631e-03f;
  p = p * z + 5.4316896680e-02f;
  p = p * z + 1.8520298259e-01f;
  p = p * z + 1.1283791694e+00f;
  float q = 6.3110759168e-05f;
  q = q * z + 1.3075690028e-03f;
  q = q * z + 1.5462076413e-02f;
  q = q * z + 1.1395833238e-01f;
  q = q * z + 4.9746528371e-01f;
  q = q * z + 1.0f;
  return x * p / q;
}

// exp(u) for float u <= 0, 0 below -87 (exp(-87) ~ 1.6e-38, near float's least
// normal; the GELU derivative's term is 0 there, as in ATen): u = n ln 2 + r with |r| <= ln 2 / 2
// (ln 2 split in two parts so n ln 2 is exact), e^r by its degree-7 Taylor
// polynomial (error below 1e-8 relative), and 2^n built in the exponent bits.
inline float exp_nonpositive_f32(float u) {
  const bool underflows = u < -87.0f;
  u = underflows ? -87.0f : u;
  const float kRound = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  const float n = (u * 1.44269504088896341f + kRound) - kRound;
  const float r = (u - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // n is in [-126, 0] for u in [-87, 0]; NaN (a NaN input) must not reach the conversion, which
  // would be undefined: it takes -127 (a zero scale; the NaN comes through the caller's a anyway).
  const float n_safe = n >= -126.0f ? n : -127.0f;
  const uint32_t bits = uint32_t(static_cast<int32_t>(n_safe) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return underflows ? 0.0f : p * scale;
}

inline float erf_of(float x) { return erf_f32(x); }
inline double erf_of(double x) { return std::erf(x); }
inline float exp_of_nonpositive(float u) { return exp_nonpositive_f32(u); }
inline double exp_of_nonpositive(double u) { return std::exp(u); }

// Rows [begin, end) of x (rows of 2h) into y (rows of h).
template <typename T>
void forward_rows(const T* __restrict x, T* __restrict y, int64_t h, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const T* __restrict a = x + r * 2 * h;
    const T* __restrict v = a + h;
    T* __restrict out = y + r * h;
    for (int64_t j = 0; j < h; ++j) {
      const T cdf = T(0.5) * (T(1) + erf_of(a[j] * T(kSqrtHalf)));
      out[j] = a[j] * cdf * v[j];
    }
  }
}

// gx = [g v GELU'(a) | g GELU(a)], GELU'(a) = Phi(a) + a phi(a).
template <typename T>
void backward_rows(const T* __restrict g, const T* __restrict x, T* __restrict gx, int64_t h, int64_t begin,
                   int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const T* __restrict a = x + r * 2 * h;
    const T* __restrict v = a + h;
    const T* __restrict gr = g + r * h;
    T* __restrict ga = gx + r * 2 * h;
    T* __restrict gv = ga + h;
    for (int64_t j = 0; j < h; ++j) {
      const T cdf = T(0.5) * (T(1) + erf_of(a[j] * T(kSqrtHalf)));
      const T pdf = T(kInvSqrt2Pi) * exp_of_nonpositive(T(-0.5) * a[j] * a[j]);
      ga[j] = gr[j] * v[j] * (cdf + a[j] * pdf);
      gv[j] = gr[j] * a[j] * cdf;
    }
  }
}

// The row loops per dtype: float32 compiled per ISA (target_clones cannot take a template).
QLAM_ISA_CLONES void forward_rows_of(const float* x, float* y, int64_t h, int64_t b, int64_t e) {
  forward_rows(x, y, h, b, e);
}
void forward_rows_of(const double* x, double* y, int64_t h, int64_t b, int64_t e) { forward_rows(x, y, h, b, e); }
QLAM_ISA_CLONES void backward_rows_of(const float* g, const float* x, float* gx, int64_t h, int64_t b, int64_t e) {
  backward_rows(g, x, gx, h, b, e);
}
void backward_rows_of(const double* g, const double* x, double* gx, int64_t h, int64_t b, int64_t e) {
  backward_rows(g, x, gx, h, b, e);
}

// Rows per task: about 32k values each.
int64_t grain(int64_t h) { return std::max<int64_t>(1, 32768 / h); }

bool has_kernel(const Tensor& x) {
  return x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble;
}

Tensor gated_gelu_cpu(const Tensor& x_in) {
  check_gated_gelu_input(x_in);
  if (!has_kernel(x_in)) return gated_gelu_composite(x_in);
  const Tensor x = x_in.contiguous();
  const int64_t h = x.size(-1) / 2, rows = h ? x.numel() / (2 * h) : 0;
  auto sizes = x.sizes().vec();
  sizes.back() = h;
  Tensor y = at::empty(sizes, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "qlam_gated_gelu_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain(h), [&](int64_t b, int64_t e) { forward_rows_of(xp, yp, h, b, e); });
  });
  return y;
}

Tensor gated_gelu_backward_cpu(const Tensor& grad_in, const Tensor& x_in) {
  check_gated_gelu_backward_inputs(grad_in, x_in);
  if (!has_kernel(x_in)) return gated_gelu_backward_composite(grad_in, x_in);
  const Tensor x = x_in.contiguous(), grad = grad_in.to(x.scalar_type()).contiguous();
  const int64_t h = x.size(-1) / 2, rows = h ? x.numel() / (2 * h) : 0;
  Tensor gx = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "qlam_gated_gelu_backward_cpu", [&] {
    const scalar_t* gp = grad.const_data_ptr<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* gxp = gx.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain(h), [&](int64_t b, int64_t e) { backward_rows_of(gp, xp, gxp, h, b, e); });
  });
  return gx;
}

}  // namespace

TORCH_LIBRARY_IMPL(qlam, CPU, m) {
  m.impl("gated_gelu", &gated_gelu_cpu);
  m.impl("gated_gelu_backward", &gated_gelu_backward_cpu);
}

}  // namespace qlam
