// The qlam operator library: schemas, input validation, the composite public
// ops and the shape-only (Meta) kernels used by torch.compile and torch.export.
#include <torch/library.h>

#include <string>

#include "scan_host.h"
#include "sizes_str.h"

namespace qlam {

namespace {

// The complex dtype of the state that goes with a real angle dtype.
at::ScalarType complex_of(at::ScalarType real) {
  return real == at::kDouble ? at::kComplexDouble : at::kComplexFloat;
}

void check_same_device(const Tensor& t, const Tensor& angles, const char* name) {
  TORCH_CHECK(t.device() == angles.device(), "qlam.scan: ", name, " is on ", t.device(),
              " but angles is on ", angles.device(), "; move all inputs to one device");
}

}  // namespace

Entangler parse_entangler(c10::string_view name) {
  if (name == "cnot") return Entangler::CNOT;
  if (name == "cz") return Entangler::CZ;
  if (name == "rzz") return Entangler::RZZ;
  if (name == "none") return Entangler::None;
  TORCH_CHECK(false, "qlam.scan: unknown entangler '", std::string(name),
              "'; expected one of 'cnot', 'cz', 'rzz', 'none'");
}

ScanShape check_forward_inputs(const Tensor& angles, const OptTensor& ent_angles,
                               const OptTensor& init_state, const OptTensor& lengths,
                               c10::string_view entangler, bool pair_features,
                               int64_t checkpoint_every, bool check_values) {
  ScanShape s;
  s.entangler = parse_entangler(entangler);
  s.pair_features = pair_features;
  TORCH_CHECK(angles.dim() == 6, "qlam.scan: angles must have shape (B, T, H, L, n, 3), got ",
              sizes_str(angles));
  TORCH_CHECK(angles.scalar_type() == at::kFloat || angles.scalar_type() == at::kDouble,
              "qlam.scan: angles must be float32 or float64, got ", angles.scalar_type());
  TORCH_CHECK(angles.sym_size(5) == 3,
              "qlam.scan: the last dimension of angles holds (phi, theta, omega) and must be 3, got ",
              sizes_str(angles));
  s.n = angles.sym_size(4).guard_int(__FILE__, __LINE__);
  TORCH_CHECK(s.n >= 1, "qlam.scan: n_qubits (angles.shape[4]) must be in [1, ", kMaxQubits, "], got ", s.n);
  TORCH_CHECK(s.n <= kMaxQubits, "qlam.scan: n_qubits (angles.shape[4]) must be in [1, ", kMaxQubits,
              "] for the fused kernels, got ", s.n, "; qlam.reference.scan simulates larger states (slowly)");
  s.B = angles.sym_size(0);
  s.T = angles.sym_size(1);
  s.H = angles.sym_size(2);
  s.L = angles.sym_size(3);
  s.N = int64_t(1) << s.n;
  s.K = num_features(static_cast<int>(s.n), pair_features);
  s.P = num_pairs(static_cast<int>(s.n));

  if (s.entangler == Entangler::RZZ) {
    TORCH_CHECK(ent_angles.has_value(),
                "qlam.scan: entangler='rzz' needs ent_angles of shape (B, T, H, L, P) with P = ", s.P,
                " pairs for n = ", s.n);
    const Tensor& e = *ent_angles;
    TORCH_CHECK(e.dim() == 5 && e.sym_size(0) == s.B && e.sym_size(1) == s.T && e.sym_size(2) == s.H &&
                    e.sym_size(3) == s.L && e.sym_size(4) == s.P,
                "qlam.scan: ent_angles must have shape (B, T, H, L, P) = (", s.B, ", ", s.T, ", ", s.H,
                ", ", s.L, ", ", s.P, "), got ", sizes_str(e));
    TORCH_CHECK(e.scalar_type() == angles.scalar_type(), "qlam.scan: ent_angles must have the dtype of angles (",
                angles.scalar_type(), "), got ", e.scalar_type());
    check_same_device(e, angles, "ent_angles");
  } else {
    TORCH_CHECK(!ent_angles.has_value(), "qlam.scan: ent_angles is only used with entangler='rzz' (got entangler='",
                std::string(entangler), "'); pass None");
  }

  if (init_state.has_value()) {
    const Tensor& z = *init_state;
    TORCH_CHECK(z.dim() == 3 && z.sym_size(0) == s.B && z.sym_size(1) == s.H && z.sym_size(2) == s.N,
                "qlam.scan: init_state must have shape (B, H, 2**n) = (", s.B, ", ", s.H, ", ", s.N,
                "), got ", sizes_str(z));
    TORCH_CHECK(z.scalar_type() == complex_of(angles.scalar_type()), "qlam.scan: init_state must be ",
                complex_of(angles.scalar_type()), " to go with ", angles.scalar_type(), " angles, got ",
                z.scalar_type());
    check_same_device(z, angles, "init_state");
  }

  if (lengths.has_value()) {
    const Tensor& len = *lengths;
    TORCH_CHECK(len.dim() == 1 && len.sym_size(0) == s.B, "qlam.scan: lengths must have shape (B,) = (", s.B,
                ",), got ", sizes_str(len));
    TORCH_CHECK(len.scalar_type() == at::kLong, "qlam.scan: lengths must be int64, got ", len.scalar_type());
    check_same_device(len, angles, "lengths");
    if (check_values && len.numel() > 0) {
      const auto lo = len.min().item<int64_t>(), hi = len.max().item<int64_t>();
      TORCH_CHECK(lo >= 0 && hi <= s.T.expect_int(), "qlam.scan: lengths must lie in [0, T] = [0, ", s.T,
                  "], got values in [", lo, ", ", hi, "]");
    }
  }

  TORCH_CHECK(checkpoint_every >= 0, "qlam.scan: checkpoint_every must be >= 0 (0 keeps no states), got ",
              checkpoint_every);
  s.checkpoint_every = checkpoint_every;
  // Checkpoint c holds the state after (c + 1) * k tokens, for every multiple of k up to T.
  s.num_checkpoints = checkpoint_every > 0 ? s.T / checkpoint_every : c10::SymInt(0);
  return s;
}

void check_backward_inputs(const ScanShape& s, const Tensor& angles, const OptTensor& grad_features,
                           const OptTensor& grad_final_state, const Tensor& final_state,
                           const Tensor& checkpoints) {
  const auto cdtype = complex_of(angles.scalar_type());
  if (grad_features.has_value()) {
    const Tensor& g = *grad_features;
    TORCH_CHECK(g.dim() == 4 && g.sym_size(0) == s.B && g.sym_size(1) == s.T && g.sym_size(2) == s.H &&
                    g.sym_size(3) == s.K,
                "qlam.scan_backward: grad_features must have shape (B, T, H, K), got ", sizes_str(g));
    TORCH_CHECK(g.scalar_type() == angles.scalar_type(), "qlam.scan_backward: grad_features must be ",
                angles.scalar_type(), ", got ", g.scalar_type());
    check_same_device(g, angles, "grad_features");
  }
  if (grad_final_state.has_value()) {
    const Tensor& g = *grad_final_state;
    TORCH_CHECK(g.dim() == 3 && g.sym_size(0) == s.B && g.sym_size(1) == s.H && g.sym_size(2) == s.N,
                "qlam.scan_backward: grad_final_state must have shape (B, H, 2**n), got ", sizes_str(g));
    TORCH_CHECK(g.scalar_type() == cdtype, "qlam.scan_backward: grad_final_state must be ", cdtype, ", got ",
                g.scalar_type());
    check_same_device(g, angles, "grad_final_state");
  }
  TORCH_CHECK(final_state.dim() == 3 && final_state.sym_size(0) == s.B && final_state.sym_size(1) == s.H &&
                  final_state.sym_size(2) == s.N && final_state.scalar_type() == cdtype,
              "qlam.scan_backward: final_state must be the forward's (B, H, 2**n) ", cdtype, " output, got ",
              sizes_str(final_state), " ", final_state.scalar_type());
  check_same_device(final_state, angles, "final_state");
  TORCH_CHECK(checkpoints.dim() == 4 && checkpoints.sym_size(0) == s.B && checkpoints.sym_size(1) == s.H &&
                  checkpoints.sym_size(2) == s.num_checkpoints && checkpoints.sym_size(3) == s.N &&
                  checkpoints.scalar_type() == cdtype,
              "qlam.scan_backward: checkpoints must be the forward's (B, H, C, 2**n) output with C = T // checkpoint_every = ",
              s.num_checkpoints, ", got ", sizes_str(checkpoints));
  check_same_device(checkpoints, angles, "checkpoints");
}

namespace {

Tensor contiguous_or_undefined(const OptTensor& t) { return t.has_value() ? t->contiguous() : Tensor(); }

}  // namespace

ForwardBuffers prepare_forward(const Tensor& angles, const OptTensor& ent_angles, const OptTensor& init_state,
                               const OptTensor& lengths, c10::string_view entangler, bool pair_features,
                               int64_t checkpoint_every) {
  ForwardBuffers f;
  f.shape = check_forward_inputs(angles, ent_angles, init_state, lengths, entangler, pair_features,
                                 checkpoint_every, /*check_values=*/true);
  const ScanShape& s = f.shape;
  f.angles = angles.contiguous();
  f.ent_angles = contiguous_or_undefined(ent_angles);
  f.init_state = contiguous_or_undefined(init_state);
  f.lengths = contiguous_or_undefined(lengths);
  const auto real = angles.options();
  const auto cplx = real.dtype(complex_of(angles.scalar_type()));
  f.features = at::zeros_symint({s.B, s.T, s.H, s.K}, real);
  f.final_state = at::empty_symint({s.B, s.H, s.N}, cplx);
  f.checkpoints = at::empty_symint({s.B, s.H, s.num_checkpoints, s.N}, cplx);
  return f;
}

BackwardBuffers prepare_backward(const OptTensor& grad_features, const OptTensor& grad_final_state,
                                 const Tensor& angles, const OptTensor& ent_angles, const Tensor& final_state,
                                 const Tensor& checkpoints, const OptTensor& lengths,
                                 c10::string_view entangler, bool pair_features, int64_t checkpoint_every) {
  BackwardBuffers b;
  // The lengths' values are checked again (one small read): the backward op can be
  // called directly, and lengths changed in place since the forward would index
  // out of bounds.
  b.shape = check_forward_inputs(angles, ent_angles, std::nullopt, lengths, entangler, pair_features,
                                 checkpoint_every, /*check_values=*/true);
  check_backward_inputs(b.shape, angles, grad_features, grad_final_state, final_state, checkpoints);
  const ScanShape& s = b.shape;
  b.grad_features = contiguous_or_undefined(grad_features);
  b.grad_final_state = contiguous_or_undefined(grad_final_state);
  b.angles = angles.contiguous();
  b.ent_angles = contiguous_or_undefined(ent_angles);
  b.final_state = final_state.contiguous();
  b.checkpoints = checkpoints.contiguous();
  b.lengths = contiguous_or_undefined(lengths);
  b.grad_angles = at::zeros_like(b.angles);
  b.grad_ent_angles = b.ent_angles.defined() ? at::zeros_like(b.ent_angles)
                                             : at::empty({0}, angles.options());
  b.grad_init_state = at::empty_symint({s.B, s.H, s.N}, final_state.options());
  return b;
}

namespace {

// ------------------------------------------------------------------ composites

std::tuple<Tensor, Tensor> scan_checkpointed_composite(const Tensor& angles, const OptTensor& ent_angles,
                                                       const OptTensor& init_state, const OptTensor& lengths,
                                                       c10::string_view entangler, bool pair_features,
                                                       int64_t checkpoint_every) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("qlam::scan_forward", "")
                       .typed<std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const OptTensor&, const OptTensor&,
                                                                 const OptTensor&, c10::string_view, bool, int64_t)>();
  auto out = op.call(angles, ent_angles, init_state, lengths, entangler, pair_features, checkpoint_every);
  return {std::get<0>(out), std::get<1>(out)};
}

