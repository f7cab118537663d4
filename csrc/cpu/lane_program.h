// The CPU scan vectorised across states: a group of W states (lanes.h) runs
// the sequence together, amplitude i of all W states in one vector, so the
// inner loops are plain vector arithmetic with no shuffles at any qubit.
//
// The same mathematics as state_program.h (which the CUDA kernel and the
// scalar CPU path run): Rot gates, the cnot/cz/rzz ring, single-qubit and
// pair features, float32 norm restoration, adjoint backward with uncomputation. Lanes whose
// sequence has ended (lengths) or that pad the last group are masked: their
// gates are the identity, their entangler is skipped and nothing is written.
//
// The host (scan_cpu.cpp) splits the sequence into chunks of tokens; for each
// chunk it computes the cos/sin of every gate's half-angles with ATen's
// vectorised math (the "trig" buffer) and then runs every group over the
// chunk. Between chunks the running states live in the op's output buffers.
#pragma once

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "../gates.h"
#include "../scan_args.h"
#include "lanes.h"

namespace qlam {

// Per gate: cos, sin of theta/2, (phi + omega)/2 and (phi - omega)/2.
constexpr int kTrigPerGate = 6;

// z_p z_p' of pair p on |i> from the (P, N) table of LaneTask::zz_sign (gates.h RingZZ computes the same).
struct TableZZ {
  const int8_t* table;
  int64_t i, N;
  int operator()(int p) const { return table[p * N + i]; }
};

template <typename T>
struct LaneTask {
  ScanArgs<T> a;
  // The trig tables are lane-major: the W states of a group side by side, so a gate's value for the
  // whole group is one vector load (gathering it lane by lane cost ~20 % of a small-n scan).
  const T* trig = nullptr;        // six planes (6, groups, t1 - t0, L, n, W) for the chunk's tokens
  const T* ent_trig = nullptr;    // rzz: two planes (2, groups, t1 - t0, L, P, W), cos and sin of g_p / 2
  int64_t t0 = 0, t1 = 0;         // the chunk
  bool first_chunk = false;       // the chunk processed first: take the norm target here
  double* inv_norm0 = nullptr;    // (B * H): inverse of the float32 restoration target per state
  Cplx<T>* psi_run = nullptr;     // backward: (B * H, N) running state between chunks
  const int32_t* cnot_perm = nullptr;      // |i> -> |perm[i]> under the cnot ring
  const int32_t* cnot_perm_inv = nullptr;  // its inverse
  const int8_t* cz_sign = nullptr;         // +1/-1 of the cz ring on |i>
  const int8_t* zz_sign = nullptr;         // (P, N): z_p z_p' of pair p on |i>
};

// One group's scratch: W states as structure-of-arrays vectors, in one
// 64-byte-aligned block (allocated outside the per-ISA code, so the alignment
// is explicit rather than left to the allocator's idea of the type).
template <typename T, int Width = Lanes<T>::W>
struct LaneScratch {
  using V = typename Lanes<T, Width>::V;
  static constexpr int kBuffers = 6;  // psi, lam, tmp: re and im each
  std::unique_ptr<V, void (*)(void*)> block;
  int64_t N;
  explicit LaneScratch(int64_t n_amplitudes)
      : block(static_cast<V*>(std::aligned_alloc(64, sizeof(V) * kBuffers * n_amplitudes)), &std::free),
        N(n_amplitudes) {
    if (!block) throw std::bad_alloc();
  }
  V* buffer(int k) { return block.get() + k * N; }
};

template <typename T, int Width = Lanes<T>::W>
class LaneGroup {
 public:
  using V = typename Lanes<T, Width>::V;
  using Mask = typename Lanes<T, Width>::Mask;
  using Wide = typename Lanes<T, Width>::Wide;
  static constexpr int W = Width;

