// The forward scan of one (b, h) state with its amplitudes in registers (issue 15),
// written once for SIMT lanes. Forward only: features, final state, checkpoints.
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
//   cz, rzz: diagonal, per amplitude from its logical index (cz_ring_sign,
//     rzz_factor as every backend), no shuffle.
//   float32 only, once per token: the squared norm (a double) butterfly-summed
//     (g double shuffles) and the state scaled back, as state_program.h does.
//   features: per-lane partial sums, already turned into feature values (they
//     are linear in the sums), then a butterfly over the G lanes (log2 G = g
//     real shuffles per value): qubit q local: register pairs; global: one
//     partner fetch (R c). Pair (q, q+1) (pair features on): both local:
//     registers; (K-1, K): R c; both global: 3R c (partners along each bit and
//     both); 9 values per pair reduced.
// Per token and lane, L layers, cnot ring (g >= 1):
//   exchanges: L g R + L R/2 (ring, K >= 1) + g R (features) c,
//              plus R (K >= 1) + 3 R (g - 1) c with pair features;
//   reductions: 3 n g real (+ 9 (n - 1) g with pair features), + g double (float32 norm).
// At n = 8, L = 2, float32, SHFL instructions per lane and token (pair features
// off / on), rotation FMAs per lane and token:
//   G =  1 (R = 256):    0 /    0 SHFL, 32768 FMA
//   G =  2 (R = 128): 1050 / 1369 SHFL, 16384 FMA
//   G =  4 (R =  64):  948 / 1586 SHFL,  8192 FMA
//   G =  8 (R =  32):  718 / 1355 SHFL,  4096 FMA
//   G = 16 (R =  16):  520 / 1092 SHFL,  2048 FMA
//   G = 32 (R =   8):  386 /  909 SHFL,  1024 FMA
// Of G = 32's 386: rotations 160, ring 16, feature partners 80, feature
// reductions 120, norm 10. The measurement is the heavy part at large G; a
// reduce-scatter (recursive halving, what benchmarks/cost_model.py assumes) and
// half-size partner exchanges for <X>, <Y> of global qubits would cut it.
// Registers: an exchange keeps psi and one partner array live (2R complex), a
// pair of global qubits' features four (psi, pa, pb, pab); nvcc 13, sm_90,
// float32, ptxas: R = 8 / 16 / 32 use 116 / 235 / 255 registers (R = 32 spills),
// 94 / 129 / 227 without pair features; so at n = 8 a state wants G >= 16.
//
// Gate matrices: lane q % G builds gate q's matrix (and the rzz cos, sin) into
// the group's shared scratch, one sync, every lane reads them (the cost model's
// "owner lane + shared memory"). The scratch is double-buffered by layer, so one
// sync per layer suffices: a lane overwrites a buffer only after passing the
// sync that follows the next layer's writes, which every lane reaches only after
// its last read of that buffer.
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
// Register code only reaches its own lane's Private arrays (Lane is the key), so
// the CPU emulation (cpu/register_emulation.cpp), which runs the lanes of a
// phase one after another over a [lanes][N] array and does each shfl_xor as one
// whole-group operation, computes exactly what the SIMT lanes compute.
// WarpGroupExecutor (end of this file) is the CUDA side: each thread runs its own
// lane, Private is a plain array, shfl_xor is __shfl_xor_sync over the group.
#pragma once

#include <cstdint>

#include "gates.h"
#include "scan_args.h"

#if defined(__CUDACC__)
#define QLAM_UNROLL _Pragma("unroll")
#else
#define QLAM_UNROLL
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

// After butterfly_sum: value c goes to out[c], written by lane c % G.
template <typename T, class Exec, class P>
QLAM_HD void write_spread(Exec& ex, P& acc, T* out) {
  using Lane = typename Exec::Lane;
  ex.run([&](Lane lane) {
    QLAM_UNROLL
    for (int c = 0; c < P::size; ++c)
      if (c % ex.lanes() == lane.index()) out[c] = acc[lane][c];
  });
}

template <typename T>
QLAM_HD T norm2(Cplx<T> v) {
  return v.re * v.re + v.im * v.im;
}

// ---------------------------------------------------------------- gates

