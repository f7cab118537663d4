"""The QLAM recurrence in general quantum simulators, against qlam.ops.scan.

    bash benchmarks/bench_env.sh        # once: the simulators in ~/.cache/qlam/bench-venv
    ~/.cache/qlam/bench-venv/bin/python benchmarks/simulators.py [--quick] [--budget 45]

Every simulator runs the same circuits as qlam (docs/design.md §2): per token and
layer Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi) on every qubit,
then the CNOT ring; the state is carried from token to token and the features
<X_q>, <Y_q>, <Z_q> are measured after every token. Timed: value and gradient
of the sum of all features with respect to all angles, for a batch of state
sequences (B sequences x H = 4 heads = S independent states). Before timing,
each simulator's features and gradient are checked against qlam's (float64)
on a small case; one that fails the check, or does not import, is reported
with the exact error instead of a time.

How each simulator does the recurrence, as its documented tools allow:
- PennyLane default.qubit (torch interface, backprop): one QNode per token
  that prepares the carried state (StatePrep), applies the token's circuit and
  returns the features and the state; parameter broadcasting over the batch.
- PennyLane lightning.qubit (adjoint): adjoint differentiation cannot
  differentiate through a prepared state, so features after token t come from
  the circuit of tokens 1..t: T circuits per sequence, O(T^2) gates.
- Qiskit Aer (statevector): save_expectation_value after every token reads
  the features mid-circuit without collapse (one run per sequence); the
  gradient by the parameter-shift rule (two runs per angle, each reading the
  sum of the features per token): O(T^2) gates.
- TorchQuantum: per-token gates on a QuantumDevice that keeps the state, autograd.
qlam qubit q is the least significant bit (as in Qiskit); PennyLane and
TorchQuantum put wire 0 first (most significant), so qubit q is wire n-1-q.

Shapes: n = 8, L = 2, H = 4; each simulator starts small and doubles T (to
784), then B (to 128), while the next run is predicted to finish within
--budget seconds; the last finished shape is reported (it has been warmed up by
the smaller ones; repeated for a median when a run is short). qlam is timed
on the same shapes (float32 and float64) in the same run, and at the full
sMNIST shape (B=128, T=784).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from importlib.metadata import version

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qlam  # noqa: E402,F401
from qlam.reference import ring_pairs  # noqa: E402
from timing import machine, median_time, write_results  # noqa: E402

H = 4
SMNIST = dict(B=128, T=784)


def qlam_value_grad(angles: torch.Tensor):
    """features (S, T, 3n) and d sum(features) / d angles, angles (S, T, L, n, 3)."""
    a = angles.detach().requires_grad_()
    features, _ = qlam.ops.scan(a.unsqueeze(2))
    features.sum().backward()
    return features[:, :, 0].detach(), a.grad


class PennyLaneDefault:
    name = "PennyLane default.qubit (backprop)"
    complexity = 1  # time ~ T

    def __init__(self, n, L):
        import pennylane as qml
        self.version = f"pennylane {qml.__version__}"
        self.n, self.L = n, L
        wire = [n - 1 - q for q in range(n)]
        obs = [P(wire[q]) for q in range(n) for P in (qml.PauliX, qml.PauliY, qml.PauliZ)]

        @qml.qnode(qml.device("default.qubit", wires=n), interface="torch", diff_method="backprop")
        def token(state, a):  # a: (S, L, n, 3)
            qml.StatePrep(state, wires=range(n))
            for layer in range(L):
                for q in range(n):
                    qml.Rot(a[:, layer, q, 0], a[:, layer, q, 1], a[:, layer, q, 2], wires=wire[q])
                for c, t in ring_pairs(n):
                    qml.CNOT(wires=[wire[c], wire[t]])
            return [qml.expval(o) for o in obs] + [qml.state()]

        self.token = token

    def run(self, angles):
        S, T = angles.shape[:2]
        a = angles.detach().requires_grad_()
        state = torch.zeros(S, 2**self.n, dtype=torch.complex128)
        state[:, 0] = 1
        features = []
        for t in range(T):
            *f, state = self.token(state, a[:, t])
            features.append(torch.stack(f, -1).reshape(S, -1))
        features = torch.stack(features, 1)
        features.sum().backward()
        return features.detach(), a.grad


class PennyLaneLightning:
    name = "PennyLane lightning.qubit (adjoint)"
    complexity = 2  # time ~ T^2: one circuit per prefix

    def __init__(self, n, L):
        import pennylane as qml
        import pennylane_lightning  # noqa: F401 - fails here when it is not installed
        self.version = f"pennylane {qml.__version__}, pennylane-lightning {version('pennylane-lightning')}"
        self.n, self.L = n, L
        wire = [n - 1 - q for q in range(n)]
        obs = [P(wire[q]) for q in range(n) for P in (qml.PauliX, qml.PauliY, qml.PauliZ)]

        @qml.qnode(qml.device("lightning.qubit", wires=n), interface="torch", diff_method="adjoint",
                   device_vjp=True)
        def prefix(a):  # a: (S, t, L, n, 3): the circuit of tokens 1..t
            for k in range(a.shape[1]):
                for layer in range(L):
                    for q in range(n):
                        qml.Rot(a[:, k, layer, q, 0], a[:, k, layer, q, 1], a[:, k, layer, q, 2], wires=wire[q])
                    for c, t in ring_pairs(n):
                        qml.CNOT(wires=[wire[c], wire[t]])
            return [qml.expval(o) for o in obs]

        self.prefix = prefix

    def run(self, angles):
        S, T = angles.shape[:2]
        a = angles.detach().requires_grad_()
        features = []
        for t in range(1, T + 1):
            f = self.prefix(a[:, :t])
            features.append(torch.stack(f, -1).reshape(S, -1))
        features = torch.stack(features, 1)
        features.sum().backward()
        return features.detach(), a.grad


class QiskitAer:
    name = "Qiskit Aer statevector (parameter shift)"
    complexity = 2  # time ~ T^2: two runs per angle

    def __init__(self, n, L):
        import qiskit
        import qiskit_aer
        from qiskit.quantum_info import Pauli, SparsePauliOp
        self.version = f"qiskit {qiskit.__version__}, qiskit-aer {qiskit_aer.__version__}"
        self.n, self.L = n, L
        self.sim = qiskit_aer.AerSimulator(method="statevector", max_parallel_threads=torch.get_num_threads())
        self.Pauli, self.SparsePauliOp, self.circuits = Pauli, SparsePauliOp, {}

    def circuit(self, T, summed):
        """Parameterised circuit of T tokens; reads every feature after every token (labels f{t}_{k}),
        or (summed) only their sum per token (labels s{t}), which is all the gradient needs."""
        key = (T, summed)
        if key not in self.circuits:
            from qiskit import QuantumCircuit
            from qiskit.circuit import ParameterVector
            n, L = self.n, self.L
            params = ParameterVector("a", T * L * n * 3)
            qc = QuantumCircuit(n)
            total = self.SparsePauliOp([("I" * (n - 1 - q)) + P + ("I" * q) for q in range(n) for P in "XYZ"])
            i = 0
            for t in range(T):
                for _ in range(L):
                    for q in range(n):
                        qc.rz(params[i], q)
                        qc.ry(params[i + 1], q)
                        qc.rz(params[i + 2], q)
                        i += 3
                    for c, tq in ring_pairs(n):
                        qc.cx(c, tq)
                if summed:
                    qc.save_expectation_value(total, list(range(n)), label=f"s{t}")
                else:
                    for q in range(n):
                        for k, P in enumerate("XYZ"):
                            qc.save_expectation_value(self.Pauli(P), [q], label=f"f{t}_{3 * q + k}")
            self.circuits[key] = (qc, params)
        return self.circuits[key]

    def _run(self, qc, params, values):  # values: (E, P) -> one experiment per row
        binds = [{p: values[:, j].tolist() for j, p in enumerate(params)}]
        return self.sim.run(qc, parameter_binds=binds).result()

    def run(self, angles):
        S, T = angles.shape[:2]
        n = self.n
        flat = angles.reshape(S, -1).numpy()
        P = flat.shape[1]
        qc, params = self.circuit(T, summed=False)
        result = self._run(qc, params, flat)
        features = np.array([[[result.data(s)[f"f{t}_{k}"] for k in range(3 * n)] for t in range(T)]
                             for s in range(S)])
        qc, params = self.circuit(T, summed=True)
        shifts = np.concatenate([np.eye(P), -np.eye(P)]) * (np.pi / 2)
        grads = []
        for s in range(S):  # d F / d a_p = (F(a_p + pi/2) - F(a_p - pi/2)) / 2 for RZ, RY angles
            result = self._run(qc, params, flat[s] + shifts)
            F = np.array([sum(result.data(e)[f"s{t}"] for t in range(T)) for e in range(2 * P)])
            grads.append((F[:P] - F[P:]) / 2)
        return torch.from_numpy(features), torch.from_numpy(np.array(grads)).reshape(angles.shape)


class TorchQuantum:
    name = "TorchQuantum"
    complexity = 1

    def __init__(self, n, L):
        import torchquantum as tq
        import torchquantum.functional as tqf
        self.version = f"torchquantum {version('torchquantum')}"
        self.tq, self.tqf, self.n, self.L = tq, tqf, n, L

    def run(self, angles):
        tq, tqf, n = self.tq, self.tqf, self.n
        S, T = angles.shape[:2]
        a = angles.detach().requires_grad_()
        wire = [n - 1 - q for q in range(n)]
        qdev = tq.QuantumDevice(n_wires=n, bsz=S, device="cpu")
        qdev.reset_states(S)
        features = []
        for t in range(T):
            for layer in range(self.L):
                for q in range(n):
                    tqf.rz(qdev, wires=wire[q], params=a[:, t, layer, q, 0])
                    tqf.ry(qdev, wires=wire[q], params=a[:, t, layer, q, 1])
                    tqf.rz(qdev, wires=wire[q], params=a[:, t, layer, q, 2])
                for c, tg in ring_pairs(n):
                    tqf.cnot(qdev, wires=[wire[c], wire[tg]])
            f = [tq.measurement.expval(qdev, wires=[wire[q]], observables=[P()])
                 for q in range(n) for P in (tq.PauliX, tq.PauliY, tq.PauliZ)]
            features.append(torch.cat([x.reshape(S, 1) for x in f], -1))
        features = torch.stack(features, 1)
        features.sum().backward()
        return features.detach(), a.grad


SIMULATORS = (PennyLaneDefault, PennyLaneLightning, QiskitAer, TorchQuantum)


def check(sim, n, L, tol=1e-6) -> str | None:
    """None if the simulator's features and gradient match qlam's (float64) on a small case, else why not."""
    torch.manual_seed(1)
    angles = torch.randn(2, 3, L, n, 3, dtype=torch.float64)
    want_f, want_g = qlam_value_grad(angles)
    got_f, got_g = sim.run(angles)
    df = (got_f.double() - want_f).abs().max().item()
    dg = (got_g.double() - want_g).abs().max().item()
    if df > tol or dg > tol:
        return f"does not match qlam on B=2, T=3, n={n}, L={L}: max |features diff| {df:.2e}, max |grad diff| {dg:.2e}"
    return None


def ladder(max_B, max_T):
    """(B, T): T doubles to max_T at B = 1, then B doubles to max_B."""
    shapes, T = [], 2
    while T < max_T:
        shapes.append((1, T))
        T *= 2
    shapes.append((1, max_T))
    B = 2
    while B <= max_B:
        shapes.append((B, max_T))
        B *= 2
    return shapes


def time_simulator(sim, n, L, budget, max_B, max_T, repeats):
    """Runs up the ladder while the next run is predicted to fit the budget; returns the last shape's timing."""
    last = None
    for B, T in ladder(max_B, max_T):
        if last is not None:
            lB, lT, lt = last
            growth = (B / lB) * (T / lT) ** sim.complexity
            if lt * growth > budget:
                print(f"  next (B={B}, T={T}) predicted {lt * growth:.0f} s > budget: stop", flush=True)
                break
        angles = torch.randn(B * H, T, L, n, 3, dtype=torch.float64)
        t0 = time.perf_counter()
        sim.run(angles)
        seconds = time.perf_counter() - t0
        print(f"  B={B} T={T}: {seconds:.2f} s", flush=True)
        last = (B, T, seconds)
    B, T, seconds = last
    if seconds < 5:  # cheap enough for a median
        angles = torch.randn(B * H, T, L, n, 3, dtype=torch.float64)
        seconds = median_time(lambda: sim.run(angles), "cpu", warmup=0, repeats=repeats)
    return B, T, seconds


