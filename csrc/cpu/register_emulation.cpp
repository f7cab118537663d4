// Test hook: the register program of register_program.h (amplitudes in lane
// registers, G lanes per state) run on the CPU by an exact emulation of its
// lanes and of __shfl_xor_sync, so that its layout, exchanges and reductions
// are checked against the reference where no GPU is present: the forward
// (_register_emulation_forward) and the backward by uncomputation
// (_register_emulation_backward, the arguments and results of scan_backward).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "../register_program.h"
#include "../scan_host.h"
#include "emulated_lanes.h"

namespace qlam {
namespace {

constexpr int kMaxAmplitudes = regprog::kMaxEmulatedAmplitudes;

// The plain emulation: the shared lanes (emulated_lanes.h), a sync that orders nothing
// (the lanes of a phase run one after another), and no scratch checks.
struct RegisterEmulator : regprog::EmulatedLanes {
  explicit RegisterEmulator(int lanes) : EmulatedLanes(lanes, "register emulation") {}

  template <class F>
  void run(F&& f) {
    for (int i = 0; i < group_lanes_; ++i) f(lane(i));
  }

  void sync() {}
};

template <typename T, int R>
void run_register_forward(const ScanArgs<T>& a, int lanes) {
  using State = regprog::RegisterState<T, R, RegisterEmulator>;
  TORCH_INTERNAL_ASSERT(int64_t(lanes) * R == a.N && lanes <= State::Amps::kLanes);
  at::parallel_for(0, a.num_states(), 1, [&](int64_t begin, int64_t end) {
    // The arrays are large for big R (up to 2**12 amplitudes each): on the heap.
    auto state = std::make_unique<State>();
    auto scratch = std::make_unique<regprog::GroupScratch<T>>();
    RegisterEmulator ex{lanes};
    for (int64_t s = begin; s < end; ++s) regprog::scan_forward_state(ex, a, s, *state, *scratch);
  });
}

template <typename T, int R>
void run_register_backward(const ScanArgs<T>& a, int lanes) {
  using State = regprog::AdjointState<T, R, RegisterEmulator>;
  TORCH_INTERNAL_ASSERT(int64_t(lanes) * R == a.N && lanes <= State::Amps::kLanes);
  at::parallel_for(0, a.num_states(), 1, [&](int64_t begin, int64_t end) {
    auto state = std::make_unique<State>();
    auto scratch = std::make_unique<regprog::BackwardScratch<T>>();
    RegisterEmulator ex{lanes};
    for (int64_t s = begin; s < end; ++s) regprog::scan_backward_state(ex, a, s, *state, *scratch);
  });
}

template <typename T>
void dispatch_registers(const ScanArgs<T>& a, int lanes, bool backward) {
  const bool found = regprog::with_register_count<kMaxAmplitudes>(a.N, lanes, [&](auto r) {
    constexpr int R = decltype(r)::value;
    if (backward) {
      run_register_backward<T, R>(a, lanes);
    } else {
      run_register_forward<T, R>(a, lanes);
    }
  });
  TORCH_INTERNAL_ASSERT(found, "register emulation: no register count for 2**n = ", a.N);
}

std::tuple<Tensor, Tensor, Tensor> register_emulation_forward(const Tensor& angles, const OptTensor& ent_angles,
                                                              const OptTensor& init_state,
                                                              const OptTensor& lengths, c10::string_view entangler,
                                                              bool pair_features, int64_t checkpoint_every,
                                                              int64_t lanes_per_state) {
  regprog::check_emulated_lanes("_register_emulation_forward", lanes_per_state);
  ForwardBuffers f = prepare_forward(angles, ent_angles, init_state, lengths, entangler, pair_features,
                                     checkpoint_every);
  // A state of 2**n < G amplitudes uses 2**n lanes of one amplitude each.
  const int lanes = static_cast<int>(std::min<int64_t>(lanes_per_state, f.shape.N));
  AT_DISPATCH_FLOATING_TYPES(f.angles.scalar_type(), "qlam_register_emulation_forward",
                             [&] { dispatch_registers(forward_args<scalar_t>(f), lanes, false); });
  return {f.features, f.final_state, f.checkpoints};
}

std::tuple<Tensor, Tensor, Tensor> register_emulation_backward(
    const OptTensor& grad_features, const OptTensor& grad_final_state, const Tensor& angles,
    const OptTensor& ent_angles, const Tensor& final_state, const Tensor& checkpoints, const OptTensor& lengths,
    c10::string_view entangler, bool pair_features, int64_t checkpoint_every, int64_t lanes_per_state) {
  regprog::check_emulated_lanes("_register_emulation_backward", lanes_per_state);
  BackwardBuffers b = prepare_backward(grad_features, grad_final_state, angles, ent_angles, final_state,
                                       checkpoints, lengths, entangler, pair_features, checkpoint_every);
  const int lanes = static_cast<int>(std::min<int64_t>(lanes_per_state, b.shape.N));
  AT_DISPATCH_FLOATING_TYPES(b.angles.scalar_type(), "qlam_register_emulation_backward",
                             [&] { dispatch_registers(backward_args<scalar_t>(b), lanes, true); });
  return {b.grad_angles, b.grad_ent_angles, b.grad_init_state};
}

}  // namespace

TORCH_LIBRARY_IMPL(qlam, CPU, m) {
  m.impl("_register_emulation_forward", &register_emulation_forward);
  m.impl("_register_emulation_backward", &register_emulation_backward);
}

}  // namespace qlam
