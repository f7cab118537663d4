// Shared by the gated GELU op's registration (gated_gelu.cpp) and its CPU kernel.
#pragma once

#include <ATen/ATen.h>

namespace qlam {

using at::Tensor;

// x of shape (..., 2h), h >= 1, real floating point.
void check_gated_gelu_input(const Tensor& x);
// The same, and grad of the output's shape (..., h) on x's device.
void check_gated_gelu_backward_inputs(const Tensor& grad, const Tensor& x);
// The composite (ATen ops) forward and backward: other devices, Meta, and the CPU's half types.
Tensor gated_gelu_composite(const Tensor& x);
Tensor gated_gelu_backward_composite(const Tensor& grad, const Tensor& x);

}  // namespace qlam
