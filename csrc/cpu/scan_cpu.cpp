// CPU kernels of qlam::scan_forward and qlam::scan_backward: each (b, h)
// state runs the whole sequence in one task, states in parallel.
#include <torch/library.h>

#include "sequential_executor.h"

namespace qlam {
namespace {

std::tuple<Tensor, Tensor, Tensor> scan_forward_cpu(const Tensor& angles, const OptTensor& ent_angles,
                                                    const OptTensor& init_state, const OptTensor& lengths,
                                                    c10::string_view entangler, bool pair_features,
                                                    int64_t checkpoint_every) {
  ForwardBuffers f = prepare_forward(angles, ent_angles, init_state, lengths, entangler, pair_features,
                                     checkpoint_every);
  AT_DISPATCH_FLOATING_TYPES(f.angles.scalar_type(), "qlam_scan_forward_cpu",
                             [&] { run_forward_program(forward_args<scalar_t>(f), 1); });
  return {f.features, f.final_state, f.checkpoints};
}

std::tuple<Tensor, Tensor, Tensor> scan_backward_cpu(const OptTensor& grad_features,
                                                     const OptTensor& grad_final_state, const Tensor& angles,
                                                     const OptTensor& ent_angles, const Tensor& final_state,
                                                     const Tensor& checkpoints, const OptTensor& lengths,
                                                     c10::string_view entangler, bool pair_features,
                                                     int64_t checkpoint_every) {
  BackwardBuffers b = prepare_backward(grad_features, grad_final_state, angles, ent_angles, final_state,
                                       checkpoints, lengths, entangler, pair_features, checkpoint_every);
  AT_DISPATCH_FLOATING_TYPES(b.angles.scalar_type(), "qlam_scan_backward_cpu",
                             [&] { run_backward_program(backward_args<scalar_t>(b), 1); });
  return {b.grad_angles, b.grad_ent_angles, b.grad_init_state};
}

}  // namespace

TORCH_LIBRARY_IMPL(qlam, CPU, m) {
  m.impl("scan_forward", &scan_forward_cpu);
  m.impl("scan_backward", &scan_backward_cpu);
}

}  // namespace qlam