// Layer l of token t: lane q % G builds gate q's matrix, lane p % G the rzz
// pair p's cos, sin; then one sync (see the opening comment for why one is enough).
template <typename T, class Exec>
QLAM_HD void load_layer(Exec& ex, const ScanArgs<T>& a, int64_t s, int64_t t, int64_t l, Cplx<T>* mats,
                        T* gzz) {
  using Lane = typename Exec::Lane;
  ex.run([&](Lane lane) {
    for (int q = lane.index(); q < a.n; q += ex.lanes()) {
      const T* ang = a.angles + a.angle_offset(s, t, l) + 3 * q;
      rot_matrix(ang[0], ang[1], ang[2], mats + 4 * q);
    }
    if (a.entangler == Entangler::RZZ)
      for (int p = lane.index(); p < a.P; p += ex.lanes()) {
        const T half = a.ent_angles[a.ent_offset(s, t, l) + p] / 2;
        gzz[p] = qcos(half);
        gzz[a.P + p] = qsin(half);
      }
  });
  ex.sync();
}

// The 2x2 matrix m on local qubit J: pairs (r, r | 1 << J) of the lane's registers.
template <int J, int R, typename T>
QLAM_HD void gate_local(Cplx<T>* v, const Cplx<T>* mats) {
  const Cplx<T> m0 = mats[0], m1 = mats[1], m2 = mats[2], m3 = mats[3];
  QLAM_UNROLL
  for (int r = 0; r < R; ++r) {
    if ((r >> J) & 1) continue;
    const Cplx<T> x = v[r], y = v[r | (1 << J)];
    v[r] = cadd(cmul(m0, x), cmul(m1, y));
    v[r | (1 << J)] = cadd(cmul(m2, x), cmul(m3, y));
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
    const Cplx<T> own = one ? mats[3] : mats[0], partner = one ? mats[2] : mats[1];
    Cplx<T>* v = st.psi[lane];
    const Cplx<T>* w = st.pa[lane];
    QLAM_UNROLL
    for (int r = 0; r < R; ++r) v[r] = cadd(cmul(own, v[r]), cmul(partner, w[r]));
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
      const int64_t base = int64_t(st.id[lane][0]) * R;
      Cplx<T>* v = st.psi[lane];
      QLAM_UNROLL
      for (int r = 0; r < R; ++r) {
        Cplx<T> f;
        rzz_factor(a.P, gzz, gzz + a.P, RingZZ{base + r, n}, false, T(1), f.re, f.im);
        v[r] = cmul(f, v[r]);
      }
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
// its starting norm (state_program.h's restore_norm). float64 gets no correction.
template <typename T, int R, class Exec>
QLAM_HD void restore_norm(Exec& ex, RegisterState<T, R, Exec>& st, double target) {
  using Lane = typename Exec::Lane;
  if (sizeof(T) != sizeof(float)) return;
  const double now = squared_norm(ex, st);
  if (!(now > 0) || !(target > 0)) return;
  const T scale = T(sqrt(target / now));
  ex.run([&](Lane lane) {
    Cplx<T>* v = st.psi[lane];
    QLAM_UNROLL
    for (int r = 0; r < R; ++r) v[r] = {v[r].re * scale, v[r].im * scale};
  });
}

// ---------------------------------------------------------------- features

// Features are linear in the partial sums, so each lane turns its partial sums
// into partial features and only those cross the lanes (3 per qubit, 9 per pair).
template <typename T, int R, class Exec>
QLAM_HD void measure_features(Exec& ex, const ScanArgs<T>& a, RegisterState<T, R, Exec>& st, T* out) {
  using Lane = typename Exec::Lane;
  using Acc3 = typename Exec::template Private<T, 3>;
  using Acc9 = typename Exec::template Private<T, 9>;
  constexpr int K = Log2<R>::value;
  const int n = a.n, g = n - K;

  // <X_q>, <Y_q>, <Z_q> of the local qubits: pairs of registers.
  static_for<0, K>([&](auto J) {
    constexpr int j = decltype(J)::value;
    Acc3 acc;
    ex.run([&](Lane lane) {
      const Cplx<T>* v = st.psi[lane];
      Cplx<T> w = {T(0), T(0)};
      T z = 0;
      QLAM_UNROLL
      for (int r = 0; r < R; ++r) {
        if ((r >> j) & 1) continue;
        w = cadd(w, cmul_conj(v[r], v[r | (1 << j)]));
        z += norm2(v[r]) - norm2(v[r | (1 << j)]);
      }
      qubit_features(w, z, acc[lane]);
    });
    butterfly_sum(ex, acc);
    write_spread(ex, acc, out + 3 * j);
  });
  // Global qubits: <Z> from the lane's own amplitudes, <X>, <Y> from the partner's;
  // the lanes whose bit is 0 count each pair.
  for (int b = 0; b < g; ++b) {
    Acc3 acc;
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
      qubit_features(one ? Cplx<T>{T(0), T(0)} : sum, one ? -z : z, acc[lane]);
    });
    butterfly_sum(ex, acc);
    write_spread(ex, acc, out + 3 * (K + b));
  }
  if (!a.pair_features) return;

  // <A_q B_{q+1}>: groups of four amplitudes with local index rr = b_q + 2 b_{q+1}.
  T* pair_out = out + 3 * n;
  static_for<0, (K >= 1 ? K - 1 : 0)>([&](auto Q) {  // both local
    constexpr int q = decltype(Q)::value;
    Acc9 acc;
    ex.run([&](Lane lane) {
      const Cplx<T>* v = st.psi[lane];
      T gram[kPairGramReals] = {};
      QLAM_UNROLL
      for (int r = 0; r < R; ++r) {
        if ((r >> q) & 3) continue;
        const Cplx<T> group[4] = {v[r], v[r | (1 << q)], v[r | (2 << q)], v[r | (3 << q)]};
        gram_accumulate(group, gram);
      }
      pair_features_from_gram(gram, acc[lane]);
    });
    butterfly_sum(ex, acc);
    write_spread(ex, acc, pair_out + 9 * q);
  });
  if constexpr (K >= 1) {
    if (g >= 1) {  // (K-1, K): qubit K-1 in the registers, qubit K across lanes
      constexpr int q = K - 1;
      Acc9 acc;
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
        for (int j = 0; j < 9; ++j) acc[lane][j] = one ? T(0) : f[j];
      });
      butterfly_sum(ex, acc);
      write_spread(ex, acc, pair_out + 9 * q);
    }
  }
  for (int b = 0; b + 1 < g; ++b) {  // both global
    Acc9 acc;
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
      for (int j = 0; j < 9; ++j) acc[lane][j] = counts ? f[j] : T(0);
    });
    butterfly_sum(ex, acc);
    write_spread(ex, acc, pair_out + 9 * (K + b));
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
  const double norm0 = sizeof(T) == sizeof(float) ? squared_norm(ex, st) : 1.0;

  int buffer = 0;
  for (int64_t t = 0; t < len; ++t) {
    for (int64_t l = 0; l < a.L; ++l, buffer ^= 1) {
      const Cplx<T>* mats = scratch.mats[buffer];
      load_layer(ex, a, s, t, l, scratch.mats[buffer], scratch.gzz[buffer]);
      ex.run([&](Lane lane) {
        static_for<0, K>([&](auto J) {
          constexpr int j = decltype(J)::value;
          gate_local<j, R>(st.psi[lane], mats + 4 * j);
        });
      });
      for (int b = 0; b < g; ++b) gate_global(ex, st, b, mats + 4 * (K + b));
      apply_entangler(ex, a, st, scratch.gzz[buffer]);
    }
    restore_norm(ex, st, norm0);
    measure_features(ex, a, st, a.features + a.feature_offset(s, t));
    if (a.checkpoints && a.is_checkpoint(t + 1)) store_state(ex, st, a.checkpoints + a.checkpoint_offset(s, t + 1));
  }
  // Positions past the length leave the state as it is; their checkpoints repeat it.
  for (int64_t done = len + 1; a.checkpoints && done <= a.T_len; ++done)
    if (a.is_checkpoint(done)) store_state(ex, st, a.checkpoints + a.checkpoint_offset(s, done));
  store_state(ex, st, a.final_state + s * N);
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
  template <class F>
  __device__ void run(F&& f) {
    f(Lane(lane));
  }
  __device__ void sync() { __syncwarp(group_mask); }
  template <class P, class Take>
  __device__ void shfl_xor(P& dst, const P& src, int mask, Take take) {
#pragma unroll
    for (int r = 0; r < P::size; ++r)
      if (take(r)) dst.v[r] = shfl_xor_value(group_mask, src.v[r], mask);
  }
  template <class P>
  __device__ typename P::value_type uniform(const P& p, int c) const {
    return p.v[c];
  }
};
#endif

}  // namespace regprog
}  // namespace qlam