  LaneGroup(const LaneTask<T>& task, int64_t group, LaneScratch<T, Width>& scratch)
      : k_(task), a_(task.a), N_(task.a.N), n_(task.a.n) {
    psi_re_ = scratch.buffer(0); psi_im_ = scratch.buffer(1);
    lam_re_ = scratch.buffer(2); lam_im_ = scratch.buffer(3);
    tmp_re_ = scratch.buffer(4); tmp_im_ = scratch.buffer(5);
    const int64_t tc = k_.t1 - k_.t0, groups = (a_.num_states() + W - 1) / W;
    max_len_ = 0;
    for (int w = 0; w < W; ++w) {
      const int64_t s = group * W + w;
      real_[w] = s < a_.num_states();
      state_[w] = real_[w] ? s : 0;
      token0_[w] = a_.token(state_[w], 0);
      len_[w] = real_[w] ? a_.length_of(s / a_.H) : 0;
      if (len_[w] > max_len_) max_len_ = len_[w];
    }
    // Offsets in vectors of W values: this group's first token, and one plane.
    trig_base_ = group * tc * a_.L * n_;
    ent_base_ = group * tc * a_.L * a_.P;
    trig_plane_ = groups * tc * a_.L * n_;
    ent_plane_ = groups * tc * a_.L * a_.P;
  }

  // ------------------------------------------------------------ forward

  void forward() {
    load(a_.final_state, psi_re_, psi_im_);
    if (k_.first_chunk) take_norm_target();
    const int64_t end = k_.t1 < max_len_ ? k_.t1 : max_len_;
    for (int64_t t = k_.t0; t < end; ++t) {
      const Mask active = active_mask(t);
      for (int64_t l = 0; l < a_.L; ++l) {
        for (int q = 0; q < n_; ++q) {
          V m[8];
          gate_matrix(t, l, q, active, m);
          apply_gate(psi_re_, psi_im_, q, m);
        }
        if (a_.entangler == Entangler::RZZ) {
          rzz_phases(t, l, active, false, psi_re_, psi_im_);
        } else {
          entangle(psi_re_, psi_im_, active, false);
        }
      }
      restore_norm(active);
      measure(t, active);
      store_finished(t + 1);
      if (a_.checkpoints && a_.is_checkpoint(t + 1)) store_checkpoint(t + 1);
    }
    // Past every lane's length the states stay as they are; their checkpoints repeat them.
    for (int64_t t = k_.t0 > end ? k_.t0 : end; t < k_.t1; ++t)
      if (a_.checkpoints && a_.is_checkpoint(t + 1)) store_checkpoint(t + 1);
    // Lanes that finished (or never started) in this chunk are in final_state already.
    for (int w = 0; w < W; ++w)
      if (real_[w] && len_[w] > k_.t1) store_lane(w, psi_re_, psi_im_, a_.final_state);
  }

  // ------------------------------------------------------------ backward

  void backward() {
    load(k_.psi_run, psi_re_, psi_im_);
    load(a_.grad_init_state, lam_re_, lam_im_);
    if (k_.first_chunk) take_norm_target();
    const int64_t end = k_.t1 < max_len_ ? k_.t1 : max_len_;
    for (int64_t t = end - 1; t >= k_.t0; --t) {
      const Mask active = active_mask(t);
      reload_starting(t + 1);
      if (a_.saved_checkpoints && a_.is_checkpoint(t + 1)) load_checkpoint(t + 1);
      if (a_.grad_features) add_feature_sources(t, active);
      for (int64_t l = a_.L - 1; l >= 0; --l) {
        if (a_.entangler == Entangler::RZZ) {
          rzz_gradient(t, l, active);
          rzz_phases(t, l, active, true, psi_re_, psi_im_);
          rzz_phases(t, l, active, true, lam_re_, lam_im_);
        } else {
          entangle(psi_re_, psi_im_, active, true);
          entangle(lam_re_, lam_im_, active, true);
        }
        for (int q = n_ - 1; q >= 0; --q) uncompute_gate(t, l, q, active);
      }
      restore_norm(active);
    }
    // Lanes not yet started (in this backward order) keep what their buffers hold.
    for (int w = 0; w < W; ++w)
      if (real_[w] && len_[w] > k_.t0) {
        store_lane(w, psi_re_, psi_im_, k_.psi_run);
        store_lane(w, lam_re_, lam_im_, a_.grad_init_state);
      }
  }

 private:
  // ------------------------------------------------------------ lanes

