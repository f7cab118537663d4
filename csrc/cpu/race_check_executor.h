// An executor for the per-state program of state_program.h that finds missing
// syncs: a lane reading or writing shared memory that another lane wrote since
// the last sync() (an intra-warp race on the GPU, invisible to the plain
// emulation, whose lanes run one after another and whose sync() is empty).
//
// Between two syncs a warp guarantees a lane nothing about the other lanes'
// shared-memory writes. So here each lane sees the shared memory as of the last
// sync plus its own writes since then, and each phase (every run or allreduce
// call) runs three times per lane:
//   1. isolated: the last synced memory plus the lane's own writes;
//   2. with the other lanes' writes of this phase applied: if the lane's writes
//      differ from run 1, it read something another lane wrote without a sync
//      in between (a read-after-write race);
//   3. isolated again, so that what the lane leaves in global memory is what it
//      computed without seeing the others: a missing sync before a copy to
//      global memory then shows as a wrong output against the reference.
// Two lanes writing the same byte between syncs is a race too (write-after-write).
// At sync() all lanes' writes are merged. Tests skip the sync at one source line
// (`skip_line`) to plant a missing sync and see it caught.
#pragma once

#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace qlam {

struct SharedRegion {
  unsigned char* data;
  size_t bytes;
};

class RaceCheckExecutor {
 public:
  RaceCheckExecutor(int lanes, std::vector<SharedRegion> regions, int skip_line)
      : lanes_(lanes), regions_(std::move(regions)), skip_line_(skip_line), own_(lanes) {
    synced_ = snapshot();
  }

  int lanes() const { return lanes_; }

  template <class F>
  void run(F&& f) {
    phase([&](int lane, bool) { f(lane); });
  }

  // __builtin_LINE() as a default argument is the line of the caller's `ex.sync()`.
  void sync(int line = __builtin_LINE()) {
    sync_lines_.insert(line);
    if (line == skip_line_) return;  // the planted missing sync
    synced_ = merged();
    restore(synced_);
    for (auto& writes : own_) writes.clear();
    last_sync_line_ = line;
  }

  template <int R, typename T, class F>
  void allreduce(T* out, int count, F&& f) {
    std::vector<T> totals(count, T(0));
    phase([&](int lane, bool first_run) {
      T part[R] = {};
      f(lane, part);
      if (first_run)
        for (int r = 0; r < count; ++r) totals[r] += part[r];
    });
    for (int r = 0; r < count; ++r) out[r] = totals[r];
  }

  const std::set<int>& sync_lines() const { return sync_lines_; }
  const std::string& race() const { return race_; }

 private:
  using Writes = std::map<size_t, unsigned char>;

  // Runs lane_body(lane, first_run) on every lane as described at the top (an
  // allreduce keeps the partial sums of the first, isolated run only).
  template <class Body>
  void phase(Body&& lane_body) {
    const std::vector<Writes> before = own_;
    std::vector<Writes> isolated(lanes_);
    for (int lane = 0; lane < lanes_; ++lane) {
      const std::vector<unsigned char> view = view_of(lane, before, nullptr);
      restore(view);
      lane_body(lane, true);
      isolated[lane] = diff(view);
    }
    for (int lane = 0; lane < lanes_; ++lane) {
      const std::vector<unsigned char> view = view_of(lane, before, &isolated);
      restore(view);
      lane_body(lane, false);
      if (diff(view) != isolated[lane] && race_.empty())
        race_ = "lane " + std::to_string(lane) + " read shared memory that another lane wrote after the sync at "
                "line " + std::to_string(last_sync_line_) + " of state_program.h (a missing sync)";
    }
    for (int lane = 0; lane < lanes_; ++lane) {  // run 3: leave the isolated results in global memory
      restore(view_of(lane, before, nullptr));
      lane_body(lane, false);
    }
    for (int lane = 0; lane < lanes_; ++lane)
      for (const auto& [offset, value] : isolated[lane]) own_[lane][offset] = value;
    check_overlaps();
    restore(merged());  // between phases: every lane's writes (what lane-free code would see)
  }

  // The last synced memory with every lane's writes since then.
  std::vector<unsigned char> merged() const {
    std::vector<unsigned char> out = synced_;
    for (const auto& writes : own_)
      for (const auto& [offset, value] : writes) out[offset] = value;
    return out;
  }

  // The memory lane `lane` sees: the last sync, the other lanes' writes of this phase (if given), its own.
  std::vector<unsigned char> view_of(int lane, const std::vector<Writes>& before,
                                     const std::vector<Writes>* others) const {
    std::vector<unsigned char> view = synced_;
    if (others)
      for (int other = 0; other < lanes_; ++other) {
        if (other == lane) continue;
        for (const auto& [offset, value] : before[other]) view[offset] = value;
        for (const auto& [offset, value] : (*others)[other]) view[offset] = value;
      }
    for (const auto& [offset, value] : before[lane]) view[offset] = value;
    return view;
  }

  void check_overlaps() {
    if (!race_.empty()) return;
    std::map<size_t, int> writer;
    for (int lane = 0; lane < lanes_; ++lane)
      for (const auto& entry : own_[lane]) {
        auto [it, fresh] = writer.emplace(entry.first, lane);
        if (!fresh) {
          race_ = "lanes " + std::to_string(it->second) + " and " + std::to_string(lane) +
                  " wrote the same shared byte after the sync at line " + std::to_string(last_sync_line_) +
                  " of state_program.h (a missing sync)";
          return;
        }
      }
  }

  std::vector<unsigned char> snapshot() const {
    std::vector<unsigned char> out;
    for (const auto& r : regions_) out.insert(out.end(), r.data, r.data + r.bytes);
    return out;
  }

  void restore(const std::vector<unsigned char>& bytes) {
    size_t at = 0;
    for (const auto& r : regions_) {
      std::memcpy(r.data, bytes.data() + at, r.bytes);
      at += r.bytes;
    }
  }

  Writes diff(const std::vector<unsigned char>& base) const {
    Writes out;
    size_t at = 0;
    for (const auto& r : regions_) {
      for (size_t k = 0; k < r.bytes; ++k)
        if (r.data[k] != base[at + k]) out[at + k] = r.data[k];
      at += r.bytes;
    }
    return out;
  }

  int lanes_;
  std::vector<SharedRegion> regions_;
  int skip_line_;
  std::vector<unsigned char> synced_;  // shared memory as of the last sync
  std::vector<Writes> own_;            // per lane: its writes since the last sync
  int last_sync_line_ = 0;
  std::set<int> sync_lines_;
  std::string race_;
};

}  // namespace qlam