std::tuple<Tensor, Tensor> scan_composite(const Tensor& angles, const OptTensor& ent_angles,
                                          const OptTensor& init_state, const OptTensor& lengths,
                                          c10::string_view entangler, bool pair_features) {
  return scan_checkpointed_composite(angles, ent_angles, init_state, lengths, entangler, pair_features, 0);
}

// ------------------------------------------------------------------ meta kernels

std::tuple<Tensor, Tensor, Tensor> scan_forward_meta(const Tensor& angles, const OptTensor& ent_angles,
                                                     const OptTensor& init_state, const OptTensor& lengths,
                                                     c10::string_view entangler, bool pair_features,
                                                     int64_t checkpoint_every) {
  const ScanShape s = check_forward_inputs(angles, ent_angles, init_state, lengths, entangler, pair_features,
                                           checkpoint_every, /*check_values=*/false);
  const auto real = angles.options();
  const auto cplx = real.dtype(complex_of(angles.scalar_type()));
  return {at::empty_symint({s.B, s.T, s.H, s.K}, real), at::empty_symint({s.B, s.H, s.N}, cplx),
          at::empty_symint({s.B, s.H, s.num_checkpoints, s.N}, cplx)};
}

std::tuple<Tensor, Tensor, Tensor> scan_backward_meta(const OptTensor& grad_features,
                                                      const OptTensor& grad_final_state, const Tensor& angles,
                                                      const OptTensor& ent_angles, const Tensor& final_state,
                                                      const Tensor& checkpoints, const OptTensor& lengths,
                                                      c10::string_view entangler, bool pair_features,
                                                      int64_t checkpoint_every) {
  const ScanShape s = check_forward_inputs(angles, ent_angles, std::nullopt, lengths, entangler, pair_features,
                                           checkpoint_every, /*check_values=*/false);
  check_backward_inputs(s, angles, grad_features, grad_final_state, final_state, checkpoints);
  return {at::empty_like(angles, at::MemoryFormat::Contiguous),
          ent_angles.has_value() ? at::empty_like(*ent_angles, at::MemoryFormat::Contiguous)
                                 : at::empty({0}, angles.options()),
          at::empty_symint({s.B, s.H, s.N}, final_state.options())};
}

