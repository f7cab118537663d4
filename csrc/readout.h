// Shared by the readout op's registration (readout.cpp) and its CPU kernel.
#pragma once

#include <ATen/ATen.h>

namespace qlam {

using at::Tensor;

// Shapes query (..., J, K) and features (..., K), one floating dtype, one device.
void check_readout_inputs(const Tensor& query, const Tensor& features);
// The same, and grad of the readings' shape (..., J).
void check_readout_backward_inputs(const Tensor& grad, const Tensor& query, const Tensor& features);

}  // namespace qlam
