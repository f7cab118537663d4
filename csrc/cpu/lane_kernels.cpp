// The lane kernels' entry points, compiled once per x86 instruction set
// (AVX-512, AVX2 + FMA, baseline) and picked at load time by the CPU's
// features. `flatten` inlines the whole program into each clone, so the
// vector arithmetic of lane_program.h is generated for that clone's ISA;
// nothing outside these functions is built with wider instructions.
#include "lane_program.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(QLAM_NO_CLONES)
#define QLAM_LANE_ENTRY \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), flatten))
#else
#define QLAM_LANE_ENTRY __attribute__((flatten))
#endif

namespace qlam {

#define QLAM_LANE_ENTRIES(T, Width)                                                                     \
  QLAM_LANE_ENTRY void lane_forward_group(const LaneTask<T>& task, int64_t group,                        \
                                          LaneScratch<T, Width>& scratch) {                              \
    LaneGroup<T, Width>(task, group, scratch).forward();                                                 \
  }                                                                                                      \
  QLAM_LANE_ENTRY void lane_backward_group(const LaneTask<T>& task, int64_t group,                       \
                                           LaneScratch<T, Width>& scratch) {                             \
    LaneGroup<T, Width>(task, group, scratch).backward();                                                \
  }

QLAM_LANE_ENTRIES(float, Lanes<float>::W)
QLAM_LANE_ENTRIES(double, Lanes<double>::W)
QLAM_LANE_ENTRIES(float, kNarrowLanes<float>)
QLAM_LANE_ENTRIES(double, kNarrowLanes<double>)

#undef QLAM_LANE_ENTRIES

}  // namespace qlam
