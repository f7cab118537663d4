// qlam::readout: the query-weighted readings y[..., j] = sum_k Q[..., j, k] f[..., k]
// of the QLAM layer (docs/design.md §2), as one op with its own backward.
//
// Why an op: the same contraction as torch.einsum("...jk,...k->...j") runs as a
// batched matmul over B*T*H tiny (J x K) @ (K x 1) products, and its backward's
// outer product g f^T as another bmm with an inner dimension of 1; on the CPU
// those were ~5 % of a QLAM classifier's training step. The CPU kernel
// (cpu/readout_cpu.cpp) reads Q once per pass; other devices use the composite
// below (the einsum and broadcast product), which also serves Meta.
#include <torch/autograd.h>
#include <torch/library.h>

#include "readout.h"
#include "sizes_str.h"

namespace qlam {

void check_readout_inputs(const Tensor& query, const Tensor& features) {
  TORCH_CHECK(features.dim() >= 1, "qlam.readout: features must have shape (..., K), got a 0-d tensor");
  TORCH_CHECK(query.dim() == features.dim() + 1, "qlam.readout: query must have shape (..., J, K) for features ",
              "of shape (..., K), i.e. one more dimension than features; got query ", sizes_str(query),
              " and features ", sizes_str(features));
  for (int64_t d = 0; d + 1 < features.dim(); ++d)
    TORCH_CHECK(query.sym_size(d) == features.sym_size(d), "qlam.readout: the leading dimensions of query ",
                sizes_str(query), " and features ", sizes_str(features), " must agree (dimension ", d, ")");
  TORCH_CHECK(query.sym_size(-1) == features.sym_size(-1), "qlam.readout: query's last dimension (K) must equal ",
              "features' last dimension; got query ", sizes_str(query), " and features ", sizes_str(features));
  TORCH_CHECK(query.scalar_type() == features.scalar_type(), "qlam.readout: query and features must have one ",
              "dtype, got ", query.scalar_type(), " and ", features.scalar_type());
  TORCH_CHECK(at::isFloatingType(query.scalar_type()), "qlam.readout: query and features must be real ",
              "floating point, got ", query.scalar_type());
  TORCH_CHECK(query.device() == features.device(), "qlam.readout: query is on ", query.device(),
              " but features is on ", features.device(), "; move both to one device");
}

void check_readout_backward_inputs(const Tensor& grad, const Tensor& query, const Tensor& features) {
  check_readout_inputs(query, features);
  const auto readings = query.sym_sizes().slice(0, query.dim() - 1);
  TORCH_CHECK(grad.sym_sizes() == readings, "qlam.readout_backward: grad must have the readings' shape (..., J) = ",
              readings, ", got ", sizes_str(grad));
}

namespace {

Tensor readout_composite(const Tensor& query, const Tensor& features) {
  check_readout_inputs(query, features);
  return at::matmul(query, features.unsqueeze(-1)).squeeze(-1);
}

std::tuple<Tensor, Tensor> readout_backward_composite(const Tensor& grad, const Tensor& query,
                                                      const Tensor& features) {
  check_readout_backward_inputs(grad, query, features);
  // dQ[..., j, k] = g[..., j] f[..., k]; df[..., k] = sum_j g[..., j] Q[..., j, k].
  return {grad.unsqueeze(-1) * features.unsqueeze(-2),
          at::matmul(grad.unsqueeze(-2), query).squeeze(-2)};
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class ReadoutFunction : public torch::autograd::Function<ReadoutFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& query, const Tensor& features) {
    static auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow("qlam::readout", "").typed<Tensor(const Tensor&, const Tensor&)>();
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({query, features});
    return op.call(query, features);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(!torch::autograd::GradMode::is_enabled(),
                "qlam.readout: double backward (create_graph=True) is not supported");
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("qlam::readout_backward", "")
                         .typed<std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&)>();
    const auto saved = ctx->get_saved_variables();
    auto [grad_query, grad_features] = op.call(grads[0], saved[0], saved[1]);
    return {grad_query, grad_features};
  }
};

Tensor readout_autograd(const Tensor& query, const Tensor& features) {
  return ReadoutFunction::apply(query, features);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(qlam, m) {
  m.def("readout(Tensor query, Tensor features) -> Tensor");
  m.def("readout_backward(Tensor grad, Tensor query, Tensor features) -> (Tensor grad_query, "
        "Tensor grad_features)");
}

TORCH_LIBRARY_IMPL(qlam, CompositeExplicitAutograd, m) {
  m.impl("readout", &readout_composite);
  m.impl("readout_backward", &readout_backward_composite);
}

TORCH_LIBRARY_IMPL(qlam, Autograd, m) { m.impl("readout", &readout_autograd); }

}  // namespace qlam
