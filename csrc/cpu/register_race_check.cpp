// Test hooks: the register program of register_program.h run on the CPU under
// an executor that checks every access to the group's shared scratch (the gate
// matrices, rzz cos/sin and trig values, double-buffered by layer) for races
// between the lanes: _register_race_check_forward / _backward, the arguments of
// _register_emulation_forward / _backward plus a `mutation`, their results plus
// access counts. A finding raises, with a report of what collided where.
//
// The program reaches the scratch only through scratch_load / scratch_store /
// scratch_reads / scratch_writes (register_program.h), which this executor
// implements. Per sync-delimited phase it records, per byte of the scratch,
// which lanes read and which wrote it; a race is two different lanes touching
// the same byte in one phase with at least one write (on a GPU nothing orders
// them: the warp's lanes are not lockstepped). A read of a byte that no lane
// has written since the state began is reported too.
//
// Two guards keep the hooks honest, so that an access the program makes
// without them cannot hide:
//   - lane views: each lane runs on its own copy of the scratch, the last synced
//     contents plus its own writes since; sync() merges them. A plain read of
//     another lane's unsynced write then sees stale (or poison) data, and the
//     results differ from the plain emulation's, which the tests compare bit for
//     bit.
//   - unhooked writes: after each lane's part of an ex.run(), every byte that
//     changed must have been recorded as this lane's write.
// The scratch starts filled with 0xff bytes (NaN), so unwritten data poisons
// the results as well.
//
// `mutation` plants a bug so that tests can see it caught (a checker that never
// fires proves nothing):
//   "none"          the program as written;
//   "no_sync"       every ex.sync() does nothing;
//   "skip_sync:K"   the K-th ex.sync() (from 0) of each state does nothing;
//   "single_buffer" the two layer buffers of each scratch array are one: the
//                   checker records accesses to buffer 1 as accesses to buffer 0
//                   (exactly the accesses of a program that always used buffer
//                   0; the data itself stays double-buffered);
//   "other_buffer"  reads are recorded as reads of the other layer's buffer (a
//                   program reading scratch.mats[buffer ^ 1]);
//   "persistent"    one group runs every state in turn over one scratch (a
//                   persistent kernel), instead of a fresh scratch per state;
//   "unrecorded_loads", "unrecorded_stores": the hooks load / store (and
//                   declare ranges) without recording, as plain accesses would;
//                   the guards above must still catch the damage (a wrong result,
//                   an unhooked write).
// Mutations combine with '+', e.g. "no_sync+unrecorded_loads".
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "../register_program.h"
#include "../scan_host.h"
#include "emulated_lanes.h"

namespace qlam {
namespace {

constexpr int kMaxAmplitudes = regprog::kMaxEmulatedAmplitudes;
constexpr unsigned char kPoison = 0xff;  // every float and double made of it is a NaN

// The planted bugs (several may combine, "a+b").
struct MutationSpec {
  bool no_sync = false, single_buffer = false, other_buffer = false, persistent = false;
  bool unrecorded_loads = false, unrecorded_stores = false;
  int64_t skip = -1;  // skip_sync:K: which sync call of a state does nothing
};

MutationSpec parse_mutation(const std::string& text) {
  MutationSpec m;
  if (text == "none") return m;
  const std::string prefix = "skip_sync:";
  size_t at = 0;
  while (at <= text.size()) {
    const size_t plus = std::min(text.find('+', at), text.size());
    const std::string part = text.substr(at, plus - at);
    at = plus + 1;
    if (part == "no_sync") m.no_sync = true;
    else if (part == "single_buffer") m.single_buffer = true;
    else if (part == "other_buffer") m.other_buffer = true;
    else if (part == "persistent") m.persistent = true;
    else if (part == "unrecorded_loads") m.unrecorded_loads = true;
    else if (part == "unrecorded_stores") m.unrecorded_stores = true;
    else if (part.rfind(prefix, 0) == 0 && part.size() > prefix.size() && part.size() < prefix.size() + 10 &&
             part.find_first_not_of("0123456789", prefix.size()) == std::string::npos)
      m.skip = std::stoll(part.substr(prefix.size()));
    else
      TORCH_CHECK(false, "qlam register race check: unknown mutation '", part, "' in '", text,
                  "'; expected 'none' or a '+'-joined list of 'no_sync', 'skip_sync:K' (K >= 0), 'single_buffer', "
                  "'other_buffer', 'persistent', 'unrecorded_loads', 'unrecorded_stores'");
  }
  return m;
}

// One double-buffered array of the scratch: buffer k spans [begin + k * bytes, begin + (k + 1) * bytes).
struct Field {
  const char* name;
  size_t begin, bytes, elem;
};

// GroupScratch (forward) or BackwardScratch (backward) as a list of fields.
template <typename T>
std::vector<Field> scratch_fields(const regprog::GroupScratch<T>& sc, bool with_trig) {
  const auto* base = reinterpret_cast<const unsigned char*>(&sc);
  const auto at = [&](const void* p) { return size_t(reinterpret_cast<const unsigned char*>(p) - base); };
  std::vector<Field> f = {{"mats", at(sc.mats[0]), sizeof(sc.mats[0]), sizeof(sc.mats[0][0])},
                          {"gzz", at(sc.gzz[0]), sizeof(sc.gzz[0]), sizeof(sc.gzz[0][0])}};
  if (with_trig) {
    const auto& bs = static_cast<const regprog::BackwardScratch<T>&>(sc);
    f.push_back({"trig", at(bs.trig[0]), sizeof(bs.trig[0]), sizeof(bs.trig[0][0])});
  }
  return f;
}

// What the checker found in one run; the first few findings are kept as text.
struct Findings {
  int64_t races = 0, unwritten_reads = 0, unhooked_writes = 0, bad_accesses = 0;
  std::vector<std::string> first;
  int64_t syncs = 0, loads = 0, stores = 0;  // what the checker saw (the stats tensor)
  int64_t shuffles = 0;                       // SHFL instructions per lane (EmulatedLanes)