  // Token t of lane w's state in the per-token arrays (ScanArgs::token without its division by H:
  // per lane, per qubit and per token that division cost ~10 % of a backward at n = 4).
  int64_t token(int w, int64_t t) const { return token0_[w] + t * a_.H; }

  Mask active_mask(int64_t t) const {
    Mask m{};
    for (int w = 0; w < W; ++w) m[w] = t < len_[w] ? -1 : 0;
    return m;
  }

  void load(const Cplx<T>* src, V* re, V* im) const {
    for (int64_t i = 0; i < N_; ++i) { re[i] = V{}; im[i] = V{}; }
    for (int w = 0; w < W; ++w) {
      if (!real_[w]) continue;
      const Cplx<T>* p = src + state_[w] * N_;
      for (int64_t i = 0; i < N_; ++i) { re[i][w] = p[i].re; im[i][w] = p[i].im; }
    }
  }

  void store_lane(int w, const V* re, const V* im, Cplx<T>* dst) const {
    Cplx<T>* p = dst + state_[w] * N_;
    for (int64_t i = 0; i < N_; ++i) p[i] = {re[i][w], im[i][w]};
  }

  void load_lane(int w, const Cplx<T>* src, V* re, V* im) const {
    const Cplx<T>* p = src + state_[w] * N_;
    for (int64_t i = 0; i < N_; ++i) { re[i][w] = p[i].re; im[i][w] = p[i].im; }
  }

  // Masked lanes still go through the arithmetic (an identity gate), which is
  // exact for finite amplitudes but spreads a NaN or Inf (0 * Inf = NaN). So a
  // lane's state is written out the moment its sequence ends, and read back in
  // the backward the moment it starts: a finished state is kept bit for bit.
  void store_finished(int64_t tokens_done) const {
    for (int w = 0; w < W; ++w)
      if (real_[w] && len_[w] == tokens_done) store_lane(w, psi_re_, psi_im_, a_.final_state);
  }

  void reload_starting(int64_t tokens_done) {
    for (int w = 0; w < W; ++w)
      if (real_[w] && len_[w] == tokens_done) {
        load_lane(w, k_.psi_run, psi_re_, psi_im_);
        load_lane(w, a_.grad_init_state, lam_re_, lam_im_);
      }
  }

  // Lanes past their length repeat their final state, which final_state holds already.
  void store_checkpoint(int64_t tokens_done) const {
    for (int w = 0; w < W; ++w) {
      if (!real_[w]) continue;
      Cplx<T>* p = a_.checkpoints + a_.checkpoint_offset(state_[w], tokens_done);
      if (tokens_done > len_[w]) {
        const Cplx<T>* q = a_.final_state + state_[w] * N_;
        for (int64_t i = 0; i < N_; ++i) p[i] = q[i];
      } else {
        for (int64_t i = 0; i < N_; ++i) p[i] = {psi_re_[i][w], psi_im_[i][w]};
      }
    }
  }

  void load_checkpoint(int64_t tokens_done) {
    for (int w = 0; w < W; ++w) {
      if (!real_[w]) continue;
      const Cplx<T>* p = a_.saved_checkpoints + a_.checkpoint_offset(state_[w], tokens_done);
      for (int64_t i = 0; i < N_; ++i) { psi_re_[i][w] = p[i].re; psi_im_[i][w] = p[i].im; }
    }
  }

  // ------------------------------------------------------------ gates

  // Vector `index` (W values) of a lane-major table; memcpy: no alignment is assumed.
  static V load_vector(const T* table, int64_t index) {
    V v;
    std::memcpy(&v, table + index * W, sizeof(V));
    return v;
  }

  // The six trig values of gate (t, l, q) per lane; the identity's on inactive lanes.
  void gate_trig(int64_t t, int64_t l, int q, Mask active, V tr[kTrigPerGate]) const {
    const int64_t off = trig_base_ + ((t - k_.t0) * a_.L + l) * n_ + q;
    for (int k = 0; k < kTrigPerGate; ++k) tr[k] = load_vector(k_.trig, k * trig_plane_ + off);
    const V one = broadcast<V>(T(1)), zero = V{};
    for (int k = 0; k < kTrigPerGate; ++k) tr[k] = lane_select(active, tr[k], k % 2 ? zero : one);
  }

