// Test hooks: the CUDA kernels' per-state program (32 lanes, the width of a
// warp) run on the CPU, so that its index arithmetic, lane splitting and
// reductions are checked against the reference where no GPU is present.
#include <torch/library.h>

#include "sequential_executor.h"

namespace qlam {
namespace {

constexpr int kWarpLanes = 32;

std::tuple<Tensor, Tensor, Tensor> warp_emulation_forward(const Tensor& angles, const OptTensor& ent_angles,
                                                          const OptTensor& init_state, const OptTensor& lengths,
                                                          c10::string_view entangler, bool pair_features,
                                                          int64_t checkpoint_every) {
  ForwardBuffers f = prepare_forward(angles, ent_angles, init_state, lengths, entangler, pair_features,
                                     checkpoint_every);
  AT_DISPATCH_FLOATING_TYPES(f.angles.scalar_type(), "qlam_warp_emulation_forward",
                             [&] { run_forward_program(forward_args<scalar_t>(f), kWarpLanes); });
  return {f.features, f.final_state, f.checkpoints};
}

std::tuple<Tensor, Tensor, Tensor> warp_emulation_backward(
    const OptTensor& grad_features, const OptTensor& grad_final_state, const Tensor& angles,
    const OptTensor& ent_angles, const Tensor& final_state, const Tensor& checkpoints, const OptTensor& lengths,
    c10::string_view entangler, bool pair_features, int64_t checkpoint_every) {
  BackwardBuffers b = prepare_backward(grad_features, grad_final_state, angles, ent_angles, final_state,
                                       checkpoints, lengths, entangler, pair_features, checkpoint_every);
  AT_DISPATCH_FLOATING_TYPES(b.angles.scalar_type(), "qlam_warp_emulation_backward",
                             [&] { run_backward_program(backward_args<scalar_t>(b), kWarpLanes); });
  return {b.grad_angles, b.grad_ent_angles, b.grad_init_state};
}

}  // namespace

TORCH_LIBRARY_IMPL(qlam, CPU, m) {
  m.impl("_warp_emulation_forward", &warp_emulation_forward);
  m.impl("_warp_emulation_backward", &warp_emulation_backward);
}

}  // namespace qlam
