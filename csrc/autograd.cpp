// Autograd for qlam::scan and qlam::scan_checkpointed: the forward keeps only
// the final state (and the optional checkpoints); the backward uncomputes the
// sequence in qlam::scan_backward (docs/design.md §3), so memory does not grow with T.
#include <torch/autograd.h>
#include <torch/library.h>

#include <string>

#include "scan_host.h"

namespace qlam {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using ForwardFn = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const OptTensor&, const OptTensor&,
                                                     const OptTensor&, c10::string_view, bool, int64_t);
using BackwardFn = std::tuple<Tensor, Tensor, Tensor>(const OptTensor&, const OptTensor&, const Tensor&,
                                                      const OptTensor&, const Tensor&, const Tensor&,
                                                      const OptTensor&, c10::string_view, bool, int64_t);

OptTensor defined_or_none(const Tensor& t) { return t.defined() ? OptTensor(t) : std::nullopt; }

class ScanFunction : public torch::autograd::Function<ScanFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& angles, const OptTensor& ent_angles,
                               const OptTensor& init_state, const OptTensor& lengths, c10::string_view entangler,
                               bool pair_features, int64_t checkpoint_every) {
    static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("qlam::scan_forward", "").typed<ForwardFn>();
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [features, final_state, checkpoints] =
        op.call(angles, ent_angles, init_state, lengths, entangler, pair_features, checkpoint_every);
    ctx->save_for_backward({angles, ent_angles.value_or(Tensor()), lengths.value_or(Tensor()), final_state,
                            checkpoints});
    ctx->saved_data["entangler"] = std::string(entangler);
    ctx->saved_data["pair_features"] = pair_features;
    ctx->saved_data["checkpoint_every"] = checkpoint_every;
    ctx->saved_data["has_init_state"] = init_state.has_value();
    return {features, final_state};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(!torch::autograd::GradMode::is_enabled(),
                "qlam.scan: double backward (create_graph=True) is not supported");
    static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("qlam::scan_backward", "").typed<BackwardFn>();
    const auto saved = ctx->get_saved_variables();
    const std::string entangler = ctx->saved_data["entangler"].toStringRef();
    auto [grad_angles, grad_ent_angles, grad_init_state] =
        op.call(defined_or_none(grads[0]), defined_or_none(grads[1]), saved[0], defined_or_none(saved[1]),
                saved[3], saved[4], defined_or_none(saved[2]), entangler, ctx->saved_data["pair_features"].toBool(),
                ctx->saved_data["checkpoint_every"].toInt());
    return {grad_angles, saved[1].defined() ? grad_ent_angles : Tensor(),
            ctx->saved_data["has_init_state"].toBool() ? grad_init_state : Tensor(),
            Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

std::tuple<Tensor, Tensor> scan_checkpointed_autograd(const Tensor& angles, const OptTensor& ent_angles,
                                                      const OptTensor& init_state, const OptTensor& lengths,
                                                      c10::string_view entangler, bool pair_features,
                                                      int64_t checkpoint_every) {
  auto out = ScanFunction::apply(angles, ent_angles, init_state, lengths, entangler, pair_features,
                                 checkpoint_every);
  return {out[0], out[1]};
}

std::tuple<Tensor, Tensor> scan_autograd(const Tensor& angles, const OptTensor& ent_angles,
                                         const OptTensor& init_state, const OptTensor& lengths,
                                         c10::string_view entangler, bool pair_features) {
  return scan_checkpointed_autograd(angles, ent_angles, init_state, lengths, entangler, pair_features, 0);
}

}  // namespace

TORCH_LIBRARY_IMPL(qlam, Autograd, m) {
  m.impl("scan", &scan_autograd);
  m.impl("scan_checkpointed", &scan_checkpointed_autograd);
}

}  // namespace qlam
