// The lanes of one group of the register program (register_program.h), emulated
// on the CPU: the executor pieces shared by the plain emulation
// (register_emulation.cpp) and the race checker (register_race_check.cpp).
// The lanes of a phase run one after another; each Private array is [lanes][N];
// shfl_xor is one whole-group operation that reads every lane's value before
// writing any (what __shfl_xor_sync does), so the emulation computes what the
// SIMT lanes compute.
#pragma once

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "../gates.h"

namespace qlam {
namespace regprog {

constexpr int kMaxEmulatedLanes = 32;
constexpr int kMaxEmulatedAmplitudes = 1 << kMaxQubits;

// The test hooks' lanes_per_state argument: a power of two from 1 to 32.
inline void check_emulated_lanes(const char* op, int64_t lanes_per_state) {
  TORCH_CHECK(lanes_per_state >= 1 && lanes_per_state <= kMaxEmulatedLanes &&
                  (lanes_per_state & (lanes_per_state - 1)) == 0,
              "qlam.", op, ": lanes_per_state must be a power of two from 1 to ", kMaxEmulatedLanes,
              " (1, 2, 4, 8, 16 or 32 lanes of a warp per state), got ", lanes_per_state);
}

class EmulatedLanes {
 public:
  class Lane {
    int i_;
    explicit Lane(int i) : i_(i) {}
    friend class EmulatedLanes;

   public:
    int index() const { return i_; }
  };

  template <class X, int N>
  struct Private {
    using value_type = X;
    static constexpr int size = N;
    // G * R = 2**n <= kMaxEmulatedAmplitudes: arrays of R amplitudes need at most
    // kMaxEmulatedAmplitudes / R lanes, so their storage stays <= that many values.
    static constexpr int kLanes = std::min(kMaxEmulatedLanes, std::max(1, kMaxEmulatedAmplitudes / N));
    X data[kLanes][N];
    X* operator[](Lane lane) { return data[lane.index()]; }
    const X* operator[](Lane lane) const { return data[lane.index()]; }
  };

  // `who` names the executor in internal errors.
  EmulatedLanes(int lanes, const char* who) : group_lanes_(lanes), who_(who) {}

  int lanes() const { return group_lanes_; }

  // SHFL instructions one lane has issued so far: __shfl_xor_sync moves 32 bits, so a float
  // takes one, a double or a complex float two, a complex double four (what the cost model counts).
  int64_t shuffle_instructions() const { return shuffles_; }

  template <class P, class Take>
  void shfl_xor(P& dst, const P& src, int mask, Take take) {
    TORCH_INTERNAL_ASSERT(mask > 0 && mask < group_lanes_, who_, ": xor mask ", mask, " outside a group of ",
                          group_lanes_, " lanes");
    typename P::value_type before[kMaxEmulatedLanes];
    for (int r = 0; r < P::size; ++r) {
      if (!take(r)) continue;
      shuffles_ += int64_t(sizeof(typename P::value_type) / 4);
      for (int i = 0; i < group_lanes_; ++i) before[i] = src.data[i ^ mask][r];
      for (int i = 0; i < group_lanes_; ++i) dst.data[i][r] = before[i];
    }
  }

  // A value every lane holds after a butterfly: checked bit for bit (NaN included).
  template <class P>
  typename P::value_type uniform(const P& p, int c) const {
    for (int i = 1; i < group_lanes_; ++i)
      TORCH_INTERNAL_ASSERT(std::memcmp(&p.data[i][c], &p.data[0][c], sizeof(p.data[0][c])) == 0, who_,
                            ": lanes disagree on a reduced value");
    return p.data[0][c];
  }

 protected:
  static Lane lane(int i) { return Lane(i); }

  int group_lanes_;
  const char* who_;
  int64_t shuffles_ = 0;
};

}  // namespace regprog
}  // namespace qlam