  // Rot's matrix (gates.h rot_matrix_parts) as m[2k] = Re m_k, m[2k+1] = Im m_k.
  static void matrix_from_trig(const V tr[kTrigPerGate], V m[8]) {
    rot_matrix_parts(tr[0], tr[1], tr[2], tr[3], tr[4], tr[5], m);
  }

  void gate_matrix(int64_t t, int64_t l, int q, Mask active, V m[8]) const {
    V tr[kTrigPerGate];
    gate_trig(t, l, q, active, tr);
    matrix_from_trig(tr, m);
  }

  // (a, b) <- m (a, b) over the pairs of amplitudes that differ in bit q.
  void apply_gate(V* re, V* im, int q, const V m[8]) const {
    const int64_t stride = int64_t(1) << q;
    for (int64_t base = 0; base < N_; base += 2 * stride)
      for (int64_t i0 = base; i0 < base + stride; ++i0) {
        const int64_t i1 = i0 + stride;
        const V ar = re[i0], ai = im[i0], br = re[i1], bi = im[i1];
        re[i0] = m[0] * ar - m[1] * ai + m[2] * br - m[3] * bi;
        im[i0] = m[0] * ai + m[1] * ar + m[2] * bi + m[3] * br;
        re[i1] = m[4] * ar - m[5] * ai + m[6] * br - m[7] * bi;
        im[i1] = m[4] * ai + m[5] * ar + m[6] * bi + m[7] * br;
      }
  }

  // The entangler ring (or its inverse) on the active lanes.
  void entangle(V*& re, V*& im, Mask active, bool inverse) {
    if (a_.entangler == Entangler::CNOT) {
      const int32_t* perm = inverse ? k_.cnot_perm_inv : k_.cnot_perm;
      for (int64_t i = 0; i < N_; ++i) {
        const int64_t j = perm[i];  // |i> moves to |j>
        tmp_re_[j] = lane_select(active, re[i], re[j]);
        tmp_im_[j] = lane_select(active, im[i], im[j]);
      }
      // The permuted copy becomes the buffer; the old one is the next scratch.
      V* old_re = re; V* old_im = im;
      re = tmp_re_; im = tmp_im_;
      tmp_re_ = old_re; tmp_im_ = old_im;
    } else if (a_.entangler == Entangler::CZ) {
      for (int64_t i = 0; i < N_; ++i)
        if (k_.cz_sign[i] < 0) {
          re[i] = lane_select(active, -re[i], re[i]);
          im[i] = lane_select(active, -im[i], im[i]);
        }
    }
  }

  // rzz (gates.h rzz_factor): one unit phase per pair, no per-amplitude trig; `undo` applies the inverse.
  void rzz_phases(int64_t t, int64_t l, Mask active, bool undo, V* re, V* im) const {
    V c[kMaxQubits], sn[kMaxQubits];
    rzz_trig(t, l, active, c, sn);
    for (int64_t i = 0; i < N_; ++i) {
      V fr, fi;
      rzz_factor(a_.P, c, sn, TableZZ{k_.zz_sign, i, N_}, undo, broadcast<V>(T(1)), fr, fi);
      const V pr = re[i], pi = im[i];
      re[i] = pr * fr - pi * fi;
      im[i] = pr * fi + pi * fr;
    }
  }

  void rzz_trig(int64_t t, int64_t l, Mask active, V* c, V* sn) const {
    const int64_t off = ent_base_ + ((t - k_.t0) * a_.L + l) * a_.P;
    for (int p = 0; p < a_.P; ++p) {
      c[p] = load_vector(k_.ent_trig, off + p);
      sn[p] = load_vector(k_.ent_trig, ent_plane_ + off + p);
      c[p] = lane_select(active, c[p], broadcast<V>(T(1)));
      sn[p] = lane_select(active, sn[p], V{});
    }
  }

