// Gate and observable math shared by the CPU and CUDA kernels (docs/design.md §2).
//
// Everything here is a small inline function on scalars, usable from host and
// device code, so both kernels build their gates, entanglers, features and
// gradients from one definition.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define QLAM_HD __host__ __device__ __forceinline__
#else
#define QLAM_HD inline
#endif

namespace qlam {

// Largest number of qubits the fused kernels accept (both devices). The CUDA
// backward keeps two states of 2**n complex128 values in shared memory (129 KiB
// per warp at n = 12): sm_80, sm_90 and sm_100 offer that per block, sm_86/89
// (99 KiB) do not, and the launch then refuses with a message (scan_cuda.cu).
constexpr int kMaxQubits = 12;

enum class Entangler : int { None = 0, CNOT = 1, CZ = 2, RZZ = 3 };

// Number of entangled pairs: a ring for n >= 3, one pair for n = 2, none for n = 1.
QLAM_HD int num_pairs(int n) { return n >= 3 ? n : n - 1; }
// Pair p couples qubits (p, p+1 mod n); the ring closes with (n-1, 0).
QLAM_HD int pair_first(int p) { return p; }
QLAM_HD int pair_second(int p, int n) { return (p + 1) % n; }

// Number of features: <X_q>,<Y_q>,<Z_q> per qubit, then 9 per chain pair.
QLAM_HD int num_features(int n, bool pair_features) {
  return 3 * n + (pair_features ? 9 * (n - 1) : 0);
}

QLAM_HD float qcos(float x) { return cosf(x); }
QLAM_HD float qsin(float x) { return sinf(x); }
QLAM_HD double qcos(double x) { return ::cos(x); }
QLAM_HD double qsin(double x) { return ::sin(x); }

// float32 rounding walks a state's norm away, so the kernels scale it back to its starting
// squared norm `target` once per token (float64 gets no correction). They keep its inverse,
// taken once per state (norm_inverse: 0 for a norm that is not positive, which restores
// nothing), and norm_scale gives the factor sqrt(target / now). With d = 1 - now / target,
// sqrt(target / now) = (1 - d)^(-1/2) = 1 + d/2 + 3d^2/8 + 5d^3/16 + ... A token moves the norm
// by ~1e-6 (d ~ 1e-6), so two multiply-adds give the factor to ~1e-19 (at most 6e-13 where
// |d| <= 2^-13), far inside float32's rounding of it: the division and square root (two
// dependent Newton chains after MUFU.RCP64H / RSQ64H, ~20 FP64 instructions on a GPU warp's
// dependent path every token) remain only for a larger step (a checkpoint of another norm, or
// a NaN or infinity, which fall through to them as before).
QLAM_HD double norm_inverse(double squared_norm) {
  return squared_norm > 0 ? 1.0 / squared_norm : 0.0;
}
QLAM_HD double norm_scale(double inverse_target, double now) {
  const double ratio = now * inverse_target, d = 1.0 - ratio;
  if (d >= -0x1p-13 && d <= 0x1p-13) return 1.0 + d * (0.5 + 0.375 * d);
  return sqrt(1.0 / ratio);
}

template <typename T>
struct Cplx {
  T re, im;
};

template <typename T>
QLAM_HD Cplx<T> cmul(Cplx<T> a, Cplx<T> b) {
  return {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re};
}
// conj(a) * b
template <typename T>
QLAM_HD Cplx<T> cmul_conj(Cplx<T> a, Cplx<T> b) {
  return {a.re * b.re + a.im * b.im, a.re * b.im - a.im * b.re};
}
template <typename T>
QLAM_HD Cplx<T> cadd(Cplx<T> a, Cplx<T> b) {
  return {a.re + b.re, a.im + b.im};
}

// Fused forms for the register program (register_program.h; its CPU emulation runs the same source). nvcc
// keeps cadd(cmul(a, x), cmul(b, y)) as it is written: per component an FMUL, an FFMA and an FADD each
// side (20 FP32 instructions for a 2x2 complex product on a pair), since it may not reassociate. Written
// as one chain of fused multiply-adds it is 16 (per component 1 FMUL + 3 FFMA). fmadd(a, b, c) = a * b + c
// with one rounding on the device (fmaf / fma); on the host the plain expression in the same order (the
// emulation: the same sums, each product rounded). The CPU kernels (state_program.h, cpu/lane_program.h)
// keep cmul / cadd / undo_gate_pair: their arithmetic is unchanged.
template <typename T>
QLAM_HD T fmadd(T a, T b, T c) {
#if defined(__CUDA_ARCH__)
  return fma(a, b, c);  // CUDA's fma has float and double overloads
#else
  return a * b + c;
#endif
}

// a x + b y, as two chains of fused multiply-adds (8 FP32 instructions, where cadd of two cmul takes 10).
template <typename T>
QLAM_HD Cplx<T> cmul_add(Cplx<T> a, Cplx<T> x, Cplx<T> b, Cplx<T> y) {
  return {fmadd(a.re, x.re, fmadd(-a.im, x.im, fmadd(b.re, y.re, -b.im * y.im))),
          fmadd(a.re, x.im, fmadd(a.im, x.re, fmadd(b.re, y.im, b.im * y.re)))};
}
// acc += conj(a) * b, as fused multiply-adds into the accumulator (4, where cadd of cmul_conj takes 6).
template <typename T>
QLAM_HD void cmul_conj_acc(Cplx<T>& acc, Cplx<T> a, Cplx<T> b) {
  acc.re = fmadd(a.re, b.re, fmadd(a.im, b.im, acc.re));
  acc.im = fmadd(a.re, b.im, fmadd(-a.im, b.re, acc.im));
}

// Index of the p-th amplitude whose bit q is 0 (p in [0, 2**(n-1))).
QLAM_HD int64_t insert_zero_bit(int64_t p, int q) {
  const int64_t low = p & ((int64_t(1) << q) - 1);
  return ((p >> q) << (q + 1)) | low;
}

QLAM_HD int bit(int64_t i, int q) { return int((i >> q) & 1); }
// Eigenvalue of Z_q on basis state i: +1 for bit 0, -1 for bit 1.
QLAM_HD int zsign(int64_t i, int q) { return 1 - 2 * bit(i, q); }

// Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi), row-major m[2*row+col]:
//   [[ c e^{-i(phi+omega)/2}, -s e^{ i(phi-omega)/2}],
//    [ s e^{-i(phi-omega)/2},  c e^{ i(phi+omega)/2}]],  c, s = cos, sin(theta/2),
// from its six trig values (ca, sa, cd, sd = cos, sin of a = (phi+omega)/2 and
// d = (phi-omega)/2), as m[2k] = Re m_k, m[2k+1] = Im m_k. V is a scalar or a
// SIMD lane vector: the CPU lane kernels and the CUDA program both call this.
template <typename V>
QLAM_HD void rot_matrix_parts(V c, V s, V ca, V sa, V cd, V sd, V m[8]) {
  m[0] = c * ca;  m[1] = -c * sa;
  m[2] = -s * cd; m[3] = -s * sd;
  m[4] = s * cd;  m[5] = -s * sd;
  m[6] = c * ca;  m[7] = c * sa;
}

// Gradient of a real loss with respect to (phi, theta, omega) of one Rot gate,
// given S_k (S[2k] = Re, S[2k+1] = Im; k = 2a+b) = sum over the pairs of
// conj(lambda_a) * psi_b, where psi is the state entering the gate and lambda
// the adjoint leaving it: dL/dx = Re sum_ab S_ab dm_ab/dx. Same trig values and
// V as rot_matrix_parts; half = 0.5 as a V.
template <typename V>
QLAM_HD void rot_grad_parts(V c, V s, V ca, V sa, V cd, V sd, const V S[8], V half, V g[3]) {
  V m[8];
  rot_matrix_parts(c, s, ca, sa, cd, sd, m);
  // Im(S_k m_k); d/dphi multiplies m by (-i/2, +i/2, -i/2, +i/2), d/domega by (-i/2, -i/2, +i/2, +i/2).
  V imw[4];
  for (int k = 0; k < 4; ++k) imw[k] = S[2 * k] * m[2 * k + 1] + S[2 * k + 1] * m[2 * k];
  g[0] = half * (imw[0] - imw[1] + imw[2] - imw[3]);
  g[2] = half * (imw[0] + imw[1] - imw[2] - imw[3]);
  // d/dtheta: [[-s/2 e^{-ia}, -c/2 e^{id}], [c/2 e^{-id}, -s/2 e^{ia}]]; Re(S_k dm_k).
  const V hs = half * s, hc = half * c;
  const V dm[8] = {-hs * ca, hs * sa, -hc * cd, -hc * sd, hc * cd, -hc * sd, -hs * ca, -hs * sa};
  V gt = half - half;
  for (int k = 0; k < 4; ++k) gt += S[2 * k] * dm[2 * k] - S[2 * k + 1] * dm[2 * k + 1];
  g[1] = gt;
}

// The scalar forms on angles and complex numbers (the CUDA program).
template <typename T>
QLAM_HD void rot_matrix(T phi, T theta, T omega, Cplx<T> m[4]) {
  const T a = (phi + omega) / 2, d = (phi - omega) / 2;
  T parts[8];
  rot_matrix_parts(qcos(theta / 2), qsin(theta / 2), qcos(a), qsin(a), qcos(d), qsin(d), parts);
  for (int k = 0; k < 4; ++k) m[k] = {parts[2 * k], parts[2 * k + 1]};
}

template <typename T>
QLAM_HD void rot_grad(T phi, T theta, T omega, const Cplx<T> S[4], T g[3]) {
  const T a = (phi + omega) / 2, d = (phi - omega) / 2;
  const T Sp[8] = {S[0].re, S[0].im, S[1].re, S[1].im, S[2].re, S[2].im, S[3].re, S[3].im};
  rot_grad_parts(qcos(theta / 2), qsin(theta / 2), qcos(a), qsin(a), qcos(d), qsin(d), Sp, T(0.5), g);
}

// One amplitude pair of a Rot gate undone in the adjoint backward: psi's pair (x, y) and lambda's
// pair (l0, l1) both <- md (., .) with md = m^dagger, and S[2a+b] (re, im) += conj(l_a) * psi_b with
// lambda as it came (after the gate) and psi as it leaves (before the gate): rot_grad_parts' sums.
template <typename T>
QLAM_HD void undo_gate_pair(const Cplx<T> md[4], Cplx<T>& x, Cplx<T>& y, Cplx<T>& l0, Cplx<T>& l1, T S[8]) {
  const Cplx<T> b0 = cadd(cmul(md[0], x), cmul(md[1], y)), b1 = cadd(cmul(md[2], x), cmul(md[3], y));
  const Cplx<T> s00 = cmul_conj(l0, b0), s01 = cmul_conj(l0, b1);
  const Cplx<T> s10 = cmul_conj(l1, b0), s11 = cmul_conj(l1, b1);
  S[0] += s00.re; S[1] += s00.im; S[2] += s01.re; S[3] += s01.im;
  S[4] += s10.re; S[5] += s10.im; S[6] += s11.re; S[7] += s11.im;
  x = b0;
  y = b1;
  const Cplx<T> k0 = cadd(cmul(md[0], l0), cmul(md[1], l1)), k1 = cadd(cmul(md[2], l0), cmul(md[3], l1));
  l0 = k0;
  l1 = k1;
}

// undo_gate_pair in fused multiply-adds (cmul_add, cmul_conj_acc): the register program's (register_program.h),
// 48 FP32 instructions a pair where undo_gate_pair takes 64. The same sums; S[k] += re(.) as
// fma(., ., fma(., ., S[k])).
template <typename T>
QLAM_HD void undo_gate_pair_fused(const Cplx<T> md[4], Cplx<T>& x, Cplx<T>& y, Cplx<T>& l0, Cplx<T>& l1,
                                  T S[8]) {
  const Cplx<T> b0 = cmul_add(md[0], x, md[1], y), b1 = cmul_add(md[2], x, md[3], y);
  Cplx<T> s00 = {S[0], S[1]}, s01 = {S[2], S[3]}, s10 = {S[4], S[5]}, s11 = {S[6], S[7]};
  cmul_conj_acc(s00, l0, b0);
  cmul_conj_acc(s01, l0, b1);
  cmul_conj_acc(s10, l1, b0);
  cmul_conj_acc(s11, l1, b1);
  S[0] = s00.re; S[1] = s00.im; S[2] = s01.re; S[3] = s01.im;
  S[4] = s10.re; S[5] = s10.im; S[6] = s11.re; S[7] = s11.im;
  x = b0;
  y = b1;
  const Cplx<T> k0 = cmul_add(md[0], l0, md[1], l1), k1 = cmul_add(md[2], l0, md[3], l1);
  l0 = k0;
  l1 = k1;
}

// The CNOT ring (CNOT(q -> q+1) for q = 0..n-2, then CNOT(n-1 -> 0) when n >= 3)
// permutes basis states: the state |i> goes to |cnot_ring_forward(i)>.
QLAM_HD int64_t cnot_ring_forward(int64_t i, int n) {
  for (int p = 0; p < num_pairs(n); ++p) {
    const int c = pair_first(p), t = pair_second(p, n);
    i ^= int64_t(bit(i, c)) << t;
  }
  return i;
}
// Inverse permutation: the CNOTs undone in reverse order.
QLAM_HD int64_t cnot_ring_inverse(int64_t i, int n) {
  for (int p = num_pairs(n) - 1; p >= 0; --p) {
    const int c = pair_first(p), t = pair_second(p, n);
    i ^= int64_t(bit(i, c)) << t;
  }
  return i;
}

// Eigenvalue (+1/-1) of the CZ ring on basis state i.
QLAM_HD int cz_ring_sign(int64_t i, int n) {
  int parity = 0;
  for (int p = 0; p < num_pairs(n); ++p) parity ^= bit(i, pair_first(p)) & bit(i, pair_second(p, n));
  return parity ? -1 : 1;
}

// z_p z_p' (+1/-1) of the ring's pair p on basis state i, computed on the fly
// (the CUDA program; the CPU lane kernels read the same signs from a table).
struct RingZZ {
  int64_t i;
  int n;
  QLAM_HD int operator()(int p) const { return zsign(i, pair_first(p)) * zsign(i, pair_second(p, n)); }
};

// The RZZ layer multiplies amplitude i by exp(-i/2 sum_p g_p z_p z_p')
//   = prod_p (cos(g_p/2) - i z_p z_p' sin(g_p/2)),
// written here as the product of one unit phase per pair, each from its own
// pair's cos and sin. Never the cos/sin of the summed phase: in float32 one
// large angle beside small ones swallows them (a 1e6 angle made the small
// ones' features wrong by 4e-2). Every backend calls this. V is a scalar or a
// SIMD lane vector; c[p], s[p] hold cos(g_p/2), sin(g_p/2); zz(p) gives
// z_p z_p' of this amplitude; `inverse` gives the factor of the inverse layer.
template <typename V, typename ZZ>
QLAM_HD void rzz_factor(int P, const V* c, const V* s, const ZZ& zz, bool inverse, V one, V& fr, V& fi) {
  fr = one;
  fi = one - one;
  for (int p = 0; p < P; ++p) {
    const V zs = ((zz(p) > 0) != inverse) ? s[p] : -s[p];  // z z' sin(g/2), negated for the inverse
    const V r = fr * c[p] + fi * zs;
    fi = fi * c[p] - fr * zs;
    fr = r;
  }
}

// dL/dg_p = 1/2 sum_i z_p z_p' Im(conj(lam_i) psi_i): adds amplitude i's term
// w = Im(conj(lam_i) psi_i) to acc[p] with its sign (the caller halves the sum).
// The same before and after the layer, which commutes with its own generator.
template <typename V, typename ZZ>
QLAM_HD void rzz_grad_accumulate(int P, const ZZ& zz, V w, V* acc) {
  for (int p = 0; p < P; ++p) acc[p] += zz(p) > 0 ? w : -w;
}

// Single-qubit Pauli P in {0: X, 1: Y, 2: Z} as a permutation with phases:
// row r has its one nonzero entry in column pauli_col(P, r) with value pauli_val(P, r).
QLAM_HD int pauli_col(int P, int r) { return P == 2 ? r : r ^ 1; }
template <typename T>
QLAM_HD Cplx<T> pauli_val(int P, int r) {
  if (P == 0) return {T(1), T(0)};
  if (P == 1) return r == 0 ? Cplx<T>{T(0), T(-1)} : Cplx<T>{T(0), T(1)};
  return {T(r == 0 ? 1 : -1), T(0)};
}

// Two-qubit Pauli A_q B_{q+1} on the local index r = b_q + 2 * b_{q+1};
// feature j = 3 * A + B (row-major over X, Y, Z).
QLAM_HD int pauli2_col(int j, int r) {
  return pauli_col(j / 3, r & 1) | (pauli_col(j % 3, r >> 1) << 1);
}
template <typename T>
QLAM_HD Cplx<T> pauli2_val(int j, int r) {
  return cmul(pauli_val<T>(j / 3, r & 1), pauli_val<T>(j % 3, r >> 1));
}

// Single-qubit features from w = sum conj(a) b and z = sum |a|^2 - |b|^2 over
// the pairs (a, b) of amplitudes with bit q = 0 and 1.
template <typename T>
QLAM_HD void qubit_features(Cplx<T> w, T z, T* f) {
  f[0] = 2 * w.re;  // <X>
  f[1] = 2 * w.im;  // <Y>
  f[2] = z;         // <Z>
}

// The adjoint source of qubit q's features: d/dpsi of sum_P g_P <P_q> is
// 2 * M psi with the Hermitian M = [[gZ, gX - i gY], [gX + i gY, -gZ]].
template <typename T>
QLAM_HD void qubit_feature_source(const T* g, Cplx<T> M[4]) {
  M[0] = {g[2], T(0)};
  M[1] = {g[0], -g[1]};
  M[2] = {g[0], g[1]};
  M[3] = {-g[2], T(0)};
}

// The adjoint source of pair (q, q+1)'s features: 2 * M psi on the local
// index r = b_q + 2 b_{q+1}, with M = sum_j g_j (A_j (x) B_j) (Hermitian, 4x4).
template <typename T>
QLAM_HD void pair_feature_source(const T* g, Cplx<T> M[16]) {
  for (int k = 0; k < 16; ++k) M[k] = {T(0), T(0)};
  for (int j = 0; j < 9; ++j)
    for (int r = 0; r < 4; ++r) {
      const Cplx<T> v = pauli2_val<T>(j, r);
      Cplx<T>& e = M[4 * r + pauli2_col(j, r)];
      e.re += g[j] * v.re;
      e.im += g[j] * v.im;
    }
}

// The 16 real numbers that describe G[r][c] = sum conj(psi_r) psi_c over a
// pair's groups of four amplitudes (G is Hermitian): the diagonal, then the
// upper triangle (r < c) as (re, im).
constexpr int kPairGramReals = 16;
QLAM_HD int gram_slot(int r, int c) {  // r < c; slot of the real part
  const int offset[4] = {0, 3, 5, 6};    // upper-triangle entries before row r
  return 4 + 2 * (offset[r] + (c - r - 1));
}

// Adds one group's contribution (amplitudes v[0..3] on the local index) to G.
template <typename T>
QLAM_HD void gram_accumulate(const Cplx<T> v[4], T* acc) {
  for (int r = 0; r < 4; ++r) acc[r] += v[r].re * v[r].re + v[r].im * v[r].im;
  for (int r = 0; r < 4; ++r)
    for (int c = r + 1; c < 4; ++c) {
      const Cplx<T> w = cmul_conj(v[r], v[c]);
      acc[gram_slot(r, c)] += w.re;
      acc[gram_slot(r, c) + 1] += w.im;
    }
}

// The nine pair features <A_q B_{q+1}> from G: sum_r Re(val_j(r) G[r][col_j(r)]).
template <typename T>
QLAM_HD void pair_features_from_gram(const T* acc, T* f) {
  for (int j = 0; j < 9; ++j) {
    T sum = 0;
    for (int r = 0; r < 4; ++r) {
      const int c = pauli2_col(j, r);
      Cplx<T> G;
      if (r == c) {
        G = {acc[r], T(0)};
      } else if (r < c) {
        G = {acc[gram_slot(r, c)], acc[gram_slot(r, c) + 1]};
      } else {
        G = {acc[gram_slot(c, r)], -acc[gram_slot(c, r) + 1]};
      }
      sum += cmul(pauli2_val<T>(j, r), G).re;
    }
    f[j] = sum;
  }
}

}  // namespace qlam
