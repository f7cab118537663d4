// SIMD lanes for the CPU kernels: one vector holds the same amplitude of W
// different states (by default 64 bytes: 16 float32 or 8 float64), so every
// gate is the same vector arithmetic on all lanes even though each state has
// its own angles.
//
// GCC/Clang vector extensions compile these types to whatever the target
// offers (one AVX-512 register, two AVX2 registers, four SSE registers); the
// kernels' entry points are cloned per instruction set (lane_kernels.cpp).
// The explicit alignment (the vector's size, at most 64 bytes) matters: without
// it GCC gives these types only the alignment the compiling target's widest
// register needs, so code built for SSE and code built for AVX-512 would
// disagree about them.
#pragma once

#include <cstdint>
#include <type_traits>

namespace qlam {

// W lanes of T; the default fills one 64-byte vector. Narrower groups
// (kNarrowLanes) serve calls with only a few states, where a full vector would
// carry mostly empty lanes through every instruction and every per-lane loop.
template <typename T, int Width = 64 / int(sizeof(T))>
struct Lanes {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "lanes of float or double");
  using Int = typename std::conditional<sizeof(T) == 4, int32_t, int64_t>::type;
  // Aligned to their size up to 64 bytes (an array of vectors must not be over-aligned).
  static constexpr int kBytes = Width * int(sizeof(T)), kWideBytes = Width * int(sizeof(double));
  typedef T V __attribute__((vector_size(kBytes), aligned(kBytes < 64 ? kBytes : 64)));
  typedef Int Mask __attribute__((vector_size(kBytes), aligned(kBytes < 64 ? kBytes : 64)));
  typedef double Wide __attribute__((vector_size(kWideBytes), aligned(kWideBytes < 64 ? kWideBytes : 64)));
  static constexpr int W = Width;
};

// The narrow group: one 32-byte vector (8 float32 or 4 float64 lanes). Measured at n = 8, one
// thread, forward+backward of one state: 16 lanes 19-23 ms, 8 lanes 11.3, 4 lanes 10.8, 2 lanes
// 11.3, 1 lane 37 (GCC's one-element vectors); 8 lanes keep the gain up to 8 states (14 vs 22 ms).
template <typename T>
constexpr int kNarrowLanes = 32 / int(sizeof(T));

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
