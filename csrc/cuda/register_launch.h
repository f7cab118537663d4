// The register program's launches (register_cuda.cu) for scan_cuda.cu: qlam::scan_forward and
// qlam::scan_backward run them instead of today's kernels when QLAM_CUDA_PROGRAM=register selects
// them (cuda_program_is_register) and the state fits the register kernels; today's kernels stay the
// default until a GPU measurement shows where the register program wins (issue 15).
#pragma once

#include "../scan_host.h"

namespace qlam {

// QLAM_CUDA_PROGRAM: unset, empty or "shared" (today's kernels) -> false; "register" -> true;
// anything else raises, naming the allowed values. Read at every call, so a process can switch.
bool cuda_program_is_register();

// The register forward / backward on prepared buffers, lanes per state chosen by the host
// (register_program.h choose_lanes_per_state). False, with nothing launched, where 2**n amplitudes
// do not fit the kernels' registers over a warp (float32 n >= 10; float64 n >= 8 forward, n >= 9
// backward): the caller runs today's kernel there.
bool launch_register_forward(const ForwardBuffers& f);
bool launch_register_backward(const BackwardBuffers& b);

}  // namespace qlam