  bool clean() const { return races + unwritten_reads + unhooked_writes + bad_accesses == 0; }
  void note(int64_t& counter, const std::string& what) {
    ++counter;
    if (first.size() < 4) first.push_back(what);
  }
};

// The executor: runs the lanes of a phase one after another as the plain
// emulation does (RegisterEmulator, cpu/register_emulation.cpp: the same
// Private arrays and shfl_xor), plus the scratch bookkeeping described at the top.
class RegisterRaceChecker : public regprog::EmulatedLanes {
 public:
  static constexpr bool kChecksScratch = true;

  RegisterRaceChecker(int lanes, void* scratch, size_t bytes, std::vector<Field> fields, MutationSpec mutation,
                      Findings& findings)
      : EmulatedLanes(lanes, "register race check"),
        mem_(static_cast<unsigned char*>(scratch)),
        bytes_(bytes),
        fields_(std::move(fields)),
        mutation_(mutation),
        found_(findings),
        synced_(mem_, mem_ + bytes),
        views_(lanes),
        readers_(bytes, 0),
        writers_(bytes, 0),
        stamp_(bytes, -1),
        written_(bytes, 0) {}

  template <class F>
  void run(F&& f) {
    for (int i = 0; i < group_lanes_; ++i) {
      enter(i);
      f(lane(i));
      leave(i);
    }
    lane_ = -1;
  }

  // Ends the phase: every lane's writes become visible to all.
  void sync() {
    const int64_t call = sync_calls_++;
    if (mutation_.no_sync || call == mutation_.skip) return;
    ++found_.syncs;
    if (dirty_) {
      // Each lane's changes (where two lanes wrote one byte, a race reported already, the higher lane's).
      std::vector<unsigned char> merged = synced_;
      for (int w = 0; w < group_lanes_; ++w) {
        if (!((dirty_ >> w) & 1)) continue;
        for (size_t b = 0; b < bytes_; ++b)
          if (views_[w][b] != synced_[b]) merged[b] = views_[w][b];
        views_[w].clear();
      }
      synced_.swap(merged);
      dirty_ = 0;
    }
    std::memcpy(mem_, synced_.data(), bytes_);
    holder_ = -1;
    ++phase_;
  }

  // The hooks of register_program.h.
  template <class X>
  X scratch_load(const X* p) {
    if (!mutation_.unrecorded_loads) access(p, 1, sizeof(X), false);
    return *p;
  }
  template <class X>
  void scratch_store(X* p, X v) {
    if (!mutation_.unrecorded_stores) access(p, 1, sizeof(X), true);
    *p = v;
  }
  template <class X>
  void scratch_reads(const X* p, int count) {
    if (!mutation_.unrecorded_loads) access(p, count, sizeof(X), false);
  }
  template <class X>
  void scratch_writes(const X* p, int count) {
    if (!mutation_.unrecorded_stores) access(p, count, sizeof(X), true);
  }

