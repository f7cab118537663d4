// The CPU scan's trig pre-pass: for a chunk of tokens, the cos and sin of every
// half-angle the gates use, in the lane-major layout the lane kernels read
// (lane_program.h, LaneTask::trig and ::ent_trig).
#pragma once

#include <ATen/ATen.h>

namespace qlam {

using at::Tensor;

// cos/sin of theta/2, (phi + omega)/2, (phi - omega)/2 of every gate of tokens [t0, t1) of angles
// (B, T, H, L, n, 3): six lane-major planes (6, groups, t1 - t0, L, n, W) in that order.
Tensor gate_trig(const Tensor& angles, int64_t t0, int64_t t1, int64_t W);

// rzz: cos and sin of g_p / 2 for tokens [t0, t1) of ent_angles (B, T, H, L, P): two lane-major
// planes (2, groups, t1 - t0, L, P, W). `angles` decides the path, as for gate_trig.
Tensor entangler_trig(const Tensor& ent_angles, const Tensor& angles, int64_t t0, int64_t t1, int64_t W);

}  // namespace qlam