  // dL/dg_p = 1/2 sum_i z_p z_p' Im(conj(lam_i) psi_i), the same before and after the layer.
  void rzz_gradient(int64_t t, int64_t l, Mask active) const {
    V acc[kMaxQubits] = {};
    for (int64_t i = 0; i < N_; ++i)
      rzz_grad_accumulate(a_.P, TableZZ{k_.zz_sign, i, N_}, lam_re_[i] * psi_im_[i] - lam_im_[i] * psi_re_[i], acc);
    for (int w = 0; w < W; ++w) {
      if (!real_[w] || !active[w]) continue;
      T* g = a_.grad_ent_angles + a_.ent_at(token(w, t), l);
      for (int p = 0; p < a_.P; ++p) g[p] = acc[p][w] / 2;
    }
  }

  // ------------------------------------------------------------ norm

  Wide squared_norm() const {
    Wide sum{};
    for (int64_t i = 0; i < N_; ++i) {
      const Wide r = __builtin_convertvector(psi_re_[i], Wide), m = __builtin_convertvector(psi_im_[i], Wide);
      sum += r * r + m * m;
    }
    return sum;
  }

  void take_norm_target() {
    if (sizeof(T) != sizeof(float)) return;
    const Wide sum = squared_norm();
    for (int w = 0; w < W; ++w)
      if (real_[w]) k_.inv_norm0[state_[w]] = norm_inverse(sum[w]);
  }

  // float32 only: scale each active lane back to its starting norm (state_program.h explains why).
  void restore_norm(Mask active) {
    if (sizeof(T) != sizeof(float)) return;
    const Wide now = squared_norm();
    V scale = broadcast<V>(T(1));
    for (int w = 0; w < W; ++w) {
      if (!real_[w] || !active[w]) continue;
      const double inverse_target = k_.inv_norm0[state_[w]];
      if (now[w] > 0 && inverse_target > 0) scale[w] = T(norm_scale(inverse_target, now[w]));
    }
    for (int64_t i = 0; i < N_; ++i) { psi_re_[i] *= scale; psi_im_[i] *= scale; }
  }

  // ------------------------------------------------------------ features

  void measure(int64_t t, Mask active) const {
    for (int q = 0; q < n_; ++q) {
      const int64_t stride = int64_t(1) << q;
      V wr{}, wi{}, z{};
      for (int64_t base = 0; base < N_; base += 2 * stride)
        for (int64_t i0 = base; i0 < base + stride; ++i0) {
          const int64_t i1 = i0 + stride;
          const V ar = psi_re_[i0], ai = psi_im_[i0], br = psi_re_[i1], bi = psi_im_[i1];
          wr += ar * br + ai * bi;
          wi += ar * bi - ai * br;
          z += ar * ar + ai * ai - br * br - bi * bi;
        }
      for (int w = 0; w < W; ++w) {
        if (!real_[w] || !active[w]) continue;
        T* f = a_.features + a_.feature_at(token(w, t)) + 3 * q;
        f[0] = 2 * wr[w];
        f[1] = 2 * wi[w];
        f[2] = z[w];
      }
    }
    if (a_.pair_features) measure_pairs(t, active);
  }

  // The amplitude of group p (bits q and q + 1 cleared) with local index r = b_q + 2 b_{q+1}.
  static int64_t pair_index(int64_t p, int q, int r) {
    return insert_zero_bit(insert_zero_bit(p, q), q + 1) | (int64_t(r & 1) << q) | (int64_t(r >> 1) << (q + 1));
  }

  // Nine <A_q B_{q+1}> per chain pair from the Gram sums of gates.h (gram_accumulate), per lane.
  void measure_pairs(int64_t t, Mask active) const {
    for (int q = 0; q + 1 < n_; ++q) {
      V acc[kPairGramReals] = {};
      for (int64_t p = 0; p < N_ / 4; ++p) {
        V vr[4], vi[4];
        for (int r = 0; r < 4; ++r) {
          const int64_t i = pair_index(p, q, r);
          vr[r] = psi_re_[i]; vi[r] = psi_im_[i];
        }
        for (int r = 0; r < 4; ++r) acc[r] += vr[r] * vr[r] + vi[r] * vi[r];
        for (int r = 0; r < 4; ++r)
          for (int c = r + 1; c < 4; ++c) {
            acc[gram_slot(r, c)] += vr[r] * vr[c] + vi[r] * vi[c];
            acc[gram_slot(r, c) + 1] += vr[r] * vi[c] - vi[r] * vr[c];
          }
      }
      for (int w = 0; w < W; ++w) {
        if (!real_[w] || !active[w]) continue;
        T lane[kPairGramReals];
        for (int k = 0; k < kPairGramReals; ++k) lane[k] = acc[k][w];
        pair_features_from_gram(lane, a_.features + a_.feature_at(token(w, t)) + 3 * n_ + 9 * q);
      }
    }
  }

