"""torch.compile(fullgraph=True) and torch.export see the op without graph breaks."""
import pytest
import torch
from torch import nn

import qlam


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = qlam.QLAM(3, 8, batch_first=True, n_qubits=3, n_heads=2, depth=1, entangler="rzz",
                             pair_features=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        out, state = self.rnn(x)
        return self.head(out.mean(1)), state


def test_compile_fullgraph_matches_eager():
    torch.manual_seed(0)
    model = Model()
    x = torch.randn(2, 5, 3)
    eager_out, eager_state = model(x)
    eager_out.sum().backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out, state = compiled(x)
    out.sum().backward()
    torch.testing.assert_close(out, eager_out)
    torch.testing.assert_close(state, eager_state)
    for g, e in zip((p.grad for p in model.parameters()), eager_grads):
        torch.testing.assert_close(g, e)


@pytest.mark.slow
def test_compile_inductor_matches_eager():
    torch.manual_seed(0)
    model = Model()
    x = torch.randn(2, 5, 3)
    eager_out, _ = model(x)
    out, _ = torch.compile(model, fullgraph=True)(x)
    torch.testing.assert_close(out, eager_out)


def test_export():
    class ScanOnly(nn.Module):
        def forward(self, angles):
            return torch.ops.qlam.scan(angles, None, None, None, "cnot", False)

    angles = torch.randn(2, 4, 2, 1, 3, 3)
    exported = torch.export.export(ScanOnly(), (angles,))
    assert any("qlam.scan" in str(node.target) for node in exported.graph.nodes)
    torch.testing.assert_close(exported.module()(angles), ScanOnly()(angles))