  void set_label(std::string label) { label_ = std::move(label); }

 private:
  // The lane's view into the real scratch: the synced contents, or its own copy once it has written.
  void enter(int i) {
    lane_ = i;
    const int want = (dirty_ >> i) & 1 ? i : -1;
    if (holder_ != want) {
      std::memcpy(mem_, want < 0 ? synced_.data() : views_[i].data(), bytes_);
      holder_ = want;
    }
  }

  void leave(int i) {
    const unsigned char* before = holder_ < 0 ? synced_.data() : views_[i].data();
    if (std::memcmp(mem_, before, bytes_) == 0) return;
    for (size_t b = 0; b < bytes_; ++b) {
      if (mem_[b] == before[b]) continue;
      const size_t c = canonical(b, false);
      if (!(stamp_[c] == phase_ && ((writers_[c] >> i) & 1))) {
        found_.note(found_.unhooked_writes, "lane " + std::to_string(i) + " changed " + where(b) + " " +
                                                phase_text() + " without scratch_store / scratch_writes");
        break;  // one report per lane and call
      }
    }
    if (holder_ < 0) views_[i].assign(mem_, mem_ + bytes_);
    else std::memcpy(views_[i].data(), mem_, bytes_);
    dirty_ |= 1u << i;
    holder_ = i;
  }

  // The byte whose accesses stand for byte b's: the mutations that fold buffers.
  size_t canonical(size_t b, bool read) const {
    const bool fold = mutation_.single_buffer;
    const bool swap = mutation_.other_buffer && read;
    if (!fold && !swap) return b;
    for (const Field& f : fields_) {
      if (b < f.begin || b >= f.begin + 2 * f.bytes) continue;
      const size_t buffer = (b - f.begin) / f.bytes, rest = (b - f.begin) % f.bytes;
      return f.begin + (fold ? 0 : (buffer ^ 1)) * f.bytes + rest;
    }
    return b;
  }

  // "mats[1][5]" (or "mats[1][5] (byte 3)") for a byte offset.
  std::string where(size_t b) const {
    for (const Field& f : fields_) {
      if (b < f.begin || b >= f.begin + 2 * f.bytes) continue;
      const size_t buffer = (b - f.begin) / f.bytes, rest = (b - f.begin) % f.bytes;
      return std::string(f.name) + "[" + std::to_string(buffer) + "][" + std::to_string(rest / f.elem) + "]" +
             (rest % f.elem ? " (byte " + std::to_string(rest % f.elem) + ")" : "");
    }
    return "scratch byte " + std::to_string(b) + " (padding)";
  }

  std::string phase_text() const {
    return "in phase " + std::to_string(phase_) + " (after " + std::to_string(phase_) + " ex.sync()" +
           (label_.empty() ? "" : ", " + label_) + ")";
  }

  void access(const void* p, int count, size_t elem, bool write) {
    const auto* q = static_cast<const unsigned char*>(p);
    const size_t n = size_t(count) * elem;
    if (lane_ < 0 || q < mem_ || q + n > mem_ + bytes_) {
      found_.note(found_.bad_accesses, lane_ < 0 ? "a scratch access outside ex.run() (no lane made it)"
                                                 : "lane " + std::to_string(lane_) + " accessed memory outside the "
                                                   "group's scratch through a scratch hook");
      return;
    }
    (write ? found_.stores : found_.loads) += count;
    const size_t off = size_t(q - mem_);
    const uint32_t me = 1u << lane_;
    // One finding per access (its first colliding byte), not one per byte.
    bool raced = false, unwritten = false;
    size_t hit = 0, first_unwritten = 0;
    uint32_t hit_w = 0, hit_r = 0;
    for (size_t k = 0; k < n; ++k) {
      const size_t c = canonical(off + k, !write);
      if (stamp_[c] != phase_) {
        stamp_[c] = phase_;
        readers_[c] = writers_[c] = 0;
      }
      const uint32_t others_w = writers_[c] & ~me, others_r = write ? readers_[c] & ~me : 0;
      if ((others_w | others_r) && !raced) {
        raced = true;
        hit = c;
        hit_w = others_w;
        hit_r = others_r;
      }
      if (!write && !written_[c] && !unwritten) {
        unwritten = true;
        first_unwritten = c;
      }
      if (write) {
        writers_[c] |= me;
        written_[c] = 1;
      } else {
        readers_[c] |= me;
      }
    }
    if (!raced && !unwritten) return;
    const std::string who =
        "lane " + std::to_string(lane_) + (write ? " wrote " : " read ") + where(raced ? hit : first_unwritten);
    if (raced) {
      const int other = __builtin_ctz(hit_w ? hit_w : hit_r);
      found_.note(found_.races, who + ", which lane " + std::to_string(other) + (hit_w ? " wrote " : " read ") +
                                    phase_text() + ": no ex.sync() orders them");
    } else {
      found_.note(found_.unwritten_reads, who + " " + phase_text() + ", which no lane had written");
    }
  }

