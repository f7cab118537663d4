// The scan of one (b, h) state, written once for a group of cooperating lanes.
//
// An executor runs each phase on all of its lanes; lanes touch disjoint
// amplitudes inside a phase and `sync()` separates phases. On CUDA the lanes
// are the 32 threads of a warp (cuda/scan_cuda.cu); on the CPU the same
// program runs with the lanes emulated one after another (cpu/warp_emulation.cpp),
// which is how the CUDA kernels' logic is tested on a machine without a GPU.
//
// Executor interface:
//   int lanes() const;
//   template <class F> void run(F f);                    // f(lane) on every lane
//   void sync();                                         // between phases
//   template <int R, class F> void allreduce(T* out, int count, F f);
//       // f(lane, acc) adds a lane's partial sums to acc[0..count); every lane
//       // then holds the totals in out[0..count) (out is lane-private).
#pragma once

#include "gates.h"
#include "scan_args.h"

namespace qlam {

// ---------------------------------------------------------------- gate steps

// Applies the 2x2 matrix m (or its adjoint) to qubit q of psi, pairs split over lanes.
template <typename T>
QLAM_HD void apply_1q_pairs(int lane, int lanes, Cplx<T>* psi, int n, int q, const Cplx<T> m[4]) {
  const int64_t half = int64_t(1) << (n - 1), stride = int64_t(1) << q;
  for (int64_t p = lane; p < half; p += lanes) {
    const int64_t i0 = insert_zero_bit(p, q), i1 = i0 + stride;
    const Cplx<T> a = psi[i0], b = psi[i1];
    psi[i0] = cadd(cmul(m[0], a), cmul(m[1], b));
    psi[i1] = cadd(cmul(m[2], a), cmul(m[3], b));
  }
}

// CNOT(c -> t) on psi: swaps the amplitudes with bit c = 1 that differ in bit t.
template <typename T>
QLAM_HD void apply_cnot_pairs(int lane, int lanes, Cplx<T>* psi, int n, int c, int t) {
  const int64_t quarter = int64_t(1) << (n - 2);
  const int lo = c < t ? c : t, hi = c < t ? t : c;
  for (int64_t p = lane; p < quarter; p += lanes) {
    const int64_t i = insert_zero_bit(insert_zero_bit(p, lo), hi) | (int64_t(1) << c);
    const int64_t j = i | (int64_t(1) << t);
    const Cplx<T> tmp = psi[i];
    psi[i] = psi[j];
    psi[j] = tmp;
  }
}

// The RZZ layer (or its inverse) on every amplitude; trig = cos(g_p/2) for the
// P pairs, then sin(g_p/2) (load_layer).
template <typename T>
QLAM_HD void apply_rzz_layer(int lane, int lanes, Cplx<T>* psi, int n, int P, const T* trig, bool inverse) {
  const int64_t N = int64_t(1) << n;
  for (int64_t i = lane; i < N; i += lanes) {
    Cplx<T> f;
    rzz_factor(P, trig, trig + P, RingZZ{i, n}, inverse, T(1), f.re, f.im);
    psi[i] = cmul(f, psi[i]);
  }
}

template <typename T>
QLAM_HD void apply_cz_layer(int lane, int lanes, Cplx<T>* psi, int n) {
  const int64_t N = int64_t(1) << n;
  for (int64_t i = lane; i < N; i += lanes)
    if (cz_ring_sign(i, n) < 0) psi[i] = {-psi[i].re, -psi[i].im};
}

// Builds layer l's rotation matrices (and the cos and sin of the rzz half-angles)
// of token t into shared scratch.
template <typename T, class Exec>
QLAM_HD void load_layer(Exec& ex, const ScanArgs<T>& a, int64_t s, int64_t t, int64_t l,
                        Cplx<T>* mats, T* gzz) {
  ex.run([&](int lane) {
    for (int q = lane; q < a.n; q += ex.lanes()) {
      const T* ang = a.angles + a.angle_offset(s, t, l) + 3 * q;
      rot_matrix(ang[0], ang[1], ang[2], mats + 4 * q);
    }
    if (a.entangler == Entangler::RZZ)
      for (int p = lane; p < a.P; p += ex.lanes()) {
        const T half = a.ent_angles[a.ent_offset(s, t, l) + p] / 2;
        gzz[p] = qcos(half);
        gzz[a.P + p] = qsin(half);
      }
  });
  ex.sync();
}

// In float32, rounding makes each gate unitary only to ~1e-7, and the norm
// random-walks away from its start (about 2e-5 over 10^4 tokens of 12 gates).
// Once per token the float32 kernels scale the state back to the norm it
// started with (a projection onto the sphere the exact state lies on); float64
// needs no correction and gets none. The sum is taken in double.
template <typename T, class Exec>
QLAM_HD double squared_norm(Exec& ex, const Cplx<T>* psi, int64_t N) {
  double sum[1];
  ex.template allreduce<1>(sum, 1, [&](int lane, double* part) {
    for (int64_t i = lane; i < N; i += ex.lanes())
      part[0] += double(psi[i].re) * psi[i].re + double(psi[i].im) * psi[i].im;
  });
  return sum[0];
}

template <typename T, class Exec>
QLAM_HD void restore_norm(Exec& ex, Cplx<T>* psi, int64_t N, double inverse_target) {
  if (sizeof(T) != sizeof(float)) return;
  const double now = squared_norm(ex, psi, N);
  if (!(now > 0) || !(inverse_target > 0)) return;
  const T scale = T(norm_scale(inverse_target, now));
  ex.run([&](int lane) {
    for (int64_t i = lane; i < N; i += ex.lanes()) psi[i] = {psi[i].re * scale, psi[i].im * scale};
  });
  ex.sync();
}

// ---------------------------------------------------------------- features

template <typename T, class Exec>
QLAM_HD void measure_features(Exec& ex, const ScanArgs<T>& a, const Cplx<T>* psi, T* out) {
  const int n = a.n;
  const int64_t half = int64_t(1) << (n - 1);
  for (int q = 0; q < n; ++q) {
    T acc[3];
    ex.template allreduce<3>(acc, 3, [&](int lane, T* part) {
      for (int64_t p = lane; p < half; p += ex.lanes()) {
        const int64_t i0 = insert_zero_bit(p, q), i1 = i0 + (int64_t(1) << q);
        const Cplx<T> w = cmul_conj(psi[i0], psi[i1]);
        part[0] += w.re;
        part[1] += w.im;
        part[2] += psi[i0].re * psi[i0].re + psi[i0].im * psi[i0].im -
                   psi[i1].re * psi[i1].re - psi[i1].im * psi[i1].im;
      }
    });
    ex.run([&](int lane) {
      if (lane == 0) qubit_features(Cplx<T>{acc[0], acc[1]}, acc[2], out + 3 * q);
    });
  }
  if (!a.pair_features) return;
  for (int q = 0; q + 1 < n; ++q) {
    const int64_t quarter = int64_t(1) << (n - 2);
    T acc[kPairGramReals];
    ex.template allreduce<kPairGramReals>(acc, kPairGramReals, [&](int lane, T* part) {
      for (int64_t p = lane; p < quarter; p += ex.lanes()) {
        const int64_t base = insert_zero_bit(insert_zero_bit(p, q), q + 1);
        Cplx<T> v[4];
        for (int r = 0; r < 4; ++r) v[r] = psi[base | (int64_t(r & 1) << q) | (int64_t(r >> 1) << (q + 1))];
        gram_accumulate(v, part);
      }
    });
    ex.run([&](int lane) {
      if (lane == 0) pair_features_from_gram(acc, out + 3 * n + 9 * q);
    });
  }
}

// lambda += 2 * sum_k g[k] P_k psi: the adjoint source of one token's features.
template <typename T, class Exec>
QLAM_HD void add_feature_sources(Exec& ex, const ScanArgs<T>& a, const T* g, const Cplx<T>* psi,
                                 Cplx<T>* lam) {
  const int n = a.n;
  const int64_t half = int64_t(1) << (n - 1);
  for (int q = 0; q < n; ++q) {
    Cplx<T> M[4];
    qubit_feature_source(g + 3 * q, M);
    ex.run([&](int lane) {
      for (int64_t p = lane; p < half; p += ex.lanes()) {
        const int64_t i0 = insert_zero_bit(p, q), i1 = i0 + (int64_t(1) << q);
        const Cplx<T> x = psi[i0], y = psi[i1];
        const Cplx<T> u = cadd(cmul(M[0], x), cmul(M[1], y));
        const Cplx<T> v = cadd(cmul(M[2], x), cmul(M[3], y));
        lam[i0] = {lam[i0].re + 2 * u.re, lam[i0].im + 2 * u.im};
        lam[i1] = {lam[i1].re + 2 * v.re, lam[i1].im + 2 * v.im};
      }
    });
    ex.sync();
  }
  if (!a.pair_features) return;
  for (int q = 0; q + 1 < n; ++q) {
    const int64_t quarter = int64_t(1) << (n - 2);
    Cplx<T> M[16];
    pair_feature_source(g + 3 * n + 9 * q, M);
    ex.run([&](int lane) {
      for (int64_t p = lane; p < quarter; p += ex.lanes()) {
        const int64_t base = insert_zero_bit(insert_zero_bit(p, q), q + 1);
        int64_t idx[4];
        Cplx<T> v[4];
        for (int r = 0; r < 4; ++r) {
          idx[r] = base | (int64_t(r & 1) << q) | (int64_t(r >> 1) << (q + 1));
          v[r] = psi[idx[r]];
        }
        for (int r = 0; r < 4; ++r) {
          Cplx<T> u = {T(0), T(0)};
          for (int c = 0; c < 4; ++c) u = cadd(u, cmul(M[4 * r + c], v[c]));
          lam[idx[r]] = {lam[idx[r]].re + 2 * u.re, lam[idx[r]].im + 2 * u.im};
        }
      }
    });
    ex.sync();
  }
}

// ---------------------------------------------------------------- forward

// Scratch: psi (N), mats (4 n), gzz (2 P: rzz cos, sin), all shared by the executor's lanes.
template <typename T, class Exec>
QLAM_HD void scan_forward_state(Exec& ex, const ScanArgs<T>& a, int64_t s, Cplx<T>* psi,
                                Cplx<T>* mats, T* gzz) {
  const int n = a.n;
  const int64_t N = a.N, len = a.length_of(s / a.H);
  ex.run([&](int lane) {
    for (int64_t i = lane; i < N; i += ex.lanes())
      psi[i] = a.init_state ? a.init_state[s * N + i] : Cplx<T>{T(i == 0), T(0)};
  });
  ex.sync();  // kept for clarity: each lane reads only its own amplitudes before the next sync
  const double inv_norm0 = norm_inverse(sizeof(T) == sizeof(float) ? squared_norm(ex, psi, N) : 1.0);
  for (int64_t t = 0; t < len; ++t) {
    for (int64_t l = 0; l < a.L; ++l) {
      load_layer(ex, a, s, t, l, mats, gzz);
      for (int q = 0; q < n; ++q) {
        ex.run([&](int lane) { apply_1q_pairs(lane, ex.lanes(), psi, n, q, mats + 4 * q); });
        ex.sync();
      }
      if (a.entangler == Entangler::CNOT) {
        for (int p = 0; p < num_pairs(n); ++p) {
          ex.run([&](int lane) { apply_cnot_pairs(lane, ex.lanes(), psi, n, pair_first(p), pair_second(p, n)); });
          ex.sync();
        }
      } else if (a.entangler == Entangler::CZ) {
        ex.run([&](int lane) { apply_cz_layer(lane, ex.lanes(), psi, n); });
        ex.sync();
      } else if (a.entangler == Entangler::RZZ) {
        ex.run([&](int lane) { apply_rzz_layer(lane, ex.lanes(), psi, n, a.P, gzz, false); });
        ex.sync();
      }
    }
    restore_norm(ex, psi, N, inv_norm0);
    measure_features(ex, a, psi, a.features + a.feature_offset(s, t));
    if (a.checkpoints && a.is_checkpoint(t + 1)) {
      Cplx<T>* dst = a.checkpoints + a.checkpoint_offset(s, t + 1);
      ex.run([&](int lane) { for (int64_t i = lane; i < N; i += ex.lanes()) dst[i] = psi[i]; });
    }
    ex.sync();  // kept for clarity: the next token's first shared writes are followed by a sync before any read
  }
  // Positions past the length leave the state as it is; their checkpoints repeat it.
  for (int64_t done = len + 1; a.checkpoints && done <= a.T_len; ++done) {
    if (!a.is_checkpoint(done)) continue;
    Cplx<T>* dst = a.checkpoints + a.checkpoint_offset(s, done);
    ex.run([&](int lane) { for (int64_t i = lane; i < N; i += ex.lanes()) dst[i] = psi[i]; });
  }
  ex.run([&](int lane) {
    for (int64_t i = lane; i < N; i += ex.lanes()) a.final_state[s * N + i] = psi[i];
  });
}

// ---------------------------------------------------------------- backward

// Walks the sequence backwards, uncomputing psi and carrying the adjoint lam
// (docs/design.md §3). Scratch: psi (N), lam (N), mats (4 n), gzz (2 P).
template <typename T, class Exec>
QLAM_HD void scan_backward_state(Exec& ex, const ScanArgs<T>& a, int64_t s, Cplx<T>* psi,
                                 Cplx<T>* lam, Cplx<T>* mats, T* gzz) {
  const int n = a.n;
  const int64_t N = a.N, len = a.length_of(s / a.H);
  const int64_t half = N / 2;
  ex.run([&](int lane) {
    for (int64_t i = lane; i < N; i += ex.lanes()) {
      psi[i] = a.saved_final_state[s * N + i];
      lam[i] = a.grad_final_state ? a.grad_final_state[s * N + i] : Cplx<T>{T(0), T(0)};
    }
  });
  ex.sync();
  const double inv_norm0 = norm_inverse(sizeof(T) == sizeof(float) ? squared_norm(ex, psi, N) : 1.0);
  for (int64_t t = len - 1; t >= 0; --t) {
    // psi is the state after token t; a checkpoint replaces the uncomputed one.
    if (a.saved_checkpoints && a.is_checkpoint(t + 1)) {
      const Cplx<T>* src = a.saved_checkpoints + a.checkpoint_offset(s, t + 1);
      ex.run([&](int lane) { for (int64_t i = lane; i < N; i += ex.lanes()) psi[i] = src[i]; });
      ex.sync();
    }
    if (a.grad_features) add_feature_sources(ex, a, a.grad_features + a.feature_offset(s, t), psi, lam);
    for (int64_t l = a.L - 1; l >= 0; --l) {
      load_layer(ex, a, s, t, l, mats, gzz);
      if (a.entangler == Entangler::CNOT) {
        for (int p = num_pairs(n) - 1; p >= 0; --p) {
          ex.run([&](int lane) {
            apply_cnot_pairs(lane, ex.lanes(), psi, n, pair_first(p), pair_second(p, n));
            apply_cnot_pairs(lane, ex.lanes(), lam, n, pair_first(p), pair_second(p, n));
          });
          ex.sync();
        }
      } else if (a.entangler == Entangler::CZ) {
        ex.run([&](int lane) {
          apply_cz_layer(lane, ex.lanes(), psi, n);
          apply_cz_layer(lane, ex.lanes(), lam, n);
        });
        ex.sync();
      } else if (a.entangler == Entangler::RZZ) {
        // dL/dg_p = 1/2 sum_i z_p z_p' Im(conj(lam_i) psi_i), the same before and after the layer.
        T grad[kMaxQubits];
        ex.template allreduce<kMaxQubits>(grad, a.P, [&](int lane, T* part) {
          for (int64_t i = lane; i < N; i += ex.lanes()) {
            rzz_grad_accumulate(a.P, RingZZ{i, n}, cmul_conj(lam[i], psi[i]).im, part);
          }
        });
        ex.run([&](int lane) {
          if (lane == 0)
            for (int p = 0; p < a.P; ++p) a.grad_ent_angles[a.ent_offset(s, t, l) + p] = grad[p] / 2;
          apply_rzz_layer(lane, ex.lanes(), psi, n, a.P, gzz, true);
          apply_rzz_layer(lane, ex.lanes(), lam, n, a.P, gzz, true);
        });
        ex.sync();
      }
      for (int q = n - 1; q >= 0; --q) {
        const Cplx<T>* m = mats + 4 * q;
        const Cplx<T> md[4] = {{m[0].re, -m[0].im}, {m[2].re, -m[2].im},
                               {m[1].re, -m[1].im}, {m[3].re, -m[3].im}};  // m^dagger
        T S[8];  // S[2a+b] = sum conj(lam_a) psi_b with psi before and lam after the gate
        ex.template allreduce<8>(S, 8, [&](int lane, T* part) {
          for (int64_t p = lane; p < half; p += ex.lanes()) {
            const int64_t i0 = insert_zero_bit(p, q), i1 = i0 + (int64_t(1) << q);
            undo_gate_pair(md, psi[i0], psi[i1], lam[i0], lam[i1], part);
          }
        });
        ex.run([&](int lane) {
          if (lane != 0) return;
          const T* ang = a.angles + a.angle_offset(s, t, l) + 3 * q;
          const Cplx<T> Sc[4] = {{S[0], S[1]}, {S[2], S[3]}, {S[4], S[5]}, {S[6], S[7]}};
          rot_grad(ang[0], ang[1], ang[2], Sc, a.grad_angles + a.angle_offset(s, t, l) + 3 * q);
        });
        ex.sync();
      }
    }
    restore_norm(ex, psi, N, inv_norm0);
  }
  ex.run([&](int lane) {
    for (int64_t i = lane; i < N; i += ex.lanes()) a.grad_init_state[s * N + i] = lam[i];
  });
}

}  // namespace qlam
