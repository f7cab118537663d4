// The raw view of one scan call that the kernels work on: contiguous buffers
// and sizes, filled in by the host code after validation (ops.cpp).
#pragma once

#include <cstdint>

#include "gates.h"

namespace qlam {

template <typename T>
struct ScanArgs {
  // Sizes.
  int64_t B = 0, T_len = 0, H = 0, L = 0;
  int n = 0;
  int64_t N = 0;  // 2**n amplitudes
  int K = 0;      // features per token and head
  int P = 0;      // entangled pairs (used by rzz)
  Entangler entangler = Entangler::CNOT;
  bool pair_features = false;
  int64_t checkpoint_every = 0;  // 0: keep no intermediate states
  int64_t num_checkpoints = 0;   // C = T / checkpoint_every

  // Inputs (contiguous, row-major in the documented shapes).
  const T* angles = nullptr;             // (B, T, H, L, n, 3)
  const T* ent_angles = nullptr;         // (B, T, H, L, P) or null
  const Cplx<T>* init_state = nullptr;   // (B, H, N) or null for |0...0>
  const int64_t* lengths = nullptr;      // (B) or null for all T

  // Forward outputs.
  T* features = nullptr;                 // (B, T, H, K), zero-filled by the caller
  Cplx<T>* final_state = nullptr;        // (B, H, N)
  Cplx<T>* checkpoints = nullptr;        // (B, H, C, N) or null

  // Backward inputs and outputs.
  const T* grad_features = nullptr;          // (B, T, H, K) or null for zeros
  const Cplx<T>* grad_final_state = nullptr; // (B, H, N) or null for zeros
  const Cplx<T>* saved_final_state = nullptr;
  const Cplx<T>* saved_checkpoints = nullptr;
  T* grad_angles = nullptr;              // (B, T, H, L, n, 3), zero-filled
  T* grad_ent_angles = nullptr;          // (B, T, H, L, P), zero-filled, or null
  Cplx<T>* grad_init_state = nullptr;    // (B, H, N)

  QLAM_HD int64_t num_states() const { return B * H; }
  QLAM_HD int64_t length_of(int64_t b) const { return lengths ? lengths[b] : T_len; }
  // Offsets of token t of state s = b * H + h in the per-token arrays.
  QLAM_HD int64_t token(int64_t s, int64_t t) const {
    const int64_t b = s / H, h = s % H;
    return (b * T_len + t) * H + h;
  }
  QLAM_HD int64_t angle_offset(int64_t s, int64_t t, int64_t l) const { return angle_at(token(s, t), l); }
  QLAM_HD int64_t ent_offset(int64_t s, int64_t t, int64_t l) const { return ent_at(token(s, t), l); }
  QLAM_HD int64_t feature_offset(int64_t s, int64_t t) const { return feature_at(token(s, t)); }
  // The same from a token index (token(s, t) = token(s, 0) + t * H), for callers that keep
  // token(s, 0) per state instead of dividing by H on every access.
  QLAM_HD int64_t angle_at(int64_t tok, int64_t l) const { return (tok * L + l) * n * 3; }
  QLAM_HD int64_t ent_at(int64_t tok, int64_t l) const { return (tok * L + l) * P; }
  QLAM_HD int64_t feature_at(int64_t tok) const { return tok * K; }
  // Checkpoint c holds the state after (c + 1) * checkpoint_every tokens.
  QLAM_HD bool is_checkpoint(int64_t tokens_done) const {
    return checkpoint_every > 0 && tokens_done > 0 && tokens_done <= T_len &&
           tokens_done % checkpoint_every == 0;
  }
  QLAM_HD int64_t checkpoint_offset(int64_t s, int64_t tokens_done) const {
    return (s * num_checkpoints + tokens_done / checkpoint_every - 1) * N;
  }
};

}  // namespace qlam