std::tuple<Tensor, Tensor, Tensor> register_emulation_forward_meta(const Tensor& angles, const OptTensor& ent_angles,
                                                                   const OptTensor& init_state,
                                                                   const OptTensor& lengths,
                                                                   c10::string_view entangler, bool pair_features,
                                                                   int64_t checkpoint_every, int64_t) {
  return scan_forward_meta(angles, ent_angles, init_state, lengths, entangler, pair_features, checkpoint_every);
}

std::tuple<Tensor, Tensor, Tensor> register_emulation_backward_meta(
    const OptTensor& grad_features, const OptTensor& grad_final_state, const Tensor& angles,
    const OptTensor& ent_angles, const Tensor& final_state, const Tensor& checkpoints, const OptTensor& lengths,
    c10::string_view entangler, bool pair_features, int64_t checkpoint_every, int64_t) {
  return scan_backward_meta(grad_features, grad_final_state, angles, ent_angles, final_state, checkpoints, lengths,
                            entangler, pair_features, checkpoint_every);
}

}  // namespace

TORCH_LIBRARY(qlam, m) {
  // The public op (its schema is the project's contract; see docs/design.md §3).
  m.def(
      "scan(Tensor angles, Tensor? ent_angles, Tensor? init_state, Tensor? lengths, str entangler, "
      "bool pair_features) -> (Tensor features, Tensor final_state)");
  // The same, keeping every checkpoint_every-th state to bound the backward's drift.
  m.def(
      "scan_checkpointed(Tensor angles, Tensor? ent_angles, Tensor? init_state, Tensor? lengths, "
      "str entangler, bool pair_features, int checkpoint_every) -> (Tensor features, Tensor final_state)");
  // The device kernels behind both (no autograd of their own).
  m.def(
      "scan_forward(Tensor angles, Tensor? ent_angles, Tensor? init_state, Tensor? lengths, str entangler, "
      "bool pair_features, int checkpoint_every) -> (Tensor features, Tensor final_state, Tensor checkpoints)");
  m.def(
      "scan_backward(Tensor? grad_features, Tensor? grad_final_state, Tensor angles, Tensor? ent_angles, "
      "Tensor final_state, Tensor checkpoints, Tensor? lengths, str entangler, bool pair_features, "
      "int checkpoint_every) -> (Tensor grad_angles, Tensor grad_ent_angles, Tensor grad_init_state)");
  // Test hooks: the CUDA kernels' per-state program run on the CPU with 32
  // emulated warp lanes (same signatures as scan_forward / scan_backward).
  m.def(
      "_warp_emulation_forward(Tensor angles, Tensor? ent_angles, Tensor? init_state, Tensor? lengths, "
      "str entangler, bool pair_features, int checkpoint_every) -> (Tensor features, Tensor final_state, "
      "Tensor checkpoints)");
  m.def(
      "_warp_emulation_backward(Tensor? grad_features, Tensor? grad_final_state, Tensor angles, "
      "Tensor? ent_angles, Tensor final_state, Tensor checkpoints, Tensor? lengths, str entangler, "
      "bool pair_features, int checkpoint_every) -> (Tensor grad_angles, Tensor grad_ent_angles, "
      "Tensor grad_init_state)");
  // Test hooks: issue 15's register program (register_program.h: amplitudes in lane registers,
  // lanes_per_state lanes per state) run on the CPU by an exact emulation of its warp primitives.
  m.def(
      "_register_emulation_forward(Tensor angles, Tensor? ent_angles, Tensor? init_state, Tensor? lengths, "
      "str entangler, bool pair_features, int checkpoint_every, int lanes_per_state) -> (Tensor features, "
      "Tensor final_state, Tensor checkpoints)");
  m.def(
      "_register_emulation_backward(Tensor? grad_features, Tensor? grad_final_state, Tensor angles, "
      "Tensor? ent_angles, Tensor final_state, Tensor checkpoints, Tensor? lengths, str entangler, "
      "bool pair_features, int checkpoint_every, int lanes_per_state) -> (Tensor grad_angles, "
      "Tensor grad_ent_angles, Tensor grad_init_state)");
  // The same program launched on a GPU (cuda/register_cuda.cu); lanes_per_state 0 lets the host choose.
  m.def(
      "_register_forward(Tensor angles, Tensor? ent_angles, Tensor? init_state, Tensor? lengths, "
      "str entangler, bool pair_features, int checkpoint_every, int lanes_per_state) -> (Tensor features, "
      "Tensor final_state, Tensor checkpoints)");
  m.def(
      "_register_backward(Tensor? grad_features, Tensor? grad_final_state, Tensor angles, "
      "Tensor? ent_angles, Tensor final_state, Tensor checkpoints, Tensor? lengths, str entangler, "
      "bool pair_features, int checkpoint_every, int lanes_per_state) -> (Tensor grad_angles, "
      "Tensor grad_ent_angles, Tensor grad_init_state)");
  // Benchmark hook (cuda/latency_probe.cu, CUDA only, where the probes are listed): one warp times
  // a chain of dependent operations for benchmarks/latencies.py; returns {cycles, check}.
  m.def("_latency_probe(Tensor buffer, str probe, int steps, int warm, int work) -> Tensor");
  // Test hooks: the same program under an executor that finds missing syncs
  // (cpu/race_check_executor.h); skip_sync_line plants one (-1: none).
  m.def(
      "_race_check_forward(Tensor angles, Tensor? ent_angles, Tensor? init_state, Tensor? lengths, "
      "str entangler, bool pair_features, int checkpoint_every, int lanes, int skip_sync_line) -> "
      "(Tensor features, Tensor final_state, Tensor checkpoints, Tensor sync_lines)");
  m.def(
      "_race_check_backward(Tensor? grad_features, Tensor? grad_final_state, Tensor angles, "
      "Tensor? ent_angles, Tensor final_state, Tensor checkpoints, Tensor? lengths, str entangler, "
      "bool pair_features, int checkpoint_every, int lanes, int skip_sync_line) -> (Tensor grad_angles, "
      "Tensor grad_ent_angles, Tensor grad_init_state, Tensor sync_lines)");
  // Test hooks: the register program under an executor that records each lane's shared-scratch
  // accesses between syncs and raises on a race (cpu/register_race_check.cpp); `mutation` plants a
  // bug ("none": the program as written); stats = [syncs, scratch loads, scratch stores,
  // SHFL instructions per lane], each summed over the states.
  m.def(
      "_register_race_check_forward(Tensor angles, Tensor? ent_angles, Tensor? init_state, Tensor? lengths, "
      "str entangler, bool pair_features, int checkpoint_every, int lanes_per_state, str mutation) -> "
      "(Tensor features, Tensor final_state, Tensor checkpoints, Tensor stats)");
  m.def(
      "_register_race_check_backward(Tensor? grad_features, Tensor? grad_final_state, Tensor angles, "
      "Tensor? ent_angles, Tensor final_state, Tensor checkpoints, Tensor? lengths, str entangler, "
      "bool pair_features, int checkpoint_every, int lanes_per_state, str mutation) -> (Tensor grad_angles, "
      "Tensor grad_ent_angles, Tensor grad_init_state, Tensor stats)");
}

TORCH_LIBRARY_IMPL(qlam, CompositeExplicitAutograd, m) {
  m.impl("scan", &scan_composite);
  m.impl("scan_checkpointed", &scan_checkpointed_composite);
}

TORCH_LIBRARY_IMPL(qlam, Meta, m) {
  m.impl("scan_forward", &scan_forward_meta);
  m.impl("scan_backward", &scan_backward_meta);
  m.impl("_warp_emulation_forward", &scan_forward_meta);
  m.impl("_warp_emulation_backward", &scan_backward_meta);
  m.impl("_register_emulation_forward", &register_emulation_forward_meta);
  m.impl("_register_emulation_backward", &register_emulation_backward_meta);
  m.impl("_register_forward", &register_emulation_forward_meta);
  m.impl("_register_backward", &register_emulation_backward_meta);
}

}  // namespace qlam