  unsigned char* mem_;
  size_t bytes_;
  std::vector<Field> fields_;
  MutationSpec mutation_;
  Findings& found_;
  std::string label_;

  std::vector<unsigned char> synced_;              // the scratch as of the last sync
  std::vector<std::vector<unsigned char>> views_;  // a lane's copy, once it has written since the sync
  uint32_t dirty_ = 0;                             // lanes with a copy
  int holder_ = -1;                                // whose view mem_ holds (-1: the synced contents)
  int lane_ = -1;                                  // the lane running, -1 outside run()

  int64_t phase_ = 0, sync_calls_ = 0;
  std::vector<uint32_t> readers_, writers_;  // per byte: lanes that read / wrote it in phase stamp_
  std::vector<int64_t> stamp_;
  std::vector<unsigned char> written_;  // per byte: written since the state (or group) began
};

template <class Scratch>
std::unique_ptr<Scratch> poisoned_scratch() {
  auto sc = std::make_unique<Scratch>();
  std::memset(static_cast<void*>(sc.get()), kPoison, sizeof(Scratch));
  return sc;
}

// Runs state s (or, persistent, every state) under a checker; the findings of each state (or of the group).
template <typename T, int R, bool Backward>
void run_checked(const ScanArgs<T>& a, int lanes, MutationSpec mutation, std::vector<Findings>& found) {
  using Exec = RegisterRaceChecker;
  using State = std::conditional_t<Backward, regprog::AdjointState<T, R, Exec>, regprog::RegisterState<T, R, Exec>>;
  using Scratch = std::conditional_t<Backward, regprog::BackwardScratch<T>, regprog::GroupScratch<T>>;
  TORCH_INTERNAL_ASSERT(int64_t(lanes) * R == a.N && lanes <= State::Amps::kLanes);
  const auto one_state = [&](Exec& ex, State& st, Scratch& sc, int64_t s) {
    ex.set_label("state " + std::to_string(s));
    if constexpr (Backward) {
      regprog::scan_backward_state(ex, a, s, st, sc);
    } else {
      regprog::scan_forward_state(ex, a, s, st, sc);
    }
  };
  if (mutation.persistent) {
    found.assign(1, Findings{});
    auto st = std::make_unique<State>();
    auto sc = poisoned_scratch<Scratch>();
    Exec ex(lanes, sc.get(), sizeof(Scratch), scratch_fields<T>(*sc, Backward), mutation, found[0]);
    for (int64_t s = 0; s < a.num_states(); ++s) one_state(ex, *st, *sc, s);
    found[0].shuffles = ex.shuffle_instructions();
    return;
  }
  found.assign(size_t(a.num_states()), Findings{});
  at::parallel_for(0, a.num_states(), 1, [&](int64_t begin, int64_t end) {
    auto st = std::make_unique<State>();
    for (int64_t s = begin; s < end; ++s) {
      auto sc = poisoned_scratch<Scratch>();  // one group per state, as the CUDA kernels launch them
      Exec ex(lanes, sc.get(), sizeof(Scratch), scratch_fields<T>(*sc, Backward), mutation, found[size_t(s)]);
      one_state(ex, *st, *sc, s);
      found[size_t(s)].shuffles = ex.shuffle_instructions();
    }
  });
}

template <bool Backward, typename T>
void dispatch_checked(const ScanArgs<T>& a, int lanes, MutationSpec mutation, std::vector<Findings>& found) {
  const bool ok = regprog::with_register_count<kMaxAmplitudes>(a.N, lanes, [&](auto r) {
    run_checked<T, decltype(r)::value, Backward>(a, lanes, mutation, found);
  });
  TORCH_INTERNAL_ASSERT(ok, "register race check: no register count for 2**n = ", a.N);
}

// Raises with a report if any state found anything; else the counts [syncs, scratch loads, scratch
// stores, SHFL instructions per lane], summed over the states.
Tensor report(const char* op, int lanes, const std::string& mutation, const std::vector<Findings>& found) {
  Findings total;
  for (const Findings& f : found) {
    total.races += f.races;
    total.unwritten_reads += f.unwritten_reads;
    total.unhooked_writes += f.unhooked_writes;
    total.bad_accesses += f.bad_accesses;
    total.syncs += f.syncs;
    total.loads += f.loads;
    total.stores += f.stores;
    total.shuffles += f.shuffles;
    for (const std::string& s : f.first)
      if (total.first.size() < 4) total.first.push_back(s);
  }
  if (!total.clean()) {
    std::ostringstream msg;
    msg << "qlam register race check (" << op << ", " << lanes << " lanes per state, mutation '" << mutation
        << "'): " << total.races << " race(s) on the group's shared scratch, " << total.unwritten_reads
        << " read(s) of scratch no lane had written, " << total.unhooked_writes
        << " scratch write(s) not made through the hooks, " << total.bad_accesses << " misplaced access(es). First:";
    for (const std::string& s : total.first) msg << "\n  " << s;
    TORCH_CHECK(false, msg.str());
  }
  return at::tensor(std::vector<int64_t>{total.syncs, total.loads, total.stores, total.shuffles}, at::kLong);
}

std::tuple<Tensor, Tensor, Tensor, Tensor> register_race_check_forward(
    const Tensor& angles, const OptTensor& ent_angles, const OptTensor& init_state, const OptTensor& lengths,
    c10::string_view entangler, bool pair_features, int64_t checkpoint_every, int64_t lanes_per_state,
    c10::string_view mutation) {
  regprog::check_emulated_lanes("_register_race_check_forward", lanes_per_state);
  const std::string mut(mutation);
  const MutationSpec spec = parse_mutation(mut);
  ForwardBuffers f = prepare_forward(angles, ent_angles, init_state, lengths, entangler, pair_features,
                                     checkpoint_every);
  const int lanes = static_cast<int>(std::min<int64_t>(lanes_per_state, f.shape.N));  // as the emulation
  std::vector<Findings> found;
  AT_DISPATCH_FLOATING_TYPES(f.angles.scalar_type(), "qlam_register_race_check_forward",
                             [&] { dispatch_checked<false>(forward_args<scalar_t>(f), lanes, spec, found); });
  Tensor stats = report("forward", lanes, mut, found);
  return {f.features, f.final_state, f.checkpoints, stats};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> register_race_check_backward(
    const OptTensor& grad_features, const OptTensor& grad_final_state, const Tensor& angles,
    const OptTensor& ent_angles, const Tensor& final_state, const Tensor& checkpoints, const OptTensor& lengths,
    c10::string_view entangler, bool pair_features, int64_t checkpoint_every, int64_t lanes_per_state,
    c10::string_view mutation) {
  regprog::check_emulated_lanes("_register_race_check_backward", lanes_per_state);
  const std::string mut(mutation);
  const MutationSpec spec = parse_mutation(mut);
  BackwardBuffers b = prepare_backward(grad_features, grad_final_state, angles, ent_angles, final_state,
                                       checkpoints, lengths, entangler, pair_features, checkpoint_every);
  const int lanes = static_cast<int>(std::min<int64_t>(lanes_per_state, b.shape.N));
  std::vector<Findings> found;
  AT_DISPATCH_FLOATING_TYPES(b.angles.scalar_type(), "qlam_register_race_check_backward",
                             [&] { dispatch_checked<true>(backward_args<scalar_t>(b), lanes, spec, found); });
  Tensor stats = report("backward", lanes, mut, found);
  return {b.grad_angles, b.grad_ent_angles, b.grad_init_state, stats};
}

}  // namespace

TORCH_LIBRARY_IMPL(qlam, CPU, m) {
  m.impl("_register_race_check_forward", &register_race_check_forward);
  m.impl("_register_race_check_backward", &register_race_check_backward);
}

}  // namespace qlam
