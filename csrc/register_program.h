// The scan of one (b, h) state with its amplitudes in registers (issue 15),
// written once for SIMT lanes: the forward (features, final state, checkpoints)
// and the backward by uncomputation (angle, rzz-angle and initial-state
// gradients; docs/design.md §3), both computing what state_program.h computes.
//
// Layout. A state of n qubits is spread over a group of G lanes (G a power of
// two, 1..32, G <= 2**n: the host uses fewer lanes for smaller states). Each lane
// holds R = 2**n / G amplitudes in a lane-private array; R is a template
// parameter, so every register index below is a compile-time constant once the
// loops over r (and the static_for over local qubits) are unrolled, and on CUDA
// the array stays in registers. The amplitude of logical index i sits in lane
// `id` at register r with i = id * R + r:
//   - the K = log2 R low qubits 0..K-1 are "local": bit j of r. They never move.
//   - the g = n - K high qubits K..n-1 are "global": bit (q - K) of the lane's
//     logical index `id` in the group.
// `id` is a GF(2)-linear function of the physical lane p (id = A p, A = identity
// at the start): the CNOTs between two global qubits are folded into it (see
// below). Because A is linear, the lane holding logical id ^ (1 << b) is p ^ xmask(b)
// with xmask(b) = A^-1 e_b, the same mask for every lane: an exchange along
// global qubit b is one xor-shuffle, and the program keeps the g masks
// (LaneMasks, uniform over the group) instead of a permutation table.
//
// Why this and not a qubit remap (swap a global with a local qubit, as qsim and
// cuStateVec do): the local qubits stay at fixed register bits, so no gate ever
// needs a runtime register index (a runtime index would push the array to local
// memory on CUDA), and the phases below are the whole program. A remap would
// halve the rotation shuffles (R/2 per swap instead of R per gate) at the price
// of a runtime qubit-to-register-bit map in every phase; left for later.
//
// Phases and their cost per lane (c = complex shuffles: 2 SHFL in float32, 4 in
// float64; FMA = FP32/FP64 multiply-add class instructions):
//   rotation on a local qubit:  2x2 complex matrix on R/2 register pairs, 8R FMA.
//   rotation on global qubit b: partner = shfl_xor(psi, xmask(b)) (R c), then
//     psi = m_own psi + m_partner partner with the lane's row of the matrix, 8R FMA.
//   cnot ring, in the reference's order (pairs (q, q+1), then (n-1, 0)):
//     both local:                        register swaps, no shuffle.
//     (K-1, K) local control, global target: the registers with bit K-1 set
//       take the partner's along xmask(0): R/2 c. The ring's only data exchange.
//     both global:                       relabel: id ^= bit(id, q - K) << (q + 1 - K),
//       xmask(q - K) ^= xmask(q + 1 - K); no data moves.
//     (n-1, 0) global control, local target: lanes whose control bit is set swap
//       registers r <-> r ^ 1; no shuffle.
//   cz, rzz: diagonal, per amplitude from its logical index (cz_ring_sign;
//     rzz_factors: rzz_factor's arithmetic, each pair's cos, sin loaded once
//     per layer), no shuffle.
//   float32 only, once per token: the squared norm (a double) butterfly-summed
//     (g double shuffles) and the state scaled back, as state_program.h does.
//   features: per-lane partial sums, already turned into feature values (they
//     are linear in the sums): qubit q local: register pairs; global: one
//     partner fetch (R c). The qubits' 3 n values sit in one array and cross
//     the lanes by one reduce-scatter (recursive halving) per token: about
//     3 QubitSlots real shuffles, 3 min(K + 5, 12), where a butterfly per qubit
//     took 3 n g. Pair (q, q+1) (pair features on): both local: registers;
//     (K-1, K): R c; both global: 3R c (partners along each bit and both); each
//     pair's 9 values by a reduce-scatter of their own.
// Per token and lane, L layers, cnot ring (g >= 1):
//   exchanges: L g R + L R/2 (ring, K >= 1) + g R (features) c,
//              plus R (K >= 1) + 3 R (g - 1) c with pair features;
//   reductions: one reduce-scatter of 3 QubitSlots reals (+ (n - 1) of 9 with
//     pair features), + g double (float32 norm).
// At n = 8, L = 2, float32, SHFL instructions per lane and token (pair features
// off / on; counted by the CPU emulation's lanes, tests/test_cost_model.py),
// rotation FMAs per lane and token:
//   G =  1 (R = 256):    0 /    0 SHFL, 32768 FMA
//   G =  2 (R = 128): 1044 / 1335 SHFL, 16384 FMA
//   G =  4 (R =  64):  926 / 1494 SHFL,  8192 FMA
//   G =  8 (R =  32):  673 / 1191 SHFL,  4096 FMA
//   G = 16 (R =  16):  451 /  848 SHFL,  2048 FMA
//   G = 32 (R =   8):  290 /  582 SHFL,  1024 FMA
// Of G = 32's 290: rotations 160, ring 16, feature partners 80, feature
// reductions 24 (120 with a butterfly per qubit: the table was 386 / 909 at
// G = 32 and 520 / 1092 at G = 16), norm 10. Half-size partner exchanges for
// <X>, <Y> of global qubits would cut the partners' 80.
// Registers: an exchange keeps psi and one partner array live (2R complex), a
// pair of global qubits' features four (psi, pa, pb, pab); nvcc 13, sm_90,
// float32, ptxas (the built kernels' counts are held in tests/cuda/ptxas_budget.json;
// with the features' reduce-scatter, the L2 prefetch, the paired layer loads and the norm's
// series, R = 1 / 2 / 4 / 8 / 16 use 79 / 80 / 93 / 121 / 228 registers, no spills (62 / 67 /
// 95 / 161 / 226 with a butterfly per qubit); R = 32 spills): so at n = 8 a state wants G >= 16.
//
// Backward (scan_backward_state). psi (the saved final state) and the adjoint lam
// (grad_final_state) sit in the same layout under one labelling, which starts as
// the identity (the backward loads and stores states by logical index, so it need
// not replay the forward's); it walks the tokens last to first:
//   checkpoint: psi <- the saved state of the current labelling's amplitudes.
//   feature sources, lam += 2 sum_k g_k P_k psi, grouped by where psi comes
//     from: the lane's registers (local qubits and pairs, diagonal entries of
//     global ones), the partner along each global qubit b (qubit b's and both
//     pairs' terms that flip bit b: R c each) and, with pair features, the
//     partner along both bits of each global pair (R c each): g R (+ (g - 1) R) c.
//     One partner array is live at a time.
//   per layer, last first: the entangler undone on psi and lam (cnot ring: its
//     steps in reverse, each its own inverse: the (K-1, K) exchange now R c, the
//     relabellings id ^= bit(id, bc) << bt, xmask(bc) ^= xmask(bt) undone by
//     themselves in reverse order; rzz: each lane's partial sums of
//     z z' Im(conj(lam) psi) first); then the rotations, global b = g-1..0 then
//     local: psi <- m^dagger psi, lam <- m^dagger lam; a global one fetches the
//     partner's psi and lam (2R c) and each lane applies its row. Each lane adds
//     its partial S[2a+b] = sum conj(lam_a) psi_b (for a global qubit, the lane
//     of bit beta holds S[beta][beta] and S[1-beta][beta]) turned into partial
//     angle gradients (linear in S: gates.h rot_grad_parts from the six trig
//     values the owner lane stores beside the matrix) into a lane-private array
//     of Stride slots per qubit (Stride 3, or 4 with rzz: the pair's sum).
//   gradient reduction, deferred to the end of each layer: one reduce-scatter
//     (recursive halving over log2 G levels, constant indices) of the whole
//     array, Stride min(K + 5, 12) values, then lane p writes the values
//     p, p + G, ...: about that many real shuffles per layer in log2 G rounds,
//     where a butterfly per gate takes 3 n log2 G shuffles in n log2 G rounds.
//   float32: the state scaled back to the final state's norm after each token
//     (g double shuffles), as state_program.h's backward does.
// Per token and lane, L layers, cnot ring (g >= 1): exchanges L R (ring, K >= 1)
// + 2 L g R (rotations) + g R (+ (g - 1) R with pair features, sources) c, plus
// the reductions and the norm. At n = 8, L = 2, float32, SHFL instructions per
// lane and token (pair features off / on; counted by the CPU emulation's lanes):
//   G =  1 (R = 256):    0 /    0
//   G =  2 (R = 128): 1830 / 1830
//   G =  4 (R =  64): 1592 / 1720
//   G =  8 (R =  32): 1148 / 1276
//   G = 16 (R =  16):  766 /  862
//   G = 32 (R =   8):  490 /  554
// Of G = 32's 490: rotations 320, ring 32, feature sources 80, gradient
// reductions 48 (240 with a butterfly per gate), norm 10. The rotations double
// the forward's (psi and lam both cross); a qubit remap would halve them here too.
// Registers: a global rotation keeps psi, lam and both partner arrays live (4R
// complex) beside the gradient array; nvcc 13, sm_90, float32, ptxas (counts held in
// tests/cuda/ptxas_budget.json): R = 1 / 2 / 4 / 8 / 16 use 96 / 96 / 118 / 128 / 255
// registers, no spills (R = 32 spills); float64 R = 8 also takes all 255.
//
// Gate matrices: the group's lanes build two layers' gate matrices (and rzz cos,
// sin) at once into the group's shared scratch, one buffer per layer, then one
// sync, and every lane reads them (the cost model's "owner lane + shared
// memory"). Loading two layers together puts both layers' angle loads in flight
// at once: one global-memory round trip and one trig chain on each token's
// dependent path at L = 2 instead of two. Since the pair rewrites both buffers,
// a sync comes first: every lane has then finished reading the previous pair.
// (L = 1 pays that sync for nothing: one per token.)
//
// Executor interface (a group of G lanes that runs one state):
//   int lanes() const;                                  // G
//   class Lane { int index() const; };                  // made only by run()
//   template <class X, int N> struct Private {          // a lane-private X[N]
//     using value_type = X; static constexpr int size = N;
//     X* operator[](Lane);                              // this lane's array
//   };
//   template <class F> void run(F f);                   // f(Lane) on every lane
//   template <class P, class Take> void shfl_xor(P& dst, const P& src, int mask, Take take);
//       // for every r < P::size with take(r) (a function of r only, so uniform):
//       // dst[lane][r] = src[lane ^ mask][r], all lanes reading before any writes
//       // (__shfl_xor_sync semantics; dst may be src). 0 < mask < G.
//   template <class P> P::value_type uniform(const P& p, int c);
//       // p[.][c] where every lane holds the same value (after butterfly_sum)
//   void sync();                                        // orders the group's shared scratch
// Every access to the shared scratch goes through scratch_load / scratch_at
// (below), which are plain loads and stores unless the executor checks them
// (cpu/register_race_check.cpp records which lane touches which byte between syncs).
// Register code only reaches its own lane's Private arrays (Lane is the key), so
// the CPU emulation (cpu/register_emulation.cpp), which runs the lanes of a
// phase one after another over a [lanes][N] array and does each shfl_xor as one
// whole-group operation, computes exactly what the SIMT lanes compute.
// WarpGroupExecutor<kWholeWarp> (end of this file) is the CUDA side: each thread runs its own
// lane, Private is a plain array, shfl_xor is __shfl_xor_sync over the group.
#pragma once