  // lam += 2 M psi per qubit, M = [[gZ, gX - i gY], [gX + i gY, -gZ]] (gates.h qubit_feature_source).
  void add_feature_sources(int64_t t, Mask active) {
    for (int q = 0; q < n_; ++q) {
      V gx{}, gy{}, gz{};
      for (int w = 0; w < W; ++w) {
        if (!real_[w] || !active[w]) continue;
        const T* g = a_.grad_features + a_.feature_at(token(w, t)) + 3 * q;
        gx[w] = 2 * g[0]; gy[w] = 2 * g[1]; gz[w] = 2 * g[2];
      }
      const int64_t stride = int64_t(1) << q;
      for (int64_t base = 0; base < N_; base += 2 * stride)
        for (int64_t i0 = base; i0 < base + stride; ++i0) {
          const int64_t i1 = i0 + stride;
          const V xr = psi_re_[i0], xi = psi_im_[i0], yr = psi_re_[i1], yi = psi_im_[i1];
          lam_re_[i0] += gz * xr + gx * yr + gy * yi;
          lam_im_[i0] += gz * xi + gx * yi - gy * yr;
          lam_re_[i1] += gx * xr - gy * xi - gz * yr;
          lam_im_[i1] += gx * xi + gy * xr - gz * yi;
        }
    }
    if (a_.pair_features) add_pair_feature_sources(t, active);
  }

  // lam += 2 M psi per chain pair, M the 4x4 of gates.h pair_feature_source, built per lane.
  void add_pair_feature_sources(int64_t t, Mask active) {
    for (int q = 0; q + 1 < n_; ++q) {
      V mr[16] = {}, mi[16] = {};
      for (int w = 0; w < W; ++w) {
        if (!real_[w] || !active[w]) continue;
        Cplx<T> M[16];
        pair_feature_source(a_.grad_features + a_.feature_at(token(w, t)) + 3 * n_ + 9 * q, M);
        for (int k = 0; k < 16; ++k) { mr[k][w] = 2 * M[k].re; mi[k][w] = 2 * M[k].im; }
      }
      for (int64_t p = 0; p < N_ / 4; ++p) {
        int64_t idx[4];
        V vr[4], vi[4];
        for (int r = 0; r < 4; ++r) {
          idx[r] = pair_index(p, q, r);
          vr[r] = psi_re_[idx[r]]; vi[r] = psi_im_[idx[r]];
        }
        for (int r = 0; r < 4; ++r) {
          V ur{}, ui{};
          for (int c = 0; c < 4; ++c) {
            ur += mr[4 * r + c] * vr[c] - mi[4 * r + c] * vi[c];
            ui += mr[4 * r + c] * vi[c] + mi[4 * r + c] * vr[c];
          }
          lam_re_[idx[r]] += ur;
          lam_im_[idx[r]] += ui;
        }
      }
    }
  }

  // ------------------------------------------------------------ backward gate

