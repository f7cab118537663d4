// qlam::gated_gelu: the gated feed-forward's middle, GELU(x[..., :h]) * x[..., h:]
// (exact, erf-based GELU), as one op with its own backward.
//
// Why an op: written as chunk, gelu and a product, a training step runs five
// memory-bound passes over (B, T, h) tensors (gelu, the product, its two backward
// products, gelu's backward) and a cat that rebuilds the (B, T, 2h) gradient from
// the chunks'; on a 2-core CPU those were ~15 % of a QLAM classifier's training
// step. The CPU kernel (cpu/gated_gelu_cpu.cpp) reads x once per direction and
// writes the (..., 2h) gradient in place. Other devices (and Meta) use the
// composite below, which is also what the CPU kernel must agree with.
#include <torch/autograd.h>
#include <torch/library.h>

#include "gated_gelu.h"
#include "sizes_str.h"

namespace qlam {

void check_gated_gelu_input(const Tensor& x) {
  TORCH_CHECK(x.dim() >= 1, "qlam.gated_gelu: x must have shape (..., 2h), got a 0-d tensor");
  TORCH_CHECK(x.sym_size(-1) % 2 == 0 && x.sym_size(-1) >= 2, "qlam.gated_gelu: x's last dimension must be even ",
              "and at least 2 (the gate half, then the value half), got x of shape ", sizes_str(x));
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), "qlam.gated_gelu: x must be real floating point, got ",
              x.scalar_type());
}

void check_gated_gelu_backward_inputs(const Tensor& grad, const Tensor& x) {
  check_gated_gelu_input(x);
  auto out = x.sym_sizes().vec();
  out.back() = out.back() / 2;
  TORCH_CHECK(grad.sym_sizes() == c10::SymIntArrayRef(out), "qlam.gated_gelu_backward: grad must have the output's ",
              "shape (..., h) = ", c10::SymIntArrayRef(out), ", got ", sizes_str(grad));
  TORCH_CHECK(grad.device() == x.device(), "qlam.gated_gelu_backward: grad is on ", grad.device(), " but x is on ",
              x.device(), "; move both to one device");
}

Tensor gated_gelu_composite(const Tensor& x) {
  check_gated_gelu_input(x);
  const auto halves = x.chunk(2, -1);
  return at::gelu(halves[0]) * halves[1];
}

Tensor gated_gelu_backward_composite(const Tensor& grad_in, const Tensor& x) {
  check_gated_gelu_backward_inputs(grad_in, x);
  const auto halves = x.chunk(2, -1);
  const Tensor grad = grad_in.to(x.scalar_type());
  // d/da GELU(a) v = GELU'(a) v;  d/dv GELU(a) v = GELU(a).
  return at::cat({at::gelu_backward(grad * halves[1], halves[0]), grad * at::gelu(halves[0])}, -1);
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class GatedGeluFunction : public torch::autograd::Function<GatedGeluFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& x) {
    static auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow("qlam::gated_gelu", "").typed<Tensor(const Tensor&)>();
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({x});
    return op.call(x);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(!torch::autograd::GradMode::is_enabled(),
                "qlam.gated_gelu: double backward (create_graph=True) is not supported");
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("qlam::gated_gelu_backward", "")
                         .typed<Tensor(const Tensor&, const Tensor&)>();
    return {op.call(grads[0], ctx->get_saved_variables()[0])};
  }
};

Tensor gated_gelu_autograd(const Tensor& x) { return GatedGeluFunction::apply(x); }

}  // namespace

TORCH_LIBRARY_FRAGMENT(qlam, m) {
  m.def("gated_gelu(Tensor x) -> Tensor");
  m.def("gated_gelu_backward(Tensor grad, Tensor x) -> Tensor");
}

TORCH_LIBRARY_IMPL(qlam, CompositeExplicitAutograd, m) {
  m.impl("gated_gelu", &gated_gelu_composite);
  m.impl("gated_gelu_backward", &gated_gelu_backward_composite);
}

TORCH_LIBRARY_IMPL(qlam, Autograd, m) { m.impl("gated_gelu", &gated_gelu_autograd); }

}  // namespace qlam