#include <cstdint>

#include "gates.h"
#include "scan_args.h"

#if defined(__CUDACC__)
#define QLAM_UNROLL _Pragma("unroll")
#define QLAM_NO_UNROLL _Pragma("unroll 1")
#else
#define QLAM_UNROLL
#define QLAM_NO_UNROLL
#endif

namespace qlam {
namespace regprog {

// ---------------------------------------------------------------- compile-time helpers

template <int V>
struct Int {
  static constexpr int value = V;
};

template <int R>
struct Log2 {
  static_assert(R > 1 && R % 2 == 0, "R must be a power of two");
  static constexpr int value = 1 + Log2<R / 2>::value;
};
template <>
struct Log2<1> {
  static constexpr int value = 0;
};

// f(Int<I>{}) for I = Begin .. End-1, unrolled: local qubit numbers are constants.
template <int Begin, int End, class F>
QLAM_HD void static_for(F&& f) {
  if constexpr (Begin < End) {
    f(Int<Begin>{});
    static_for<Begin + 1, End>(f);
  }
}

struct AllRegisters {
  QLAM_HD constexpr bool operator()(int) const { return true; }
};
template <int J>
struct RegistersWithBit {
  QLAM_HD constexpr bool operator()(int r) const { return ((r >> J) & 1) != 0; }
};

// ---------------------------------------------------------------- group state

// xmask(b) for each global qubit b: 5 bits each (masks are below 32), one word,
// so reading the mask of a runtime b is a shift, not an indexed array.
struct LaneMasks {
  uint32_t packed;
  QLAM_HD int get(int b) const { return int((packed >> (5 * b)) & 31u); }
  QLAM_HD void set(int b, int m) { packed = (packed & ~(31u << (5 * b))) | (uint32_t(m) << (5 * b)); }
  QLAM_HD static LaneMasks identity(int g) {
    LaneMasks x{0};
    for (int b = 0; b < g; ++b) x.set(b, 1 << b);
    return x;
  }
};

// Everything lane-private (registers on CUDA) plus the uniform masks.
template <typename T, int R, class Exec>
struct RegisterState {
  using Amps = typename Exec::template Private<Cplx<T>, R>;
  Amps psi;           // the lane's amplitudes, register r = local index r
  Amps pa, pb, pab;   // amplitudes of partner lanes fetched by shfl_xor (pb, pab: pair features)
  typename Exec::template Private<int, 1> id;  // the lane's logical index in the group
  LaneMasks xmask;    // uniform: physical xor mask of each global qubit
};

// The group's shared scratch: two layers' gate matrices and rzz cos, sin (double-buffered).
template <typename T>
struct GroupScratch {
  Cplx<T> mats[2][4 * kMaxQubits];
  T gzz[2][2 * kMaxQubits];
};

// Accesses to the shared scratch. An executor that checks them (the race checker,
// cpu/register_race_check.cpp) declares `static constexpr bool kChecksScratch = true`
// and the members scratch_load(p), scratch_store(p, v), and scratch_reads(p, count),
// scratch_writes(p, count) for the ranges that gates.h functions read or write
// through plain pointers (rot_matrix's writes; no plain reads are left). For every other executor
// (WarpGroupExecutor, the plain emulation) these are the plain load and store and
// nothing: the generated code is the raw accesses'.
template <class Exec, class = void>
struct ChecksScratch {
  static constexpr bool value = false;
};
template <class Exec>
struct ChecksScratch<Exec, decltype(void(Exec::kChecksScratch))> {
  static constexpr bool value = Exec::kChecksScratch;
};

template <class Exec, class X>
QLAM_HD X scratch_load(Exec& ex, const X* p) {
  if constexpr (ChecksScratch<Exec>::value) {
    return ex.scratch_load(p);
  } else {
    (void)ex;
    return *p;
  }
}
template <class Exec, class X>
QLAM_HD void scratch_store(Exec& ex, X* p, X v) {  // v: deduced from p ({re, im} works)
  if constexpr (ChecksScratch<Exec>::value) {
    ex.scratch_store(p, v);
  } else {
    (void)ex;
    *p = v;
  }
}
// `scratch_at(ex, p) = v` stores as `*p = v` does: v is evaluated before the address
// (C++17 orders an assignment's right operand first), which keeps nvcc's output the same.
template <class Exec, class X>
struct ScratchRef {
  Exec& ex;
  X* p;
  QLAM_HD void operator=(X v) const { scratch_store(ex, p, v); }
};
template <class Exec, class X>
QLAM_HD ScratchRef<Exec, X> scratch_at(Exec& ex, X* p) {
  return {ex, p};
}
template <class Exec, class X>
QLAM_HD void scratch_reads(Exec& ex, const X* p, int count) {
  if constexpr (ChecksScratch<Exec>::value) ex.scratch_reads(p, count);
  (void)ex, (void)p, (void)count;
}
template <class Exec, class X>
QLAM_HD void scratch_writes(Exec& ex, const X* p, int count) {
  if constexpr (ChecksScratch<Exec>::value) ex.scratch_writes(p, count);
  (void)ex, (void)p, (void)count;
}

// ---------------------------------------------------------------- reductions

// Sums a Private array over the group: after log2 G xor levels every lane holds
// the totals, bit-identical on every lane (each level adds the same two values,
// in either order, and floating-point addition commutes).
template <class Exec, class P>
QLAM_HD void butterfly_sum(Exec& ex, P& acc) {
  using Lane = typename Exec::Lane;
  P other;
  for (int m = 1; m < ex.lanes(); m <<= 1) {
    ex.shfl_xor(other, acc, m, AllRegisters{});
    ex.run([&](Lane lane) {
      auto* v = acc[lane];
      const auto* o = other[lane];
      QLAM_UNROLL
      for (int c = 0; c < P::size; ++c) v[c] += o[c];
    });
  }
}

// G <= 32 lanes: at most five global qubits.
constexpr int kMaxGlobalQubits = 5;

// Qubit slots of a per-lane array indexed by qubit (the features' sums, the backward's
// gradient sums): a group of 2**n / R <= 32 lanes has n <= log2 R + 5 qubits.
template <int R>
struct QubitSlots {
  static constexpr int K = Log2<R>::value;
  static constexpr int value = K + kMaxGlobalQubits < kMaxQubits ? K + kMaxGlobalQubits : kMaxQubits;
};

// Reduce-scatter (recursive halving) of the lanes' partial sums acc[0..P::size):
// afterwards lane p holds in acc[c] the group's total of value c * G + p, for
// c < ceil(P::size / G). Level j pairs the lanes across bit j of the lane index:
// a lane keeps the entries (2c or 2c + 1) of its parity, sends the other one and
// adds the partner's, so the entries halve: ceil(size_j / 2) real shuffles at
// level j, about P::size in all, where a butterfly takes P::size log2 G. Every
// size and index is a compile-time constant: runtime guards (the live count of
// a smaller n) were hoisted out of the token loop by nvcc, one predicate per
// entry and level, which took R = 8 from 128 registers to 255 and spills. The
// price: arrays sized by QubitSlots reduce the zero slots of the qubits a smaller
// group (G < 32) does not have too.
template <class Exec, class P>
QLAM_HD void reduce_scatter(Exec& ex, P& acc) {
  using Lane = typename Exec::Lane;
  using V = typename P::value_type;
  using Half = typename Exec::template Private<V, (P::size + 1) / 2>;
  static_for<0, kMaxGlobalQubits>([&](auto J) {
    constexpr int j = decltype(J)::value;
    constexpr int size = (P::size + (1 << j) - 1) >> j;  // entries before level j
    constexpr int keep = (size + 1) / 2;
    if ((1 << j) >= ex.lanes()) return;
    Half send, recv;
    ex.run([&](Lane lane) {
      const bool odd = (lane.index() >> j) & 1;
      const V* v = acc[lane];
      V* out = send[lane];
      QLAM_UNROLL
      for (int c = 0; c < keep; ++c) {
        const V hi = 2 * c + 1 < size ? v[2 * c + 1] : V(0);
        out[c] = odd ? v[2 * c] : hi;  // the entry the partner keeps
      }
    });
    ex.shfl_xor(recv, send, 1 << j, [](int c) { return c < keep; });
    ex.run([&](Lane lane) {
      const bool odd = (lane.index() >> j) & 1;
      V* v = acc[lane];
      const V* in = recv[lane];
      QLAM_UNROLL
      for (int c = 0; c < keep; ++c) {  // in place: v[c] is written after v[2c], v[2c+1] are read
        const V hi = 2 * c + 1 < size ? v[2 * c + 1] : V(0);
        v[c] = (odd ? hi : v[2 * c]) + in[c];
      }
    });
  });
}

// After reduce_scatter: lane p writes the values p, p + G, ... below count, value
// c * G + p from acc[c]. A runtime loop writes acc[0] and shifts the array down by
// one, so every register index stays a constant: an unrolled loop over the entries
// with a guard each (`c * G + p < count`) had its guards hoisted out of the token
// loop by nvcc, which took the forward's R = 4 from 86 to 124 registers and R = 16
// from 228 to 251 (the backward's write_layer_grads found the same).
template <class Exec, class P, class Write>
QLAM_HD void write_scattered(Exec& ex, P& acc, int count, Write write) {
  using Lane = typename Exec::Lane;
  ex.run([&](Lane lane) {
    auto* v = acc[lane];
    for (int at = lane.index(); at < count; at += ex.lanes()) {
      write(at, v[0]);
      QLAM_UNROLL
      for (int c = 0; c + 1 < P::size; ++c) v[c] = v[c + 1];
    }
  });
}

template <typename T>
QLAM_HD T norm2(Cplx<T> v) {
  return v.re * v.re + v.im * v.im;
}

// ---------------------------------------------------------------- prefetch

// A hint that brings the bytes [p, p + bytes) into L2 ahead of their loads: the
// token the scan runs next, while this one runs, so that its layers' angle loads
// (the head of each layer's critical path: load, trig, sync, gates) wait for L2
// instead of DRAM. The group's lanes take the 128-byte lines in turn. It changes
// no value, and on the host (the emulation) it is nothing. ptxas: 7-14 more
// registers at R <= 4 (R = 8 and 16 unchanged), where the host's choice of G
// leaves few warps per SM anyway.
template <class Exec>
QLAM_HD void prefetch_to_l2(Exec& ex, const void* p, int64_t bytes) {
#if defined(__CUDA_ARCH__)
  using Lane = typename Exec::Lane;
  constexpr int64_t kLine = 128;
  const char* first = reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(p) & ~uintptr_t(kLine - 1));
  const int64_t span = reinterpret_cast<const char*>(p) + bytes - first;
  ex.run([&](Lane lane) {
    for (int64_t at = lane.index() * kLine; at < span; at += ex.lanes() * kLine)
      asm volatile("prefetch.global.L2 [%0];" ::"l"(first + at));
  });
#else
  (void)ex, (void)p, (void)bytes;
#endif
}

// Token t's angles (and rzz angles) for the prefetch above.
template <typename T, class Exec>
QLAM_HD void prefetch_token(Exec& ex, const ScanArgs<T>& a, int64_t s, int64_t t) {
  prefetch_to_l2(ex, a.angles + a.angle_offset(s, t, 0), a.L * a.n * 3 * int64_t(sizeof(T)));
  if (a.entangler == Entangler::RZZ)
    prefetch_to_l2(ex, a.ent_angles + a.ent_offset(s, t, 0), a.L * a.P * int64_t(sizeof(T)));
}

// ---------------------------------------------------------------- gates

// Layers l and l2 of token t (l2 = -1: layer l alone) into buffers 0 and 1: lane
// i builds items i, i + G, ... of the layers' gates (layer l's
// n, then l2's), then of their rzz pairs (cos, sin); then one sync (see the
// opening comment).
// The backward (kTrig) also stores gate q's six trig values (cos, sin of theta/2,
// of a = (phi+omega)/2 and of d = (phi-omega)/2, as gates.h rot_matrix takes them)
// in trig[6q..6q+5], for every lane's partial gradients (gates.h rot_grad_parts).
// (Numbering the rzz pairs on from the gates, so that no lane builds both at
// G = 32, n = 6, took 5 more registers at R = 2 for ~50 instructions of the chain.)
template <bool kTrig, typename T, class Exec, class Scratch>
QLAM_HD void load_layers(Exec& ex, const ScanArgs<T>& a, int64_t s, int64_t t, int64_t l, int64_t l2,
                         Scratch& scratch) {
  using Lane = typename Exec::Lane;
  const int n = a.n, gates = l2 >= 0 ? 2 * n : n;
  ex.run([&](Lane lane) {
    for (int i = lane.index(); i < gates; i += ex.lanes()) {
      const int second = i >= n;
      const int q = i - second * n;
      Cplx<T>* const mats_l = scratch.mats[second];
      const T* ang = a.angles + a.angle_offset(s, t, second ? l2 : l) + 3 * q;
      if constexpr (kTrig) {
        const T phi = ang[0], theta = ang[1], omega = ang[2];
        const T ha = (phi + omega) / 2, hd = (phi - omega) / 2;
        T* tr = scratch.trig[second] + 6 * q;
        scratch_at(ex, tr + 0) = qcos(theta / 2);
        scratch_at(ex, tr + 1) = qsin(theta / 2);
        scratch_at(ex, tr + 2) = qcos(ha);
        scratch_at(ex, tr + 3) = qsin(ha);
        scratch_at(ex, tr + 4) = qcos(hd);
        scratch_at(ex, tr + 5) = qsin(hd);
        T parts[8];
        rot_matrix_parts(scratch_load(ex, tr + 0), scratch_load(ex, tr + 1), scratch_load(ex, tr + 2),
                         scratch_load(ex, tr + 3), scratch_load(ex, tr + 4), scratch_load(ex, tr + 5), parts);
        for (int k = 0; k < 4; ++k) scratch_at(ex, mats_l + (4 * q + k)) = {parts[2 * k], parts[2 * k + 1]};
      } else {
        rot_matrix(ang[0], ang[1], ang[2], mats_l + 4 * q);
        scratch_writes(ex, mats_l + 4 * q, 4);
      }
    }
    if (a.entangler == Entangler::RZZ) {
      const int P = a.P, pairs = l2 >= 0 ? 2 * P : P;
      for (int i = lane.index(); i < pairs; i += ex.lanes()) {
        const int second = i >= P;
        const int p = i - second * P;
        T* const gzz_l = scratch.gzz[second];
        const T half = a.ent_angles[a.ent_offset(s, t, second ? l2 : l) + p] / 2;
        scratch_at(ex, gzz_l + p) = qcos(half);
        scratch_at(ex, gzz_l + (P + p)) = qsin(half);
      }
    }
  });
  ex.sync();
}

// The 2x2 matrix m on local qubit J: pairs (r, r | 1 << J) of the lane's registers.
template <int J, int R, typename T, class Exec>
QLAM_HD void gate_local(Exec& ex, Cplx<T>* v, const Cplx<T>* mats) {
  const Cplx<T> m0 = scratch_load(ex, mats + 0), m1 = scratch_load(ex, mats + 1), m2 = scratch_load(ex, mats + 2),
                m3 = scratch_load(ex, mats + 3);
  QLAM_UNROLL
  for (int r = 0; r < R; ++r) {
    if ((r >> J) & 1) continue;
    const Cplx<T> x = v[r], y = v[r | (1 << J)];
    v[r] = cmul_add(m0, x, m1, y);
    v[r | (1 << J)] = cmul_add(m2, x, m3, y);
  }
}

// The 2x2 matrix on global qubit b: each lane computes its own row from its
// amplitude and the partner's (row 0 where its bit b is 0, row 1 where it is 1).
template <typename T, int R, class Exec>
QLAM_HD void gate_global(Exec& ex, RegisterState<T, R, Exec>& st, int b, const Cplx<T>* mats) {
  using Lane = typename Exec::Lane;
  ex.shfl_xor(st.pa, st.psi, st.xmask.get(b), AllRegisters{});
  ex.run([&](Lane lane) {
    const bool one = (st.id[lane][0] >> b) & 1;
    const Cplx<T> own = one ? scratch_load(ex, mats + 3) : scratch_load(ex, mats + 0),
                  partner = one ? scratch_load(ex, mats + 2) : scratch_load(ex, mats + 1);
    Cplx<T>* v = st.psi[lane];
    const Cplx<T>* w = st.pa[lane];
    QLAM_UNROLL
    for (int r = 0; r < R; ++r) v[r] = cmul_add(own, v[r], partner, w[r]);
  });
}

// X on local qubit J: swaps registers r and r | 1 << J.
template <int J, int R, typename T>
QLAM_HD void flip_local(Cplx<T>* v) {
  QLAM_UNROLL
  for (int r = 0; r < R; ++r) {
    if ((r >> J) & 1) continue;
    const Cplx<T> tmp = v[r];
    v[r] = v[r | (1 << J)];
    v[r | (1 << J)] = tmp;
  }
}

// CNOT(C -> Tq) on local qubits: swaps the registers with bit C set that differ in bit Tq.
template <int C, int Tq, int R, typename T>
QLAM_HD void cnot_local(Cplx<T>* v) {
  QLAM_UNROLL
  for (int r = 0; r < R; ++r) {
    if (!((r >> C) & 1) || ((r >> Tq) & 1)) continue;
    const Cplx<T> tmp = v[r];
    v[r] = v[r | (1 << Tq)];
    v[r | (1 << Tq)] = tmp;
  }
}

// CNOT between global qubits bc -> bt: the amplitudes stay, their logical lane
// index changes (id -> CNOT(id)), and so does the lane that is a global qubit's
// partner: xmask(bc) ^= xmask(bt) (A^-1 -> A^-1 CNOT).
template <typename T, int R, class Exec>
QLAM_HD void cnot_relabel(Exec& ex, RegisterState<T, R, Exec>& st, int bc, int bt) {
  using Lane = typename Exec::Lane;
  ex.run([&](Lane lane) {
    int& id = st.id[lane][0];
    id ^= ((id >> bc) & 1) << bt;
  });
  st.xmask.set(bc, st.xmask.get(bc) ^ st.xmask.get(bt));
}

// The cnot ring in the reference's order (the opening comment lists the cases).
template <typename T, int R, class Exec>
QLAM_HD void cnot_ring(Exec& ex, const ScanArgs<T>& a, RegisterState<T, R, Exec>& st) {
  using Lane = typename Exec::Lane;
  constexpr int K = Log2<R>::value;
  const int n = a.n, g = n - K;
  // (q, q+1), both local.
  static_for<0, (K >= 1 ? K - 1 : 0)>([&](auto Q) {
    constexpr int q = decltype(Q)::value;
    ex.run([&](Lane lane) { cnot_local<q, q + 1, R>(st.psi[lane]); });
  });
  // (K-1, K): amplitude (id, r) with bit K-1 of r set comes from logical lane id ^ 1.
  if constexpr (K >= 1) {
    if (g >= 1) ex.shfl_xor(st.psi, st.psi, st.xmask.get(0), RegistersWithBit<K - 1>{});
  }
  // (q, q+1), both global.
  for (int b = 0; b + 1 < g; ++b) cnot_relabel(ex, st, b, b + 1);
  if (num_pairs(n) != n) return;  // the ring closes with (n-1, 0) only for n >= 3
  if (g == 0) {
    if constexpr (K >= 3) ex.run([&](Lane lane) { cnot_local<K - 1, 0, R>(st.psi[lane]); });
  } else if (K == 0) {
    cnot_relabel(ex, st, g - 1, 0);
  } else {
    // Global control n-1, local target 0: a register swap in the lanes whose control bit is set.
    if constexpr (K >= 1)
      ex.run([&](Lane lane) {
        if ((st.id[lane][0] >> (g - 1)) & 1) flip_local<0, R>(st.psi[lane]);
      });
  }
}

// The rzz layer's factors f[r] for the lane's R registers (logical indices id * R + r): gates.h
// rzz_factor's arithmetic for each (from (1, 0), one unit phase per pair, in pair order, the same values
// bit for bit; `inverse` for the inverse layer), with the loops interchanged: pair p's cos and sin are
// loaded from the scratch once per layer (uniform over the group: two registers) and used for every
// register. A call of rzz_factor per register read all 2 P values from shared memory again for each one
// (LDS.32 = 10 R in float32). z_p z_p' of index id * R + r = (id * R) ^ r splits into the lane's part
// (bits of id * R, once per pair) and the register's (bits of the constant r).
template <int R, typename T, class Exec>
QLAM_HD void rzz_factors(Exec& ex, int n, int P, const T* gzz, int id, bool inverse, Cplx<T>* f) {
  const int base = id * R;
  QLAM_UNROLL
  for (int r = 0; r < R; ++r) f[r] = {T(1), T(0)};
  for (int p = 0; p < P; ++p) {
    const int q = p + 1 < n ? p + 1 : 0;  // pair_second without the modulo (a division on the GPU)
    const T c = scratch_load(ex, gzz + p), s = scratch_load(ex, gzz + (P + p));
    // z z' sin(g/2), negated for the inverse, where register r's own bits p, q are equal
    const T zs0 = ((((base >> p) ^ (base >> q)) & 1) != int(inverse)) ? -s : s;
    QLAM_UNROLL
    for (int r = 0; r < R; ++r) {
      const T zs = (((r >> p) ^ (r >> q)) & 1) ? -zs0 : zs0;
      const T re = f[r].re * c + f[r].im * zs;
      f[r].im = f[r].im * c - f[r].re * zs;
      f[r].re = re;
    }
  }
}

template <typename T, int R, class Exec>
QLAM_HD void apply_entangler(Exec& ex, const ScanArgs<T>& a, RegisterState<T, R, Exec>& st, const T* gzz) {
  using Lane = typename Exec::Lane;
  const int n = a.n;
  if (a.entangler == Entangler::CNOT) {
    cnot_ring(ex, a, st);
  } else if (a.entangler == Entangler::CZ) {
    ex.run([&](Lane lane) {
      const int64_t base = int64_t(st.id[lane][0]) * R;
      Cplx<T>* v = st.psi[lane];
      QLAM_UNROLL
      for (int r = 0; r < R; ++r)
        if (cz_ring_sign(base + r, n) < 0) v[r] = {-v[r].re, -v[r].im};
    });
  } else if (a.entangler == Entangler::RZZ) {
    ex.run([&](Lane lane) {
      Cplx<T> f[R];
      rzz_factors<R>(ex, n, a.P, gzz, st.id[lane][0], false, f);
      Cplx<T>* v = st.psi[lane];
      QLAM_UNROLL
      for (int r = 0; r < R; ++r) v[r] = cmul(f[r], v[r]);
    });
  }
}

// ---------------------------------------------------------------- norm (float32)

// Squared norm of the state, summed in double over the lanes (as state_program.h).
template <typename T, int R, class Exec>
QLAM_HD double squared_norm(Exec& ex, RegisterState<T, R, Exec>& st) {
  using Lane = typename Exec::Lane;
  typename Exec::template Private<double, 1> acc;
  ex.run([&](Lane lane) {
    const Cplx<T>* v = st.psi[lane];
    double sum = 0;
    QLAM_UNROLL
    for (int r = 0; r < R; ++r) sum += double(v[r].re) * v[r].re + double(v[r].im) * v[r].im;
    acc[lane][0] = sum;
  });
  butterfly_sum(ex, acc);
  return ex.uniform(acc, 0);
}

// float32 rounding drifts the norm; once per token the state is scaled back to
// its starting norm (state_program.h's restore_norm; gates.h norm_scale). float64
// gets no correction.
template <typename T, int R, class Exec>
QLAM_HD void restore_norm(Exec& ex, RegisterState<T, R, Exec>& st, double inverse_target) {
  using Lane = typename Exec::Lane;
  if (sizeof(T) != sizeof(float)) return;
  const double now = squared_norm(ex, st);
  if (!(now > 0) || !(inverse_target > 0)) return;
  const T scale = T(norm_scale(inverse_target, now));
  ex.run([&](Lane lane) {
    Cplx<T>* v = st.psi[lane];
    QLAM_UNROLL
    for (int r = 0; r < R; ++r) v[r] = {v[r].re * scale, v[r].im * scale};
  });
}

// ---------------------------------------------------------------- features

// Features are linear in the partial sums, so each lane turns its partial sums
// into partial features and only those cross the lanes: the qubits' 3 each, in one
// array of QubitSlots slots reduced by one reduce-scatter at the end; each pair's 9
// by a reduce-scatter of its own (a single array of every pair's would hold
// 9 (n - 1) values live beside the partner amplitudes).
template <typename T, int R, class Exec>
QLAM_HD void measure_features(Exec& ex, const ScanArgs<T>& a, RegisterState<T, R, Exec>& st, T* out) {
  using Lane = typename Exec::Lane;
  constexpr int K = Log2<R>::value;
  constexpr int kSlots = QubitSlots<R>::value;
  using Acc = typename Exec::template Private<T, 3 * kSlots>;
  using Acc9 = typename Exec::template Private<T, 9>;
  const int n = a.n, g = n - K;
  const auto to = [](T* dst) { return [dst](int at, T v) { dst[at] = v; }; };

  // <X_q>, <Y_q>, <Z_q> of the local qubits: pairs of registers. Slots past n stay zero.
  Acc acc;
  ex.run([&](Lane lane) {
    QLAM_UNROLL
    for (int c = 0; c < Acc::size; ++c) acc[lane][c] = T(0);
    static_for<0, K>([&](auto J) {
      constexpr int j = decltype(J)::value;
      const Cplx<T>* v = st.psi[lane];
      Cplx<T> w = {T(0), T(0)};
      T z = 0;
      QLAM_UNROLL
      for (int r = 0; r < R; ++r) {
        if ((r >> j) & 1) continue;
        w = cadd(w, cmul_conj(v[r], v[r | (1 << j)]));
        z += norm2(v[r]) - norm2(v[r | (1 << j)]);
      }
      qubit_features(w, z, acc[lane] + 3 * j);
    });
  });
  // Global qubits: <Z> from the lane's own amplitudes, <X>, <Y> from the partner's;
  // the lanes whose bit is 0 count each pair. A runtime loop (one body in the code):
  // each qubit's 3 values enter at slot K and push the earlier ones up a slot, so
  // every register index stays a constant; after g qubits, qubit b sits at slot
  // K + g - 1 - b, which the writes below undo.
  QLAM_NO_UNROLL
  for (int b = 0; b < g; ++b) {
    ex.shfl_xor(st.pa, st.psi, st.xmask.get(b), AllRegisters{});
    ex.run([&](Lane lane) {
      const bool one = (st.id[lane][0] >> b) & 1;
      const Cplx<T>* v = st.psi[lane];
      const Cplx<T>* w = st.pa[lane];
      Cplx<T> sum = {T(0), T(0)};
      T z = 0;
      QLAM_UNROLL
      for (int r = 0; r < R; ++r) {
        sum = cadd(sum, cmul_conj(v[r], w[r]));
        z += norm2(v[r]);
      }
      T* f = acc[lane];
      QLAM_UNROLL
      for (int c = Acc::size - 1; c >= 3 * K + 3; --c) f[c] = f[c - 3];
      qubit_features(one ? Cplx<T>{T(0), T(0)} : sum, one ? -z : z, f + 3 * K);
    });
  }
  reduce_scatter(ex, acc);
  write_scattered(ex, acc, 3 * n, [&](int at, T v) {
    const int slot = at / 3;
    out[slot < K ? at : 3 * (K + g - 1 - (slot - K)) + at % 3] = v;
  });
  if (!a.pair_features) return;

  // <A_q B_{q+1}>: groups of four amplitudes with local index rr = b_q + 2 b_{q+1}.
  T* pair_out = out + 3 * n;
  static_for<0, (K >= 1 ? K - 1 : 0)>([&](auto Q) {  // both local
    constexpr int q = decltype(Q)::value;
    Acc9 acc9;
    ex.run([&](Lane lane) {
      const Cplx<T>* v = st.psi[lane];
      T gram[kPairGramReals] = {};
      QLAM_UNROLL
      for (int r = 0; r < R; ++r) {
        if ((r >> q) & 3) continue;
        const Cplx<T> group[4] = {v[r], v[r | (1 << q)], v[r | (2 << q)], v[r | (3 << q)]};
        gram_accumulate(group, gram);
      }
      pair_features_from_gram(gram, acc9[lane]);
    });
    reduce_scatter(ex, acc9);
    write_scattered(ex, acc9, 9, to(pair_out + 9 * q));
  });
  if constexpr (K >= 1) {
    if (g >= 1) {  // (K-1, K): qubit K-1 in the registers, qubit K across lanes
      constexpr int q = K - 1;
      Acc9 acc9;
      ex.shfl_xor(st.pa, st.psi, st.xmask.get(0), AllRegisters{});
      ex.run([&](Lane lane) {
        const Cplx<T>* v = st.psi[lane];
        const Cplx<T>* w = st.pa[lane];
        T gram[kPairGramReals] = {};
        QLAM_UNROLL
        for (int r = 0; r < R; ++r) {
          if ((r >> q) & 1) continue;
          const Cplx<T> group[4] = {v[r], v[r | (1 << q)], w[r], w[r | (1 << q)]};
          gram_accumulate(group, gram);
        }
        T f[9];
        pair_features_from_gram(gram, f);
        const bool one = st.id[lane][0] & 1;
        for (int j = 0; j < 9; ++j) acc9[lane][j] = one ? T(0) : f[j];
      });
      reduce_scatter(ex, acc9);
      write_scattered(ex, acc9, 9, to(pair_out + 9 * q));
    }
  }
  for (int b = 0; b + 1 < g; ++b) {  // both global
    Acc9 acc9;
    const int m1 = st.xmask.get(b), m2 = st.xmask.get(b + 1);
    ex.shfl_xor(st.pa, st.psi, m1, AllRegisters{});
    ex.shfl_xor(st.pb, st.psi, m2, AllRegisters{});
    ex.shfl_xor(st.pab, st.psi, m1 ^ m2, AllRegisters{});
    ex.run([&](Lane lane) {
      const Cplx<T>* v = st.psi[lane];
      const Cplx<T>* wa = st.pa[lane];
      const Cplx<T>* wb = st.pb[lane];
      const Cplx<T>* wab = st.pab[lane];
      T gram[kPairGramReals] = {};
      QLAM_UNROLL
      for (int r = 0; r < R; ++r) {
        const Cplx<T> group[4] = {v[r], wa[r], wb[r], wab[r]};
        gram_accumulate(group, gram);
      }
      T f[9];
      pair_features_from_gram(gram, f);
      const bool counts = ((st.id[lane][0] >> b) & 3) == 0;
      for (int j = 0; j < 9; ++j) acc9[lane][j] = counts ? f[j] : T(0);
    });
    reduce_scatter(ex, acc9);
    write_scattered(ex, acc9, 9, to(pair_out + 9 * (K + b)));
  }
}

// ---------------------------------------------------------------- forward

// Copies the state to dst (2**n amplitudes, logical order).
template <typename T, int R, class Exec>
QLAM_HD void store_state(Exec& ex, RegisterState<T, R, Exec>& st, Cplx<T>* dst) {
  using Lane = typename Exec::Lane;
  ex.run([&](Lane lane) {
    const int64_t base = int64_t(st.id[lane][0]) * R;
    const Cplx<T>* v = st.psi[lane];
    QLAM_UNROLL
    for (int r = 0; r < R; ++r) dst[base + r] = v[r];
  });
}

// The scan of state s = b * H + h by a group of G = 2**n / R lanes (the host
// checks that ex.lanes() * R == 2**n).
template <typename T, int R, class Exec>
QLAM_HD void scan_forward_state(Exec& ex, const ScanArgs<T>& a, int64_t s, RegisterState<T, R, Exec>& st,
                                GroupScratch<T>& scratch) {
  using Lane = typename Exec::Lane;
  constexpr int K = Log2<R>::value;
  const int n = a.n, g = n - K;
  const int64_t N = a.N, len = a.length_of(s / a.H);

  ex.run([&](Lane lane) {
    st.id[lane][0] = lane.index();
    const int64_t base = int64_t(lane.index()) * R;
    Cplx<T>* v = st.psi[lane];
    QLAM_UNROLL
    for (int r = 0; r < R; ++r)
      v[r] = a.init_state ? a.init_state[s * N + base + r] : Cplx<T>{T(base + r == 0), T(0)};
  });
  st.xmask = LaneMasks::identity(g);
  const double inv_norm0 = norm_inverse(sizeof(T) == sizeof(float) ? squared_norm(ex, st) : 1.0);

  for (int64_t t = 0; t < len; ++t) {
    if (t + 1 < len) prefetch_token(ex, a, s, t + 1);
    for (int64_t l = 0; l < a.L; ++l) {
      const int buffer = int(l & 1);
      if (buffer == 0) {  // layers l and l + 1 (a pair: see the opening comment)
        ex.sync();
        load_layers<false>(ex, a, s, t, l, l + 1 < a.L ? l + 1 : -1, scratch);
      }
      const Cplx<T>* mats = scratch.mats[buffer];
      ex.run([&](Lane lane) {
        static_for<0, K>([&](auto J) {
          constexpr int j = decltype(J)::value;
          gate_local<j, R>(ex, st.psi[lane], mats + 4 * j);
        });
      });
      QLAM_NO_UNROLL  // one gate's body: nvcc unrolled this loop twice once the gate had fused multiply-adds
      for (int b = 0; b < g; ++b) gate_global(ex, st, b, mats + 4 * (K + b));
      apply_entangler(ex, a, st, scratch.gzz[buffer]);
    }
    restore_norm(ex, st, inv_norm0);
    measure_features(ex, a, st, a.features + a.feature_offset(s, t));
    if (a.checkpoints && a.is_checkpoint(t + 1)) store_state(ex, st, a.checkpoints + a.checkpoint_offset(s, t + 1));
  }
  // Positions past the length leave the state as it is; their checkpoints repeat it.
  for (int64_t done = len + 1; a.checkpoints && done <= a.T_len; ++done)
    if (a.is_checkpoint(done)) store_state(ex, st, a.checkpoints + a.checkpoint_offset(s, done));
  store_state(ex, st, a.final_state + s * N);
}

// ---------------------------------------------------------------- backward

// The backward's lane-private state: the forward's (psi, partner arrays, id, masks)
// and the adjoint lam, in the same layout and under the same labelling as psi.
template <typename T, int R, class Exec>
struct AdjointState : RegisterState<T, R, Exec> {
  typename RegisterState<T, R, Exec>::Amps lam;
};

// The backward's shared scratch: the forward's, and each gate's six trig values.
template <typename T>
struct BackwardScratch : GroupScratch<T> {
  T trig[2][6 * kMaxQubits];
};

template <typename T>
QLAM_HD Cplx<T> cconj(Cplx<T> v) {
  return {v.re, -v.im};
}

// acc += 2 c v (the feature sources' factor 2).
template <typename T>
QLAM_HD void add_twice(Cplx<T>& acc, Cplx<T> c, Cplx<T> v) {
  const Cplx<T> w = cmul(c, v);
  acc.re += 2 * w.re;
  acc.im += 2 * w.im;
}

// Entry M[rr][rr ^ X] of a pair's 4x4 source (M[4 * row + col]) for the lane's own
// row rr (a runtime value): a select over the rows, so M keeps constant indices.
template <int X, typename T>
QLAM_HD Cplx<T> pair_entry(const Cplx<T>* M, int rr) {
  Cplx<T> e = M[X];
  QLAM_UNROLL
  for (int k = 1; k < 4; ++k)
    if (rr == k) e = M[4 * k + (k ^ X)];
  return e;
}

// Copies a state (2**n amplitudes, logical order) into the registers under the current labelling.
template <typename T, int R, class Exec>
QLAM_HD void load_state(Exec& ex, RegisterState<T, R, Exec>& st, const Cplx<T>* src) {
  using Lane = typename Exec::Lane;
  ex.run([&](Lane lane) {
    const int64_t base = int64_t(st.id[lane][0]) * R;
    Cplx<T>* v = st.psi[lane];
    QLAM_UNROLL
    for (int r = 0; r < R; ++r) v[r] = src[base + r];
  });
}

// A layer's reduced gradient sums (write_scattered of Stride n values) to grad_angles
// and, with rzz, grad_ent_angles.
template <int Stride, typename T, class Exec, class P>
QLAM_HD void write_layer_grads(Exec& ex, const ScanArgs<T>& a, int64_t s, int64_t t, int64_t l, P& acc,
                               int count) {
  T* grad = a.grad_angles + a.angle_offset(s, t, l);
  write_scattered(ex, acc, count, [&](int at, T v) {
    const int q = at / Stride, k = at % Stride;
    if (k < 3) {
      grad[3 * q + k] = v;
    } else if (q < a.P) {  // dL/dg_p = 1/2 sum_i z_p z_p' Im(conj(lam_i) psi_i)
      a.grad_ent_angles[a.ent_offset(s, t, l) + q] = v / 2;
    }
  });
}

// lam += 2 sum_k g[k] P_k psi, the adjoint source of one token's features,
// grouped by where psi's amplitudes come from: (1) the lane's own registers (local
// qubits and pairs, and the diagonal entries of the global ones); (2) the partner
// along each global qubit b (qubit b, the pairs that contain it); (3) the partner
// along both qubits of each global pair. One partner array is live at a time.
template <typename T, int R, class Exec>
QLAM_HD void add_feature_sources(Exec& ex, const ScanArgs<T>& a, const T* gf, AdjointState<T, R, Exec>& st) {
  using Lane = typename Exec::Lane;
  constexpr int K = Log2<R>::value;
  const int n = a.n, g = n - K;
  const bool pairs = a.pair_features;
  const T* gp = gf + 3 * n;  // pair (q, q+1): gp + 9 q

  ex.run([&](Lane lane) {
    const Cplx<T>* v = st.psi[lane];
    Cplx<T>* w = st.lam[lane];
    const int id = st.id[lane][0];
    static_for<0, K>([&](auto J) {  // local qubit j: register pairs
      constexpr int j = decltype(J)::value;
      Cplx<T> M[4];
      qubit_feature_source(gf + 3 * j, M);
      QLAM_UNROLL
      for (int r = 0; r < R; ++r) {
        if ((r >> j) & 1) continue;
        const Cplx<T> x = v[r], y = v[r | (1 << j)];
        add_twice(w[r], M[0], x);
        add_twice(w[r], M[1], y);
        add_twice(w[r | (1 << j)], M[2], x);
        add_twice(w[r | (1 << j)], M[3], y);
      }
    });
    for (int b = 0; b < g; ++b) {  // global qubit: the diagonal entry of the lane's row
      Cplx<T> M[4];
      qubit_feature_source(gf + 3 * (K + b), M);
      const Cplx<T> c = ((id >> b) & 1) ? M[3] : M[0];
      QLAM_UNROLL
      for (int r = 0; r < R; ++r) add_twice(w[r], c, v[r]);
    }
    if (!pairs) return;
    static_for<0, (K >= 1 ? K - 1 : 0)>([&](auto Q) {  // (q, q+1) both local: groups of four registers
      constexpr int q = decltype(Q)::value;
      Cplx<T> M[16];
      pair_feature_source(gp + 9 * q, M);
      QLAM_UNROLL
      for (int r = 0; r < R; ++r) {
        if ((r >> q) & 3) continue;
        const Cplx<T> x[4] = {v[r], v[r | (1 << q)], v[r | (2 << q)], v[r | (3 << q)]};
        QLAM_UNROLL
        for (int rr = 0; rr < 4; ++rr)
          QLAM_UNROLL
          for (int c = 0; c < 4; ++c) add_twice(w[r | (rr << q)], M[4 * rr + c], x[c]);
      }
    });
    if constexpr (K >= 1) {
      if (g >= 1) {  // (K-1, K): the columns whose bit K is the lane's own (row rr = jb + 2 b_K)
        constexpr int h = 1 << (K - 1);
        Cplx<T> M[16];
        pair_feature_source(gp + 9 * (K - 1), M);
        const int row = 2 * (id & 1);
        const Cplx<T> c00 = pair_entry<0>(M, row), c01 = pair_entry<1>(M, row);
        const Cplx<T> c10 = pair_entry<1>(M, row + 1), c11 = pair_entry<0>(M, row + 1);
        QLAM_UNROLL
        for (int r = 0; r < R; ++r) {
          if (r & h) continue;
          const Cplx<T> x = v[r], y = v[r | h];
          add_twice(w[r], c00, x);
          add_twice(w[r], c01, y);
          add_twice(w[r | h], c10, x);
          add_twice(w[r | h], c11, y);
        }
      }
    }
    for (int b = 0; b + 1 < g; ++b) {  // both global: the diagonal entry
      Cplx<T> M[16];
      pair_feature_source(gp + 9 * (K + b), M);
      const Cplx<T> c = pair_entry<0>(M, (id >> b) & 3);
      QLAM_UNROLL
      for (int r = 0; r < R; ++r) add_twice(w[r], c, v[r]);
    }
  });

  for (int b = 0; b < g; ++b) {  // (2) the partner along global qubit b
    ex.shfl_xor(st.pa, st.psi, st.xmask.get(b), AllRegisters{});
    ex.run([&](Lane lane) {
      const Cplx<T>* p = st.pa[lane];
      Cplx<T>* w = st.lam[lane];
      const int id = st.id[lane][0];
      Cplx<T> M[4];
      qubit_feature_source(gf + 3 * (K + b), M);
      Cplx<T> c = ((id >> b) & 1) ? M[2] : M[1];  // the off-diagonal entry of the lane's row
      if (pairs && b + 1 < g) {                   // pair (K+b, K+b+1): its low bit flipped
        Cplx<T> M2[16];
        pair_feature_source(gp + 9 * (K + b), M2);
        c = cadd(c, pair_entry<1>(M2, (id >> b) & 3));
      }
      if (pairs && b >= 1) {  // pair (K+b-1, K+b): its high bit flipped
        Cplx<T> M2[16];
        pair_feature_source(gp + 9 * (K + b - 1), M2);
        c = cadd(c, pair_entry<2>(M2, (id >> (b - 1)) & 3));
      }
      QLAM_UNROLL
      for (int r = 0; r < R; ++r) add_twice(w[r], c, p[r]);
      if constexpr (K >= 1) {
        if (pairs && b == 0) {  // (K-1, K): the columns whose bit K is the partner's
          constexpr int h = 1 << (K - 1);
          Cplx<T> M2[16];
          pair_feature_source(gp + 9 * (K - 1), M2);
          const int row = 2 * (id & 1);
          const Cplx<T> c02 = pair_entry<2>(M2, row), c03 = pair_entry<3>(M2, row);
          const Cplx<T> c13 = pair_entry<3>(M2, row + 1), c12 = pair_entry<2>(M2, row + 1);
          QLAM_UNROLL
          for (int r = 0; r < R; ++r) {
            if (r & h) continue;
            const Cplx<T> x = p[r], y = p[r | h];
            add_twice(w[r], c02, x);
            add_twice(w[r], c03, y);
            add_twice(w[r | h], c13, x);
            add_twice(w[r | h], c12, y);
          }
        }
      }
    });
  }
  for (int b = 0; pairs && b + 1 < g; ++b) {  // (3) the partner along both qubits of pair (K+b, K+b+1)
    ex.shfl_xor(st.pa, st.psi, st.xmask.get(b) ^ st.xmask.get(b + 1), AllRegisters{});
    ex.run([&](Lane lane) {
      const Cplx<T>* p = st.pa[lane];
      Cplx<T>* w = st.lam[lane];
      Cplx<T> M[16];
      pair_feature_source(gp + 9 * (K + b), M);
      const Cplx<T> c = pair_entry<3>(M, (st.id[lane][0] >> b) & 3);
      QLAM_UNROLL
      for (int r = 0; r < R; ++r) add_twice(w[r], c, p[r]);
    });
  }
}

// The cnot ring undone on psi and lam: its steps in reverse order, each its own
// inverse (a relabelling undone is the same relabelling: id ^= bit(id, bc) << bt
// and xmask(bc) ^= xmask(bt) applied twice give back id and the masks).
template <typename T, int R, class Exec>
QLAM_HD void cnot_ring_inverse(Exec& ex, const ScanArgs<T>& a, AdjointState<T, R, Exec>& st) {
  using Lane = typename Exec::Lane;
  constexpr int K = Log2<R>::value;
  const int n = a.n, g = n - K;
  if (num_pairs(n) == n) {  // (n-1, 0), the ring's last CNOT, first
    if (g == 0) {
      if constexpr (K >= 3)
        ex.run([&](Lane lane) {
          cnot_local<K - 1, 0, R>(st.psi[lane]);
          cnot_local<K - 1, 0, R>(st.lam[lane]);
        });
    } else if (K == 0) {
      cnot_relabel(ex, st, g - 1, 0);
    } else {
      if constexpr (K >= 1)
        ex.run([&](Lane lane) {
          if ((st.id[lane][0] >> (g - 1)) & 1) {
            flip_local<0, R>(st.psi[lane]);
            flip_local<0, R>(st.lam[lane]);
          }
        });
    }
  }
  for (int b = g - 2; b >= 0; --b) cnot_relabel(ex, st, b, b + 1);  // both global
  if constexpr (K >= 1) {
    if (g >= 1) {  // (K-1, K)
      const int mask = st.xmask.get(0);
      ex.shfl_xor(st.psi, st.psi, mask, RegistersWithBit<K - 1>{});
      ex.shfl_xor(st.lam, st.lam, mask, RegistersWithBit<K - 1>{});
    }
  }
  static_for<0, (K >= 1 ? K - 1 : 0)>([&](auto I) {  // both local, q = K-2 .. 0
    constexpr int q = K - 2 - decltype(I)::value;
    ex.run([&](Lane lane) {
      cnot_local<q, q + 1, R>(st.psi[lane]);
      cnot_local<q, q + 1, R>(st.lam[lane]);
    });
  });
}

// A lane's partial sums for the rzz angles, sum_r z_p z_p' w_r with
// w_r = Im(conj(lam_r) psi_r) (gates.h rzz_grad_accumulate, the same before and
// after the layer), added to acc[Stride p + 3]. z_p z_p' factors into the signs
// of the pair's local qubits (constants of r) and of its global ones (bits of id,
// uniform over the lane), so the registers are summed with constant signs (all,
// per local qubit, per local pair) and each pair takes one of those sums times
// its global signs. (A sign per register and pair from id, as the forward's
// rzz_factor computes it, is loop-invariant under rzz, which never relabels:
// nvcc hoisted R P of them out of the token loop, 128 -> 229 registers at R = 8.)
template <int Stride, int R, typename T>
QLAM_HD void rzz_grad_sums(int n, int P, int id, const Cplx<T>* psi, const Cplx<T>* lam, T* acc) {
  constexpr int K = Log2<R>::value;
  constexpr int KA = K > 0 ? K : 1;
  T all = T(0), one[KA] = {}, two[KA] = {};  // two[q]: qubits q, q+1 (q < K-1); two[K-1]: K-1 and 0
  QLAM_UNROLL
  for (int r = 0; r < R; ++r) {
    const T w = cmul_conj(lam[r], psi[r]).im;
    all += w;
    QLAM_UNROLL
    for (int q = 0; q < K; ++q) one[q] += ((r >> q) & 1) ? -w : w;
    QLAM_UNROLL
    for (int q = 0; q + 1 < K; ++q) two[q] += (((r >> q) ^ (r >> (q + 1))) & 1) ? -w : w;
    if (K >= 3) two[KA - 1] += (((r >> (KA - 1)) ^ r) & 1) ? -w : w;
  }
  const auto zg = [id](int b) { return ((id >> b) & 1) ? T(-1) : T(1); };  // Z of global qubit b
  static_for<0, QubitSlots<R>::value>([&](auto Pc) {
    constexpr int p = decltype(Pc)::value;  // pair (p, p+1), or (n-1, 0) when p = n-1
    if (p >= P) return;
    T sum;
    if constexpr (p + 1 < K) {
      sum = two[p];  // both local (p < n-1 since n >= K)
    } else if constexpr (p + 1 == K) {
      sum = n > K ? one[p] * zg(0) : two[p];  // (K-1, K), or the closing (K-1, 0) when n = K
    } else {
      if (p + 1 < n) {
        sum = zg(p - K) * zg(p + 1 - K) * all;  // both global
      } else if (K >= 1) {
        sum = zg(p - K) * one[0];  // (n-1, 0): qubit 0 local
      } else {
        sum = zg(p) * zg(0) * all;  // (n-1, 0): K = 0, every qubit global
      }
    }
    acc[Stride * p + 3] += sum;
  });
}

// The entangler undone on psi and lam; for rzz first each lane's partial gradient sums.
template <int Stride, typename T, int R, class Exec, class Acc>
QLAM_HD void entangler_backward(Exec& ex, const ScanArgs<T>& a, AdjointState<T, R, Exec>& st, const T* gzz,
                                Acc& acc) {
  using Lane = typename Exec::Lane;
  const int n = a.n;
  if (a.entangler == Entangler::CNOT) {
    cnot_ring_inverse(ex, a, st);
  } else if (a.entangler == Entangler::CZ) {
    ex.run([&](Lane lane) {
      const int64_t base = int64_t(st.id[lane][0]) * R;
      Cplx<T>* v = st.psi[lane];
      Cplx<T>* w = st.lam[lane];
      QLAM_UNROLL
      for (int r = 0; r < R; ++r)
        if (cz_ring_sign(base + r, n) < 0) {
          v[r] = {-v[r].re, -v[r].im};
          w[r] = {-w[r].re, -w[r].im};
        }
    });
  } else if (a.entangler == Entangler::RZZ) {
    if constexpr (Stride == 4) {
      ex.run([&](Lane lane) {
        Cplx<T>* v = st.psi[lane];
        Cplx<T>* w = st.lam[lane];
        rzz_grad_sums<Stride, R>(n, a.P, st.id[lane][0], v, w, acc[lane]);
        Cplx<T> f[R];
        rzz_factors<R>(ex, n, a.P, gzz, st.id[lane][0], true, f);
        QLAM_UNROLL
        for (int r = 0; r < R; ++r) {
          v[r] = cmul(f[r], v[r]);
          w[r] = cmul(f[r], w[r]);
        }
      });
    }
  }
}

// The gate m on local qubit J undone (psi <- m^dagger psi, lam <- m^dagger lam)
// and the lane's partial angle gradients added to slot J: S[2a+b] sums
// conj(lam_a) psi_b over its register pairs (psi before, lam after the gate),
// and the gradient is linear in S (gates.h rot_grad_parts).
template <int J, int Stride, int R, typename T, class Exec>
QLAM_HD void gate_local_backward(Exec& ex, Cplx<T>* psi, Cplx<T>* lam, const Cplx<T>* m, const T* tr, T* acc) {
  const Cplx<T> md[4] = {cconj(scratch_load(ex, m + 0)), cconj(scratch_load(ex, m + 2)),
                         cconj(scratch_load(ex, m + 1)), cconj(scratch_load(ex, m + 3))};  // m^dagger
  T S[8] = {};
  QLAM_UNROLL
  for (int r = 0; r < R; ++r) {
    if ((r >> J) & 1) continue;
    const int r1 = r | (1 << J);
    undo_gate_pair_fused(md, psi[r], psi[r1], lam[r], lam[r1], S);
  }
  T grad[3];
  rot_grad_parts(scratch_load(ex, tr + 0), scratch_load(ex, tr + 1), scratch_load(ex, tr + 2),
                 scratch_load(ex, tr + 3), scratch_load(ex, tr + 4), scratch_load(ex, tr + 5), S, T(0.5), grad);
  for (int k = 0; k < 3; ++k) acc[Stride * J + k] += grad[k];
}

// The gate m on global qubit B undone: the partner's psi and lam (2R complex
// shuffles), then each lane its own row of m^dagger. The lane of bit beta adds
// S[beta][beta] (its lam, its new psi) and S[1-beta][beta] (the partner's lam,
// its new psi): over a pair of lanes, all four entries.
template <int B, int Stride, typename T, int R, class Exec, class Acc>
QLAM_HD void gate_global_backward(Exec& ex, AdjointState<T, R, Exec>& st, const Cplx<T>* m, const T* tr,
                                  Acc& acc) {
  using Lane = typename Exec::Lane;
  constexpr int slot = Log2<R>::value + B;
  const int mask = st.xmask.get(B);
  ex.shfl_xor(st.pa, st.psi, mask, AllRegisters{});
  ex.shfl_xor(st.pb, st.lam, mask, AllRegisters{});
  ex.run([&](Lane lane) {
    const bool one = (st.id[lane][0] >> B) & 1;
    const Cplx<T> own = cconj(one ? scratch_load(ex, m + 3) : scratch_load(ex, m + 0)),  // row of m^dagger
                  cross = cconj(one ? scratch_load(ex, m + 1) : scratch_load(ex, m + 2));
    Cplx<T>* v = st.psi[lane];
    Cplx<T>* w = st.lam[lane];
    const Cplx<T>* pv = st.pa[lane];
    const Cplx<T>* pw = st.pb[lane];
    Cplx<T> sd = {T(0), T(0)}, sc = {T(0), T(0)};
    QLAM_UNROLL
    for (int r = 0; r < R; ++r) {
      const Cplx<T> b = cmul_add(own, v[r], cross, pv[r]);
      cmul_conj_acc(sd, w[r], b);
      cmul_conj_acc(sc, pw[r], b);
      v[r] = b;
      w[r] = cmul_add(own, w[r], cross, pw[r]);
    }
    const T zero = T(0);
    const T S[8] = {one ? zero : sd.re, one ? zero : sd.im, one ? sc.re : zero, one ? sc.im : zero,
                    one ? zero : sc.re, one ? zero : sc.im, one ? sd.re : zero, one ? sd.im : zero};
    T grad[3];
    rot_grad_parts(scratch_load(ex, tr + 0), scratch_load(ex, tr + 1), scratch_load(ex, tr + 2),
                   scratch_load(ex, tr + 3), scratch_load(ex, tr + 4), scratch_load(ex, tr + 5), S, T(0.5), grad);
    for (int k = 0; k < 3; ++k) acc[lane][Stride * slot + k] += grad[k];
  });
}

// The tokens of one state, last to first. Stride 4 (rzz) or 3: the gradient slots.
template <int Stride, typename T, int R, class Exec>
QLAM_HD void backward_tokens(Exec& ex, const ScanArgs<T>& a, int64_t s, AdjointState<T, R, Exec>& st,
                             BackwardScratch<T>& scratch, double inv_norm0) {
  using Lane = typename Exec::Lane;
  constexpr int K = Log2<R>::value;
  constexpr int kSlots = QubitSlots<R>::value;
  // A layer's per-lane gradient sums: qubit q's (phi, theta, omega) at Stride * q + 0..2,
  // with rzz (Stride 4) pair q's sum at Stride * q + 3.
  using Acc = typename Exec::template Private<T, Stride * kSlots>;
  const int n = a.n, g = n - K;
  const int64_t len = a.length_of(s / a.H);
  for (int64_t t = len - 1; t >= 0; --t) {
    // psi is the state after token t; a checkpoint replaces the uncomputed one.
    if (a.saved_checkpoints && a.is_checkpoint(t + 1))
      load_state(ex, st, a.saved_checkpoints + a.checkpoint_offset(s, t + 1));
    if (t > 0) {  // the next token's angles and feature gradients
      prefetch_token(ex, a, s, t - 1);
      if (a.grad_features) prefetch_to_l2(ex, a.grad_features + a.feature_offset(s, t - 1), a.K * int64_t(sizeof(T)));
    }
    if (a.grad_features) add_feature_sources(ex, a, a.grad_features + a.feature_offset(s, t), st);
    for (int64_t l = a.L - 1; l >= 0; --l) {
      const int buffer = int((a.L - 1 - l) & 1);
      if (buffer == 0) {  // layers l and l - 1
        ex.sync();
        load_layers<true>(ex, a, s, t, l, l - 1, scratch);
      }
      const Cplx<T>* mats = scratch.mats[buffer];
      const T* trig = scratch.trig[buffer];
      Acc acc;
      ex.run([&](Lane lane) {
        QLAM_UNROLL
        for (int c = 0; c < Acc::size; ++c) acc[lane][c] = T(0);
      });
      entangler_backward<Stride>(ex, a, st, scratch.gzz[buffer], acc);
      static_for<0, kMaxGlobalQubits>([&](auto I) {  // global qubits, last first
        constexpr int b = kMaxGlobalQubits - 1 - decltype(I)::value;
        if constexpr (K + b < kSlots) {
          if (b < g) gate_global_backward<b, Stride>(ex, st, mats + 4 * (K + b), trig + 6 * (K + b), acc);
        }
      });
      ex.run([&](Lane lane) {  // local qubits, last first
        static_for<0, K>([&](auto I) {
          constexpr int j = K - 1 - decltype(I)::value;
          gate_local_backward<j, Stride, R>(ex, st.psi[lane], st.lam[lane], mats + 4 * j, trig + 6 * j,
                                            acc[lane]);
        });
      });
      reduce_scatter(ex, acc);
      write_layer_grads<Stride>(ex, a, s, t, l, acc, Stride * n);
    }
    restore_norm(ex, st, inv_norm0);
  }
}

// The backward of state s (docs/design.md §3, state_program.h scan_backward_state):
// psi starts as the saved final state, lam as grad_final_state (or zero), both
// under the identity labelling (any labelling serves: the states are loaded and
// stored by logical index); the tokens are uncomputed last to first; lam ends as
// grad_init_state. Same group size rule as the forward (ex.lanes() * R == 2**n).
template <typename T, int R, class Exec>
QLAM_HD void scan_backward_state(Exec& ex, const ScanArgs<T>& a, int64_t s, AdjointState<T, R, Exec>& st,
                                 BackwardScratch<T>& scratch) {
  using Lane = typename Exec::Lane;
  constexpr int K = Log2<R>::value;
  const int g = a.n - K;
  const int64_t N = a.N;
  ex.run([&](Lane lane) {
    st.id[lane][0] = lane.index();
    const int64_t base = int64_t(lane.index()) * R;
    Cplx<T>* v = st.psi[lane];
    Cplx<T>* w = st.lam[lane];
    QLAM_UNROLL
    for (int r = 0; r < R; ++r) {
      v[r] = a.saved_final_state[s * N + base + r];
      w[r] = a.grad_final_state ? a.grad_final_state[s * N + base + r] : Cplx<T>{T(0), T(0)};
    }
  });
  st.xmask = LaneMasks::identity(g);
  const double inv_norm0 = norm_inverse(sizeof(T) == sizeof(float) ? squared_norm(ex, st) : 1.0);
  if (a.entangler == Entangler::RZZ) {
    backward_tokens<4>(ex, a, s, st, scratch, inv_norm0);
  } else {
    backward_tokens<3>(ex, a, s, st, scratch, inv_norm0);
  }
  ex.run([&](Lane lane) {
    const int64_t base = int64_t(st.id[lane][0]) * R;
    const Cplx<T>* w = st.lam[lane];
    QLAM_UNROLL
    for (int r = 0; r < R; ++r) a.grad_init_state[s * N + base + r] = w[r];
  });
}

// ---------------------------------------------------------------- host dispatch

// Host code: f(Int<R>{}) with R = N / G amplitudes per lane as a compile-time constant, for R a power
// of two up to MaxR (the register array's size must be a template parameter); false, with f not
// called, when N / G is none of them.
template <int MaxR, int R = 1, class F>
bool with_register_count(int64_t N, int G, F&& f) {
  if (int64_t(G) * R == N) {
    f(Int<R>{});
    return true;
  }
  if constexpr (R < MaxR) {
    return with_register_count<MaxR, 2 * R>(N, G, f);
  } else {
    return false;
  }
}

// Most amplitudes per lane the CUDA kernels keep in registers (nvcc 13.0, sm_90, ptxas: the counts
// are held in tests/cuda/ptxas_budget.json). Forward: float32 R = 16, float64 R = 4 without spills
// (float64 R = 8 spills). Backward: a global rotation keeps psi, lam and both partner arrays live (4R
// complex) beside the gradient sums; float32 R = 16 and float64 R = 8 take all 255 registers without
// spilling, so these limits have no headroom: a change that spills there must lower them.
template <typename T>
constexpr int kMaxForwardRegisters = sizeof(T) == 4 ? 16 : 4;
template <typename T>
constexpr int kMaxBackwardRegisters = sizeof(T) == 4 ? 16 : 8;

constexpr int kWarpLanes = 32;
// The warps per multiprocessor a launch should give the GPU before the host spreads states over
// more lanes: one per warp scheduler (4 per SM since Volta). Fewer leave schedulers idle; more lanes
// per state than needed cost shuffles. benchmarks/cost_model.py predicts this rule within 1.4x of the
// best G at n = 1..8 and 64..65,536 states on the A100 and H100 (tests/test_cost_model.py); a GPU
// measurement should set it.
constexpr int kWarpsPerMultiprocessor = 4;

// Lanes per state when the caller leaves the choice to the host: the fewest lanes that keep a
// state's 2**n = N amplitudes within max_r per lane (fewer lanes, fewer shuffles), then doubled
// while the launch would give the multiprocessors fewer than kWarpsPerMultiprocessor warps each
// (a small batch spreads its states over more lanes rather than leave SMs idle); at most a warp,
// never more lanes than amplitudes.
inline int choose_lanes_per_state(int64_t N, int64_t states, int multiprocessors, int max_r) {
  int64_t G = 1;
  while (G < kWarpLanes && N / G > max_r) G *= 2;
  const int64_t wanted = int64_t(kWarpsPerMultiprocessor) * multiprocessors;
  while (G < kWarpLanes && G < N && (states * G + kWarpLanes - 1) / kWarpLanes < wanted) G *= 2;
  return int(G < N ? G : N);
}

// ---------------------------------------------------------------- CUDA executor

#if defined(__CUDACC__)
template <typename X>
__device__ __forceinline__ X shfl_xor_value(unsigned group, X x, int mask) {
  return __shfl_xor_sync(group, x, mask);
}
template <typename X>
__device__ __forceinline__ Cplx<X> shfl_xor_value(unsigned group, Cplx<X> x, int mask) {
  return {__shfl_xor_sync(group, x.re, mask), __shfl_xor_sync(group, x.im, mask)};
}

// One thread's view: its group is G consecutive lanes of the warp (group_mask:
// their bits), the thread is lane `lane` of it. Every xor mask the program
// passes is below G, so the exchanges stay inside the group; groups of one warp
// may run different numbers of tokens (lengths), which the group masks allow.
// kWholeWarp: the group is the warp (G = 32, what the host picks for the few
// states of a training batch), and every sync and shuffle names the 32 lanes by
// a constant mask. The group's mask is a per-thread value that ptxas cannot prove
// uniform, so it guards each sync and shuffle group with a convergence check on
// the warp's dependent path (MATCH.ANY, REDUX.OR, VOTEU.ANY and a LOP3 before a
// BRA.DIV to a WARPSYNC.COLLECTIVE fallback); with the constant mask only the
// BRA.DIV is left (sm_90 SASS, tests/test_sass.py), and the kernels take fewer
// registers.
template <bool kWholeWarp>
struct WarpGroupExecutor {
  class Lane {
    int i_;
    __device__ explicit Lane(int i) : i_(i) {}
    friend struct WarpGroupExecutor;

   public:
    __device__ int index() const { return i_; }
  };
  template <class X, int N>
  struct Private {
    using value_type = X;
    static constexpr int size = N;
    X v[N];
    __device__ X* operator[](Lane) { return v; }
    __device__ const X* operator[](Lane) const { return v; }
  };

  int lane;
  int group_lanes;
  unsigned group_mask;

  __device__ int lanes() const { return group_lanes; }
  __device__ unsigned lane_mask() const { return kWholeWarp ? 0xffffffffu : group_mask; }
  template <class F>
  __device__ void run(F&& f) {
    f(Lane(lane));
  }
  __device__ void sync() { __syncwarp(lane_mask()); }
  template <class P, class Take>
  __device__ void shfl_xor(P& dst, const P& src, int mask, Take take) {
#pragma unroll
    for (int r = 0; r < P::size; ++r)
      if (take(r)) dst.v[r] = shfl_xor_value(lane_mask(), src.v[r], mask);
  }
  template <class P>
  __device__ typename P::value_type uniform(const P& p, int c) const {
    return p.v[c];
  }
};
#endif

}  // namespace regprog
}  // namespace qlam
