// Runs the per-state program of state_program.h on the CPU with its lanes
// emulated one after another, one state per task, states in parallel.
#pragma once

#include <ATen/Parallel.h>

#include <vector>

#include "../scan_host.h"
#include "../state_program.h"

namespace qlam {

// Lanes run in order inside each phase, so `sync` has nothing to wait for.
struct SequentialExecutor {
  int num_lanes;
  int lanes() const { return num_lanes; }
  template <class F>
  void run(F&& f) {
    for (int lane = 0; lane < num_lanes; ++lane) f(lane);
  }
  void sync() {}
  template <int R, typename T, class F>
  void allreduce(T* out, int count, F&& f) {
    for (int r = 0; r < count; ++r) out[r] = T(0);
    for (int lane = 0; lane < num_lanes; ++lane) {
      T part[R] = {};
      f(lane, part);
      for (int r = 0; r < count; ++r) out[r] += part[r];
    }
  }
};

template <typename T>
void run_forward_program(const ScanArgs<T>& a, int lanes) {
  at::parallel_for(0, a.num_states(), 1, [&](int64_t begin, int64_t end) {
    std::vector<Cplx<T>> psi(a.N), mats(4 * a.n);
    std::vector<T> gzz(2 * a.P + 1);
    SequentialExecutor ex{lanes};
    for (int64_t s = begin; s < end; ++s) scan_forward_state(ex, a, s, psi.data(), mats.data(), gzz.data());
  });
}

template <typename T>
void run_backward_program(const ScanArgs<T>& a, int lanes) {
  at::parallel_for(0, a.num_states(), 1, [&](int64_t begin, int64_t end) {
    std::vector<Cplx<T>> psi(a.N), lam(a.N), mats(4 * a.n);
    std::vector<T> gzz(2 * a.P + 1);
    SequentialExecutor ex{lanes};
    for (int64_t s = begin; s < end; ++s)
      scan_backward_state(ex, a, s, psi.data(), lam.data(), mats.data(), gzz.data());
  });
}

}  // namespace qlam
