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

namespace qlam {
namespace {

constexpr int kMaxLanes = 32;
constexpr int kMaxAmplitudes = 1 << kMaxQubits;

// The lanes of one group run a phase one after another; each Private array is
// [lanes][N], and shfl_xor is one whole-group operation that reads every lane's
// value before writing any (what __shfl_xor_sync does), so the emulation
// computes what the SIMT lanes compute.
struct RegisterEmulator {
  class Lane {
    int i_;
    explicit Lane(int i) : i_(i) {}
    friend struct RegisterEmulator;

   public:
    int index() const { return i_; }
  };

  template <class X, int N>
  struct Private {
    using value_type = X;
    static constexpr int size = N;
    // G * R = 2**n <= kMaxAmplitudes: arrays of R amplitudes need at most
    // kMaxAmplitudes / R lanes, so their storage stays <= kMaxAmplitudes values.
    static constexpr int kLanes = std::min(kMaxLanes, std::max(1, kMaxAmplitudes / N));
    X data[kLanes][N];
    X* operator[](Lane lane) { return data[lane.index()]; }
    const X* operator[](Lane lane) const { return data[lane.index()]; }
  };

  int group_lanes;

  int lanes() const { return group_lanes; }

  template <class F>
  void run(F&& f) {
    for (int i = 0; i < group_lanes; ++i) f(Lane(i));
  }

  void sync() {}

  template <class P, class Take>
  void shfl_xor(P& dst, const P& src, int mask, Take take) {
    TORCH_INTERNAL_ASSERT(mask > 0 && mask < group_lanes, "register emulation: xor mask ", mask,
                          " outside a group of ", group_lanes, " lanes");
    typename P::value_type before[kMaxLanes];
    for (int r = 0; r < P::size; ++r) {
      if (!take(r)) continue;
      for (int i = 0; i < group_lanes; ++i) before[i] = src.data[i ^ mask][r];
      for (int i = 0; i < group_lanes; ++i) dst.data[i][r] = before[i];
    }
  }

  // A value every lane holds after a butterfly: checked bit for bit (NaN included).
  template <class P>
  typename P::value_type uniform(const P& p, int c) const {
    for (int i = 1; i < group_lanes; ++i)
      TORCH_INTERNAL_ASSERT(std::memcmp(&p.data[i][c], &p.data[0][c], sizeof(p.data[0][c])) == 0,
                            "register emulation: lanes disagree on a reduced value");
    return p.data[0][c];
  }
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

void check_lanes_per_state(const char* op, int64_t lanes_per_state) {
  TORCH_CHECK(lanes_per_state >= 1 && lanes_per_state <= kMaxLanes &&
                  (lanes_per_state & (lanes_per_state - 1)) == 0,
              "qlam.", op, ": lanes_per_state must be a power of two from 1 to ", kMaxLanes,
              " (1, 2, 4, 8, 16 or 32 lanes of a warp per state), got ", lanes_per_state);
}

std::tuple<Tensor, Tensor, Tensor> register_emulation_forward(const Tensor& angles, const OptTensor& ent_angles,
                                                              const OptTensor& init_state,
                                                              const OptTensor& lengths, c10::string_view entangler,
                                                              bool pair_features, int64_t checkpoint_every,
                                                              int64_t lanes_per_state) {
  check_lanes_per_state("_register_emulation_forward", lanes_per_state);
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
  check_lanes_per_state("_register_emulation_backward", lanes_per_state);
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
