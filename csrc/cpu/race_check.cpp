// Test hooks: the CUDA kernels' per-state program (state_program.h) run on the
// CPU under RaceCheckExecutor, which finds missing syncs (race_check_executor.h).
// `skip_sync_line` leaves out the sync at that line of state_program.h (-1: none),
// so tests can plant each missing sync in turn; `lanes` is the number of lanes
// (32 on a warp). Each op returns what the plain emulation returns plus the
// source lines of the syncs the program ran, and raises on the first race.
#include <torch/library.h>

#include <set>
#include <string>
#include <vector>

#include "../scan_host.h"
#include "../state_program.h"
#include "race_check_executor.h"

namespace qlam {
namespace {

template <typename V>
SharedRegion region(std::vector<V>& v) {
  return {reinterpret_cast<unsigned char*>(v.data()), v.size() * sizeof(V)};
}

Tensor lines_tensor(const std::set<int>& lines) {
  std::vector<int64_t> out(lines.begin(), lines.end());
  return at::tensor(out, at::kLong);
}

void check_lanes(int64_t lanes) {
  TORCH_CHECK(lanes >= 1 && lanes <= 64, "qlam race check: lanes must lie in [1, 64], got ", lanes);
}

std::tuple<Tensor, Tensor, Tensor, Tensor> race_check_forward(
    const Tensor& angles, const OptTensor& ent_angles, const OptTensor& init_state, const OptTensor& lengths,
    c10::string_view entangler, bool pair_features, int64_t checkpoint_every, int64_t lanes, int64_t skip_line) {
  check_lanes(lanes);
  ForwardBuffers f = prepare_forward(angles, ent_angles, init_state, lengths, entangler, pair_features,
                                     checkpoint_every);
  std::set<int> lines;
  std::string race;
  AT_DISPATCH_FLOATING_TYPES(f.angles.scalar_type(), "qlam_race_check_forward", [&] {
    const ScanArgs<scalar_t> a = forward_args<scalar_t>(f);
    std::vector<Cplx<scalar_t>> psi(a.N), mats(4 * a.n);
    std::vector<scalar_t> gzz(2 * a.P + 1);
    for (int64_t s = 0; s < a.num_states() && race.empty(); ++s) {
      RaceCheckExecutor ex(int(lanes), {region(psi), region(mats), region(gzz)}, int(skip_line));
      scan_forward_state(ex, a, s, psi.data(), mats.data(), gzz.data());
      lines.insert(ex.sync_lines().begin(), ex.sync_lines().end());
      race = ex.race();
    }
  });
  TORCH_CHECK(race.empty(), "qlam race check (forward): ", race);
  return {f.features, f.final_state, f.checkpoints, lines_tensor(lines)};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> race_check_backward(
    const OptTensor& grad_features, const OptTensor& grad_final_state, const Tensor& angles,
    const OptTensor& ent_angles, const Tensor& final_state, const Tensor& checkpoints, const OptTensor& lengths,
    c10::string_view entangler, bool pair_features, int64_t checkpoint_every, int64_t lanes, int64_t skip_line) {
  check_lanes(lanes);
  BackwardBuffers b = prepare_backward(grad_features, grad_final_state, angles, ent_angles, final_state,
                                       checkpoints, lengths, entangler, pair_features, checkpoint_every);
  std::set<int> lines;
  std::string race;
  AT_DISPATCH_FLOATING_TYPES(b.angles.scalar_type(), "qlam_race_check_backward", [&] {
    const ScanArgs<scalar_t> a = backward_args<scalar_t>(b);
    std::vector<Cplx<scalar_t>> psi(a.N), lam(a.N), mats(4 * a.n);
    std::vector<scalar_t> gzz(2 * a.P + 1);
    for (int64_t s = 0; s < a.num_states() && race.empty(); ++s) {
      RaceCheckExecutor ex(int(lanes), {region(psi), region(lam), region(mats), region(gzz)}, int(skip_line));
      scan_backward_state(ex, a, s, psi.data(), lam.data(), mats.data(), gzz.data());
      lines.insert(ex.sync_lines().begin(), ex.sync_lines().end());
      race = ex.race();
    }
  });
  TORCH_CHECK(race.empty(), "qlam race check (backward): ", race);
  return {b.grad_angles, b.grad_ent_angles, b.grad_init_state, lines_tensor(lines)};
}

}  // namespace

TORCH_LIBRARY_IMPL(qlam, CPU, m) {
  m.impl("_race_check_forward", &race_check_forward);
  m.impl("_race_check_backward", &race_check_backward);
}

}  // namespace qlam
