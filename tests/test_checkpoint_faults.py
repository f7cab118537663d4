"""Checkpoints that are damaged or not ours are refused with a clear message, and never run code."""
import os
import pickle
import random

import pytest
import torch

from qlam.train import CheckpointError, RunDirError, train
from qlam.train import checkpoint as ckpt_mod
from qlam.train.cli import eval_main
from train_fixtures import tiny_config, write_idx_dataset

MARKER = "qlam-pwned-marker"


class _Evil:
    """Unpickling this would create a marker file: proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A real last.pt of a tiny run, and its config."""
    tmp = tmp_path_factory.mktemp("ckpt")
    root = write_idx_dataset(tmp / "data" / "mnist", n_train=160, n_test=48).parent
    cfg = tiny_config(root, tmp / "runs", "lstm", train={"epochs": 1})
    train(cfg)
    return tmp / "runs" / "smnist-lstm-seed0" / "last.pt", cfg


def _refused(path, match):
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match=match) as info:
        ckpt_mod.load(path)
    assert path.read_bytes() == before  # left as it is, for inspection
    assert str(path) in str(info.value)
    return str(info.value)


def test_the_malicious_payload_does_run_code_when_unpickled_plainly(tmp_path):
    pickle.loads(pickle.dumps(_Evil(tmp_path / MARKER)))  # the control: the tests below are not vacuous
    assert (tmp_path / MARKER).exists()


def test_truncated_at_any_length_is_refused(good, tmp_path):
    data = good[0].read_bytes()
    cuts = [0, 1, 10, 100, len(data) // 2, len(data) - 22, len(data) - 1]
    cuts += random.Random(0).sample(range(len(data)), 13)
    for n in cuts:  # 20 lengths
        path = tmp_path / f"cut{n}.pt"
        path.write_bytes(data[:n])
        _refused(path, "empty or truncated|truncated or corrupt")


def test_flipped_bytes_are_refused_or_harmless(good, tmp_path):
    data, reference = good[0].read_bytes(), ckpt_mod.load(good[0])
    rng, refused = random.Random(1), 0
    for trial in range(40):
        flipped = bytearray(data)
        at = rng.randrange(len(data))
        flipped[at] ^= 0xFF
        path = tmp_path / f"flip{trial}.pt"
        path.write_bytes(bytes(flipped))
        try:
            loaded = ckpt_mod.load(path)
        except CheckpointError:
            refused += 1
            continue
        # A byte the reader never uses (zip padding, a file comment): the content must be exactly the same.
        assert loaded["checksum"] == reference["checksum"], at
        assert all(torch.equal(loaded["model"][k], reference["model"][k]) for k in reference["model"])
    print(f"{refused} of 40 flipped bytes refused, the rest harmless")
    assert refused >= 30


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_foreign_files_are_refused(tmp_path):
    cases = {
        "empty.pt": b"",
        "text.pt": b"epoch: 3\n",
        "random.pt": random.Random(2).randbytes(5000),
        "plain-pickle.pt": pickle.dumps({"format": ckpt_mod.FORMAT, "model": {}}),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    torch.save(torch.ones(3), tmp_path / "tensor.pt")
    torch.save({"model": {"w": torch.ones(2)}, "epoch": 3}, tmp_path / "other-trainer.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    for name in list(cases) + ["tensor.pt", "other-trainer.pt", "list.pt"]:
        _refused(tmp_path / name, "not a qlam training checkpoint|truncated|corrupt")
    assert "expected format 'qlam-checkpoint-v1'" in _refused(tmp_path / "other-trainer.pt", "not a qlam")


def test_a_hand_edited_checkpoint_fails_its_hash(good, tmp_path):
    payload = ckpt_mod.load(good[0])
    payload["state"]["best_val_acc"] = 0.99  # edited, old checksum kept
    torch.save(payload, tmp_path / "edited.pt")
    _refused(tmp_path / "edited.pt", "content hash does not match")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("kind", ["torch-zip", "pickle-protocol-2", "pickle-protocol-5", "inside-a-real-checkpoint"])
def test_a_pickle_that_would_run_code_is_refused_unread(good, tmp_path, kind):
    marker = tmp_path / MARKER
    path = tmp_path / "evil.pt"
    if kind == "torch-zip":
        torch.save({"format": ckpt_mod.FORMAT, "model": _Evil(marker)}, path)
    elif kind.startswith("pickle"):
        path.write_bytes(pickle.dumps(_Evil(marker), protocol=int(kind[-1])))
    else:
        payload = ckpt_mod.load(good[0])
        payload["state"]["history"] = [_Evil(marker)]
        torch.save(payload, path)
    if kind == "pickle-protocol-5":  # its FRAME opcode already stops torch's safe unpickler
        message = _refused(path, "not a torch file")
    else:
        message = _refused(path, "not a qlam training checkpoint.*refers to the Python object .*system.*refused unread")
    assert "weights_only=False" not in message  # torch's own text advises the unsafe load: never pass it on
    assert not marker.exists()
    assert eval_main([str(path)]) == 2 and not marker.exists()


def test_resume_from_a_malicious_last_pt_is_refused(good, tmp_path):
    path, cfg = good
    run = tmp_path / "runs" / "smnist-lstm-seed0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_bytes((path.parent / "config.yaml").read_bytes())
    marker = tmp_path / MARKER
    torch.save({"format": ckpt_mod.FORMAT, "x": _Evil(marker)}, run / "last.pt")
    with pytest.raises(CheckpointError, match="refused unread"):
        train(dict(cfg, output=dict(cfg["output"], dir=str(tmp_path / "runs"))), resume=True)
    assert not marker.exists()
    with pytest.raises(RunDirError, match="already holds a run"):  # and it is not silently overwritten
        train(dict(cfg, output=dict(cfg["output"], dir=str(tmp_path / "runs"))))
