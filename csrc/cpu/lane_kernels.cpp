// The lane kernels' entry points, compiled once per x86 instruction set
// (isa_clones.h), so the vector arithmetic of lane_program.h is generated for
// each clone's ISA.
#include "isa_clones.h"
#include "lane_program.h"

namespace qlam {

#define QLAM_LANE_ENTRIES(T, Width)                                                                     \
  QLAM_ISA_CLONES void lane_forward_group(const LaneTask<T>& task, int64_t group,                        \
                                          LaneScratch<T, Width>& scratch) {                              \
    LaneGroup<T, Width>(task, group, scratch).forward();                                                 \
  }                                                                                                      \
  QLAM_ISA_CLONES void lane_backward_group(const LaneTask<T>& task, int64_t group,                       \
                                           LaneScratch<T, Width>& scratch) {                             \
    LaneGroup<T, Width>(task, group, scratch).backward();                                                \
  }

QLAM_LANE_ENTRIES(float, Lanes<float>::W)
QLAM_LANE_ENTRIES(double, Lanes<double>::W)
QLAM_LANE_ENTRIES(float, kNarrowLanes<float>)
QLAM_LANE_ENTRIES(double, kNarrowLanes<double>)

#undef QLAM_LANE_ENTRIES

}  // namespace qlam