def qlam_time(B, T, n, L, dtype, repeats):
    angles = torch.randn(B * H, T, L, n, 3, dtype=dtype)
    return median_time(lambda: qlam_value_grad(angles), "cpu", warmup=1, repeats=repeats)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="qlam's device; the simulators here run on CPU (cuda: not implemented, no rows)")
    parser.add_argument("--quick", action="store_true", help="budget 3 s, T <= 16, B <= 2 (a smoke test)")
    parser.add_argument("--budget", type=float, default=45.0, help="seconds one simulator run may take")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: torch's); 1 avoids stalls when other jobs share the cores")
    parser.add_argument("--only", nargs="*", help="substrings of simulator names to run")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # lightning's OpenMP, read when it loads
    if args.device != "cpu":
        parser.error("only --device cpu: the simulators compared here run on the CPU")
    n, L = args.n, args.layers
    budget = 3.0 if args.quick else args.budget
    max_B, max_T = (2, 16) if args.quick else (SMNIST["B"], SMNIST["T"])

    print(f"qlam at the sMNIST shape (B={max_B}, T={max_T}) ...", flush=True)
    full = {dt: qlam_time(max_B, max_T, n, L, getattr(torch, dt), args.repeats) for dt in ("float32", "float64")}
    full_per = {dt: s / (max_B * H * max_T) for dt, s in full.items()}
    print(full, flush=True)
    rows = []
    for cls in SIMULATORS:
        if args.only and not any(o.lower() in cls.name.lower() for o in args.only):
            continue
        row = {"simulator": cls.name}
        print(f"[{cls.name}]", flush=True)
        try:
            sim = cls(n, L)
            row["version"] = sim.version
        except Exception as error:  # noqa: BLE001 - recorded, not hidden
            row["error"] = f"import/setup failed: {type(error).__name__}: {error}"
            print("  ", row["error"], flush=True)
            rows.append(row)
            continue
        try:
            problem = check(cls(4, L), 4, L)
            if problem:
                row["error"] = problem
            else:
                row["check"] = "features and gradient match qlam to 1e-6 (B=2, T=3, n=4)"
                B, T, seconds = time_simulator(sim, n, L, budget, max_B, max_T, args.repeats)
                q32 = qlam_time(B, T, n, L, torch.float32, args.repeats)
                q64 = qlam_time(B, T, n, L, torch.float64, args.repeats)
                state_tokens = B * H * T
                row.update(B=B, T=T, H=H, n=n, L=L, seconds=seconds, ns_per_state_token=seconds / state_tokens * 1e9,
                           qlam_f32_same_shape_s=q32, qlam_f64_same_shape_s=q64,
                           ratio_vs_qlam_f32_same_shape=seconds / q32, ratio_vs_qlam_f64_same_shape=seconds / q64,
                           ratio_vs_qlam_f32_smnist=seconds / state_tokens / full_per["float32"])
        except Exception as error:  # noqa: BLE001
            row["error"] = f"run failed: {type(error).__name__}: {error}"
            traceback.print_exc()
        print("  ", row, flush=True)
        rows.append(row)
    write(rows, full, max_B, max_T, n, L, budget, args)


