"""An independent check that shares no code with the kernels or the reference:
each token's full 2**n x 2**n unitary is built from Kronecker products of 2x2
gates in numpy, and the features are <psi|P|psi> with full Pauli matrices."""
import numpy as np
import pytest
import torch

import qlam

I2 = np.eye(2)
X = np.array([[0, 1], [1, 0]], dtype=complex)
Y = np.array([[0, -1j], [1j, 0]])
Z = np.diag([1.0, -1.0]).astype(complex)
P0 = np.diag([1.0, 0.0])  # |0><0|
P1 = np.diag([0.0, 1.0])  # |1><1|


def on_qubit(op, q, n):
    """op on qubit q of n; qubit 0 is the least significant bit, i.e. the last Kronecker factor."""
    factors = [op if k == q else I2 for k in reversed(range(n))]
    out = factors[0]
    for f in factors[1:]:
        out = np.kron(out, f)
    return out


def rz(a):
    return np.diag([np.exp(-0.5j * a), np.exp(0.5j * a)])


def ry(a):
    return np.array([[np.cos(a / 2), -np.sin(a / 2)], [np.sin(a / 2), np.cos(a / 2)]])


def pairs(n):
    return [(q, (q + 1) % n) for q in range(n if n >= 3 else n - 1)]


def entangler_matrix(kind, n, g):
    dim = 2**n
    U = np.eye(dim, dtype=complex)
    for p, (a, b) in enumerate(pairs(n)):
        if kind == "cnot":
            gate = on_qubit(P0, a, n) + on_qubit(P1, a, n) @ on_qubit(X, b, n)
        elif kind == "cz":
            gate = on_qubit(P0, a, n) + on_qubit(P1, a, n) @ on_qubit(Z, b, n)
        elif kind == "rzz":
            zz = on_qubit(Z, a, n) @ on_qubit(Z, b, n)
            gate = np.cos(g[p] / 2) * np.eye(dim) - 1j * np.sin(g[p] / 2) * zz  # exp(-i g/2 ZZ)
        else:
            gate = np.eye(dim)
        U = gate @ U
    return U


def token_unitary(angles, ent, kind, n):
    U = np.eye(2**n, dtype=complex)
    for layer in range(angles.shape[0]):
        for q in range(n):
            phi, theta, omega = angles[layer, q]
            U = on_qubit(rz(omega) @ ry(theta) @ rz(phi), q, n) @ U
        U = entangler_matrix(kind, n, ent[layer] if ent is not None else None) @ U
    return U


def observables(n, pair_features):
    obs = [on_qubit(P, q, n) for q in range(n) for P in (X, Y, Z)]
    if pair_features:
        obs += [on_qubit(A, q, n) @ on_qubit(B, q + 1, n) for q in range(n - 1) for A in (X, Y, Z) for B in (X, Y, Z)]
    return obs


@pytest.mark.parametrize("kind", ["cnot", "cz", "rzz", "none"])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_features_match_full_unitary_simulation(kind, n):
    rng = np.random.default_rng(n * 10 + len(kind))
    T, L = 4, 2
    angles = rng.uniform(-np.pi, np.pi, size=(T, L, n, 3))
    P = len(pairs(n))
    ent = rng.uniform(-np.pi, np.pi, size=(T, L, P)) if kind == "rzz" else None
    psi = np.zeros(2**n, dtype=complex)
    psi[0] = 1
    obs = observables(n, pair_features=n >= 2)
    expected = []
    for t in range(T):
        psi = token_unitary(angles[t], None if ent is None else ent[t], kind, n) @ psi
        expected.append([np.real(psi.conj() @ O @ psi) for O in obs])
    a = torch.tensor(angles)[None, :, None]  # (1, T, 1, L, n, 3)
    e = torch.tensor(ent)[None, :, None] if ent is not None else None
    features, final = qlam.ops.scan(a, e, None, None, kind, n >= 2)
    np.testing.assert_allclose(features[0, :, 0].numpy(), np.array(expected), atol=1e-12)
    np.testing.assert_allclose(final[0, 0].numpy(), psi, atol=1e-12)
