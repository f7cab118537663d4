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


def test_compile_of_the_chunked_recomputing_classifier_matches_eager():
    # model.qlam.recompute_chunk puts torch.utils.checkpoint in a loop over chunks: train.compile must keep it exact
    from qlam.models import build_model
    from qlam.train.config import config_from_dict

    torch.manual_seed(0)
    cfg = config_from_dict({"model": {"name": "qlam", "d_model": 16, "n_layers": 2,
                                      "qlam": {"n_qubits": 3, "n_heads": 2, "depth": 1, "recompute_chunk": 5}}})
    model = build_model(cfg.model, 3, 10, 23)
    x = torch.randn(3, 23, 3)
    eager = model(x).logsumexp(-1).sum()
    eager.backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled = torch.compile(model, backend="aot_eager")(x).logsumexp(-1).sum()
    compiled.backward()
    torch.testing.assert_close(compiled, eager)
    for g, e in zip((p.grad for p in model.parameters()), eager_grads):
        torch.testing.assert_close(g, e)
