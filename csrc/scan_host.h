// Host-side plumbing shared by every backend: input validation, output
// allocation and the translation of tensors into ScanArgs.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/string_view.h>

#include <optional>
#include <tuple>

#include "scan_args.h"

namespace qlam {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

// Sizes of a validated call. Dimensions other than n may be symbolic while
// tracing (fake tensors), so they stay SymInts here.
struct ScanShape {
  c10::SymInt B, T, H, L;
  int64_t n = 0, N = 0, K = 0, P = 0;
  Entangler entangler = Entangler::CNOT;
  bool pair_features = false;
  int64_t checkpoint_every = 0;
  c10::SymInt num_checkpoints;
};

Entangler parse_entangler(c10::string_view name);

// Checks ranks, shapes, dtypes, devices and options, with messages that say
// what was wrong and what is allowed. With check_values, also reads `lengths`
// to check that they lie in [0, T] (a device sync on CUDA).
ScanShape check_forward_inputs(const Tensor& angles, const OptTensor& ent_angles,
                               const OptTensor& init_state, const OptTensor& lengths,
                               c10::string_view entangler, bool pair_features,
                               int64_t checkpoint_every, bool check_values);

// The backward's extra inputs: gradients and the forward's saved outputs.
void check_backward_inputs(const ScanShape& shape, const Tensor& angles, const OptTensor& grad_features,
                           const OptTensor& grad_final_state, const Tensor& final_state,
                           const Tensor& checkpoints);

// Contiguous inputs and freshly allocated outputs of one forward call.
struct ForwardBuffers {
  ScanShape shape;
  Tensor angles, ent_angles, init_state, lengths;  // undefined when absent
  Tensor features, final_state, checkpoints;
};
ForwardBuffers prepare_forward(const Tensor& angles, const OptTensor& ent_angles,
                               const OptTensor& init_state, const OptTensor& lengths,
                               c10::string_view entangler, bool pair_features,
                               int64_t checkpoint_every);

struct BackwardBuffers {
  ScanShape shape;
  Tensor grad_features, grad_final_state, angles, ent_angles, final_state, checkpoints, lengths;
  Tensor grad_angles, grad_ent_angles, grad_init_state;
};
BackwardBuffers prepare_backward(const OptTensor& grad_features, const OptTensor& grad_final_state,
                                 const Tensor& angles, const OptTensor& ent_angles,
                                 const Tensor& final_state, const Tensor& checkpoints,
                                 const OptTensor& lengths, c10::string_view entangler,
                                 bool pair_features, int64_t checkpoint_every);

template <typename T>
ScanArgs<T> base_args(const ScanShape& s) {
  ScanArgs<T> a;
  a.B = s.B.expect_int();
  a.T_len = s.T.expect_int();
  a.H = s.H.expect_int();
  a.L = s.L.expect_int();
  a.n = static_cast<int>(s.n);
  a.N = s.N;
  a.K = static_cast<int>(s.K);
  a.P = static_cast<int>(s.P);
  a.entangler = s.entangler;
  a.pair_features = s.pair_features;
  a.checkpoint_every = s.checkpoint_every;
  a.num_checkpoints = s.num_checkpoints.expect_int();
  return a;
}

template <typename T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.const_data_ptr<T>() : nullptr;
}
template <typename T>
const Cplx<T>* cptr_or_null(const Tensor& t) {
  return t.defined() ? reinterpret_cast<const Cplx<T>*>(t.const_data_ptr()) : nullptr;
}
template <typename T>
Cplx<T>* cptr(const Tensor& t) {
  return t.defined() && t.numel() > 0 ? reinterpret_cast<Cplx<T>*>(t.data_ptr()) : nullptr;
}

template <typename T>
ScanArgs<T> forward_args(const ForwardBuffers& f) {
  ScanArgs<T> a = base_args<T>(f.shape);
  a.angles = f.angles.const_data_ptr<T>();
  a.ent_angles = ptr_or_null<T>(f.ent_angles);
  a.init_state = cptr_or_null<T>(f.init_state);
  a.lengths = ptr_or_null<int64_t>(f.lengths);
  a.features = f.features.data_ptr<T>();
  a.final_state = cptr<T>(f.final_state);
  a.checkpoints = cptr<T>(f.checkpoints);
  return a;
}

template <typename T>
ScanArgs<T> backward_args(const BackwardBuffers& b) {
  ScanArgs<T> a = base_args<T>(b.shape);
  a.angles = b.angles.const_data_ptr<T>();
  a.ent_angles = ptr_or_null<T>(b.ent_angles);
  a.lengths = ptr_or_null<int64_t>(b.lengths);
  a.grad_features = ptr_or_null<T>(b.grad_features);
  a.grad_final_state = cptr_or_null<T>(b.grad_final_state);
  a.saved_final_state = cptr_or_null<T>(b.final_state);
  a.saved_checkpoints = b.checkpoints.numel() > 0 ? cptr_or_null<T>(b.checkpoints) : nullptr;
  a.grad_angles = b.grad_angles.data_ptr<T>();
  a.grad_ent_angles = b.grad_ent_angles.numel() > 0 ? b.grad_ent_angles.data_ptr<T>() : nullptr;
  a.grad_init_state = cptr<T>(b.grad_init_state);
  return a;
}

}  // namespace qlam