  // Undoes gate (t, l, q) on psi and lam and writes the gradient of its angles
  // (gates.h rot_grad, vectorised): S[2a+b] = sum conj(lam_a) psi_b with psi
  // entering the gate and lam leaving it.
  void uncompute_gate(int64_t t, int64_t l, int q, Mask active) {
    V tr[kTrigPerGate], m[8];
    gate_trig(t, l, q, active, tr);
    matrix_from_trig(tr, m);
    // m^dagger: d[0] = conj m0, d[1] = conj m2, d[2] = conj m1, d[3] = conj m3 (re, im pairs).
    const V d0r = m[0], d0i = -m[1], d1r = m[4], d1i = -m[5];
    const V d2r = m[2], d2i = -m[3], d3r = m[6], d3i = -m[7];
    V S[8] = {};
    const int64_t stride = int64_t(1) << q;
    for (int64_t base = 0; base < N_; base += 2 * stride)
      for (int64_t i0 = base; i0 < base + stride; ++i0) {
        const int64_t i1 = i0 + stride;
        const V xr = psi_re_[i0], xi = psi_im_[i0], yr = psi_re_[i1], yi = psi_im_[i1];
        const V b0r = d0r * xr - d0i * xi + d1r * yr - d1i * yi;
        const V b0i = d0r * xi + d0i * xr + d1r * yi + d1i * yr;
        const V b1r = d2r * xr - d2i * xi + d3r * yr - d3i * yi;
        const V b1i = d2r * xi + d2i * xr + d3r * yi + d3i * yr;
        const V l0r = lam_re_[i0], l0i = lam_im_[i0], l1r = lam_re_[i1], l1i = lam_im_[i1];
        // conj(l) * b = (lr br + li bi) + i (lr bi - li br)
        S[0] += l0r * b0r + l0i * b0i; S[1] += l0r * b0i - l0i * b0r;
        S[2] += l0r * b1r + l0i * b1i; S[3] += l0r * b1i - l0i * b1r;
        S[4] += l1r * b0r + l1i * b0i; S[5] += l1r * b0i - l1i * b0r;
        S[6] += l1r * b1r + l1i * b1i; S[7] += l1r * b1i - l1i * b1r;
        psi_re_[i0] = b0r; psi_im_[i0] = b0i; psi_re_[i1] = b1r; psi_im_[i1] = b1i;
        lam_re_[i0] = d0r * l0r - d0i * l0i + d1r * l1r - d1i * l1i;
        lam_im_[i0] = d0r * l0i + d0i * l0r + d1r * l1i + d1i * l1r;
        lam_re_[i1] = d2r * l0r - d2i * l0i + d3r * l1r - d3i * l1i;
        lam_im_[i1] = d2r * l0i + d2i * l0r + d3r * l1i + d3i * l1r;
      }
    V grad[3];  // phi, theta, omega (gates.h rot_grad_parts)
    rot_grad_parts(tr[0], tr[1], tr[2], tr[3], tr[4], tr[5], S, broadcast<V>(T(0.5)), grad);
    const V g_phi = grad[0], g_theta = grad[1], g_omega = grad[2];
    for (int w = 0; w < W; ++w) {
      if (!real_[w] || !active[w]) continue;
      T* g = a_.grad_angles + a_.angle_at(token(w, t), l) + 3 * q;
      g[0] = g_phi[w];
      g[1] = g_theta[w];
      g[2] = g_omega[w];
    }
  }

  const LaneTask<T>& k_;
  const ScanArgs<T>& a_;
  const int64_t N_;
  const int n_;
  V *psi_re_, *psi_im_, *lam_re_, *lam_im_, *tmp_re_, *tmp_im_;
  bool real_[W];
  int64_t state_[W], len_[W], token0_[W];
  int64_t max_len_ = 0, trig_base_ = 0, ent_base_ = 0, trig_plane_ = 0, ent_plane_ = 0;
};

// Entry points, compiled once per instruction set (lane_kernels.cpp), for the
// full-width groups and the narrow ones.
void lane_forward_group(const LaneTask<float>& task, int64_t group, LaneScratch<float>& scratch);
void lane_forward_group(const LaneTask<double>& task, int64_t group, LaneScratch<double>& scratch);
void lane_backward_group(const LaneTask<float>& task, int64_t group, LaneScratch<float>& scratch);
void lane_backward_group(const LaneTask<double>& task, int64_t group, LaneScratch<double>& scratch);
void lane_forward_group(const LaneTask<float>& task, int64_t group,
                        LaneScratch<float, kNarrowLanes<float>>& scratch);
void lane_forward_group(const LaneTask<double>& task, int64_t group,
                        LaneScratch<double, kNarrowLanes<double>>& scratch);
void lane_backward_group(const LaneTask<float>& task, int64_t group,
                         LaneScratch<float, kNarrowLanes<float>>& scratch);
void lane_backward_group(const LaneTask<double>& task, int64_t group,
                         LaneScratch<double, kNarrowLanes<double>>& scratch);

}  // namespace qlam
