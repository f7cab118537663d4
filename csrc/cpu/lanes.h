// SIMD lanes for the CPU kernels: one 64-byte vector holds the same amplitude
// of W different states (16 float32 or 8 float64), so every gate is the same
// vector arithmetic on all lanes even though each state has its own angles.
//
// GCC/Clang vector extensions compile these types to whatever the target
// offers (one AVX-512 register, two AVX2 registers, four SSE registers); the
// kernels' entry points are cloned per instruction set (lane_kernels.cpp).
// The explicit aligned(64) matters: without it GCC gives these types only the
// alignment the compiling target's widest register needs, so code built for
// SSE and code built for AVX-512 would disagree about them.
#pragma once

#include <cstdint>

namespace qlam {

template <typename T>
struct Lanes;

template <>
struct Lanes<float> {
  typedef float V __attribute__((vector_size(64), aligned(64)));
  typedef int32_t Mask __attribute__((vector_size(64), aligned(64)));
  typedef double Wide __attribute__((vector_size(128), aligned(64)));  // V converted to double
  static constexpr int W = 16;
};

template <>
struct Lanes<double> {
  typedef double V __attribute__((vector_size(64), aligned(64)));
  typedef int64_t Mask __attribute__((vector_size(64), aligned(64)));
  typedef double Wide __attribute__((vector_size(64), aligned(64)));
  static constexpr int W = 8;
};

// m ? a : b per lane (m is all ones or all zeros in each lane): exact, no arithmetic.
template <typename V, typename M>
inline V lane_select(M m, V a, V b) {
  return m ? a : b;
}

template <typename V, typename S>
inline V broadcast(S x) {
  return V{} + x;
}

}  // namespace qlam
