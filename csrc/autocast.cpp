// Autocast rule: under mixed precision the scan runs in float32 (float64
// inputs stay float64), so the statevector keeps its precision.
#include <ATen/autocast_mode.h>
#include <torch/library.h>

#include "scan_host.h"

namespace qlam {
namespace {

template <c10::DispatchKey autocast_key, c10::DeviceType device_type>
std::tuple<Tensor, Tensor> scan_checkpointed_autocast(const Tensor& angles, const OptTensor& ent_angles,
                                                      const OptTensor& init_state, const OptTensor& lengths,
                                                      c10::string_view entangler, bool pair_features,
                                                      int64_t checkpoint_every) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(autocast_key);
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("qlam::scan_checkpointed", "")
                       .typed<std::tuple<Tensor, Tensor>(const Tensor&, const OptTensor&, const OptTensor&,
                                                         const OptTensor&, c10::string_view, bool, int64_t)>();
  // cached_cast leaves float64 alone and lifts float16/bfloat16 to float32.
  return op.call(at::autocast::cached_cast(at::kFloat, angles, device_type),
                 at::autocast::cached_cast(at::kFloat, ent_angles, device_type), init_state, lengths, entangler,
                 pair_features, checkpoint_every);
}

template <c10::DispatchKey autocast_key, c10::DeviceType device_type>
std::tuple<Tensor, Tensor> scan_autocast(const Tensor& angles, const OptTensor& ent_angles,
                                         const OptTensor& init_state, const OptTensor& lengths,
                                         c10::string_view entangler, bool pair_features) {
  return scan_checkpointed_autocast<autocast_key, device_type>(angles, ent_angles, init_state, lengths,
                                                               entangler, pair_features, 0);
}

}  // namespace

TORCH_LIBRARY_IMPL(qlam, AutocastCPU, m) {
  m.impl("scan", &scan_autocast<c10::DispatchKey::AutocastCPU, c10::DeviceType::CPU>);
  m.impl("scan_checkpointed", &scan_checkpointed_autocast<c10::DispatchKey::AutocastCPU, c10::DeviceType::CPU>);
}

TORCH_LIBRARY_IMPL(qlam, AutocastCUDA, m) {
  m.impl("scan", &scan_autocast<c10::DispatchKey::AutocastCUDA, c10::DeviceType::CUDA>);
  m.impl("scan_checkpointed", &scan_checkpointed_autocast<c10::DispatchKey::AutocastCUDA, c10::DeviceType::CUDA>);
}

}  // namespace qlam