def write(rows, full, max_B, max_T, n, L, budget, args):
    meta = machine()
    meta.update(device="cpu", quick=args.quick, n=n, L=L, H=H, budget_s=budget,
                qlam_smnist_shape=dict(B=max_B, T=max_T), qlam_smnist_s=full,
                command="python benchmarks/simulators.py " + " ".join(sys.argv[1:]))
    per = {dt: s / (max_B * H * max_T) * 1e9 for dt, s in full.items()}
    lines = [
        "# QLAM recurrence in quantum simulators vs qlam.ops.scan (cpu)",
        "",
        f"Machine: {meta['cpu']}, {meta['cpu_threads']} threads; torch {meta['torch']}. Command: "
        f"`{meta['command']}`.",
        f"Value + gradient (of the sum of all features w.r.t. all angles) of the whole recurrence, n = {n}, "
        f"L = {L}, H = {H}, cnot ring; simulators in complex128. Each simulator at the largest (B, T) "
        f"its run finished within {budget:.0f} s (T grown first, then B); qlam timed on the same shape in the "
        "same run. Ratio = simulator time / qlam time (higher = qlam faster).",
        f"qlam at B={max_B}, T={max_T}: float32 {full['float32']:.3f} s ({per['float32']:.0f} ns/state-token), "
        f"float64 {full['float64']:.3f} s ({per['float64']:.0f} ns/state-token).",
        "",
        "| simulator | B | T | time | ns/state-token | qlam f32, same shape | ratio | ratio vs qlam f64 "
        "| ratio vs qlam f32 at full shape (per state-token) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['simulator']} | - | - | not timed: {r['error']} | | | | | |")
        else:
            lines.append(
                f"| {r['simulator']} | {r['B']} | {r['T']} | {r['seconds']:.2f} s | {r['ns_per_state_token']:.0f} "
                f"| {r['qlam_f32_same_shape_s']:.4f} s | {r['ratio_vs_qlam_f32_same_shape']:.0f}x "
                f"| {r['ratio_vs_qlam_f64_same_shape']:.0f}x | {r['ratio_vs_qlam_f32_smnist']:.0f}x |")
    lines += ["", "Versions: " + "; ".join(f"{r['simulator']}: {r['version']}" for r in rows if "version" in r)]
    name = "simulators_cpu" + ("_quick" if args.quick else "")
    paths = write_results(name, rows, "\n".join(lines) + "\n", meta)
    print("\n".join(lines))
    print("wrote", *paths)


if __name__ == "__main__":
    main()
