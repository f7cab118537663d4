"""End-to-end training on tiny data in the real formats: every model, files, resume, checkpoints, errors."""
import json

import pytest
import torch

from qlam.train import CheckpointError, RunDirError, train
from qlam.train import checkpoint as ckpt_mod
from qlam.train.cli import eval_main, train_main
from qlam.train.config import config_from_dict
from qlam.train.records import read_metrics
from train_fixtures import tiny_config, write_cifar_batches, write_idx_dataset

TIMING = ("epoch_time_s", "tokens_per_s")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_idx_dataset(root / "mnist", n_train=160, n_test=48)
    write_cifar_batches(root, per_batch=24, n_test=32)
    return root


def _strip(rows):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


@pytest.mark.parametrize("model", ["qlam", "lstm", "transformer", "ssm"])
def test_every_model_learns_and_writes_its_files(data_root, tmp_path, model):
    cfg = tiny_config(data_root, tmp_path, model, train={"epochs": 4}, output={"plots": model == "qlam"})
    results = train(cfg)
    run = tmp_path / f"smnist-{model}-seed0"
    for name in ("config.yaml", "metrics.jsonl", "metrics.csv", "last.pt", "best.pt", "results.json"):
        assert (run / name).is_file(), name
    if model == "qlam":
        assert (run / "learning_curves.png").stat().st_size > 1000
    rows = read_metrics(run)
    assert len(rows) == 4 and rows[-1]["train_loss"] < rows[0]["train_loss"]
    saved = json.loads((run / "results.json").read_text())
    for key in ("task", "model", "params", "seed", "best_val_acc", "test_acc", "wall_time_s", "tokens_per_s"):
        assert key in saved
    assert saved["test_acc"] == results["test_acc"] and saved["params"] > 0 and saved["model"] == model
    assert len((run / "metrics.csv").read_text().splitlines()) == 5


def test_scifar_runs_end_to_end(data_root, tmp_path):
    cfg = tiny_config(data_root, tmp_path, "ssm", task="scifar10", train={"epochs": 1})
    assert train(cfg)["task"] == "scifar10"


def test_resume_after_a_stop_reproduces_the_uninterrupted_run(data_root, tmp_path):
    common = {"train": {"epochs": 3, "checkpoint_every_steps": 4}}
    full = train(tiny_config(data_root, tmp_path / "a", "qlam", **common))
    cfg = tiny_config(data_root, tmp_path / "b", "qlam", **common)
    with pytest.raises(Exception, match="stopped after 14 steps"):
        train(cfg, stop_after_steps=14)  # 8 steps per epoch: stopped mid-epoch 2, last saved at step 12
    assert ckpt_mod.load(tmp_path / "b" / "smnist-qlam-seed0" / "last.pt")["state"]["global_step"] == 12
    with pytest.raises(RunDirError, match="--resume"):
        train(cfg)
    resumed = train(cfg, resume=True)
    a, b = (read_metrics(p / "smnist-qlam-seed0") for p in (tmp_path / "a", tmp_path / "b"))
    assert _strip(a) == _strip(b)
    assert resumed["test_acc"] == full["test_acc"] and resumed["test_loss"] == full["test_loss"]
    wa, wb = (ckpt_mod.load(p / "smnist-qlam-seed0" / "last.pt")["model"] for p in (tmp_path / "a", tmp_path / "b"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_refuses_another_config(data_root, tmp_path):
    cfg = tiny_config(data_root, tmp_path, "lstm", train={"epochs": 1})
    train(cfg)
    cfg["train"]["lr"] = 0.5
    with pytest.raises(RunDirError, match="config differs"):
        train(cfg, resume=True)


def test_corrupt_or_truncated_checkpoints_are_refused_and_kept(data_root, tmp_path, capsys):
    cfg = tiny_config(data_root, tmp_path, "lstm", train={"epochs": 2})
    train(cfg)
    last = tmp_path / "smnist-lstm-seed0" / "last.pt"
    good = last.read_bytes()
    last.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        train(config_from_dict(cfg), resume=True)
    assert last.read_bytes() == good[: len(good) // 2]
    flipped = bytearray(good)
    # Flip bytes inside the largest tensor's storage (the zip entries are stored uncompressed).
    start = good.find(b"data/") + 2000
    flipped[start:start + 8] = bytes(b ^ 0xFF for b in flipped[start:start + 8])
    last.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="corrupt"):
        ckpt_mod.load(last)
    assert eval_main([str(last)]) == 2
    assert "qlam-eval: error:" in capsys.readouterr().err


def test_a_failed_save_never_replaces_the_last_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt_mod.save({"model": {"w": torch.ones(3)}}, path)
    good = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(CheckpointError, match="disk full.*previous last.pt.*unchanged"):
        ckpt_mod.save({"model": {"w": torch.zeros(3)}}, path)
    assert path.read_bytes() == good and list(tmp_path.iterdir()) == [path]
    assert torch.equal(ckpt_mod.load(path)["model"]["w"], torch.ones(3))


def test_cli_train_and_eval(data_root, tmp_path, capsys):
    import yaml
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(data_root, tmp_path / "runs", "transformer")))
    assert train_main([str(path), "train.epochs=1", "output.name=cli"]) == 0
    results = json.loads((tmp_path / "runs" / "cli" / "results.json").read_text())
    capsys.readouterr()
    assert eval_main([str(tmp_path / "runs" / "cli" / "best.pt"), "--split", "both"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["test_acc"] == results["test_acc"] and "val_acc" in out
    assert train_main([str(path), "train.epochs=1", "output.name=cli"]) == 2  # exists, no --resume
    assert "already holds a run" in capsys.readouterr().err


def test_missing_dataset_is_a_clear_cli_error(tmp_path, capsys):
    import yaml
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tmp_path / "nothing-here", tmp_path / "runs", "lstm")))
    assert train_main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "MNIST: the data files were not found" in err and str(tmp_path / "nothing-here") in err


def test_first_lines_name_the_run_before_any_progress_bar(data_root, tmp_path, capsys, monkeypatch):
    import yaml
    from qlam.train import trainer
    seen = []

    class Watched(trainer.Progress):
        def start(self, *args):  # the epoch's progress bar: what had been printed by then
            seen.append(capsys.readouterr().out)
            super().start(*args)

    monkeypatch.setattr(trainer, "Progress", Watched)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(data_root, tmp_path / "runs", "qlam", output={"progress": True})))
    assert train_main([str(path), "train.epochs=1"]) == 0
    n_params = json.loads((tmp_path / "runs" / "smnist-qlam-seed0" / "results.json").read_text())["params"]
    lines = seen[0].splitlines()
    assert lines[:4] == [
        f"qlam-train: config {path} train.epochs=1",
        f"qlam-train: task smnist (49 tokens x 1 channel, 10 classes), model qlam with {n_params:,} parameters",
        lines[2], f"qlam-train: run folder {tmp_path / 'runs' / 'smnist-qlam-seed0'}"]
    assert lines[2].startswith("qlam-train: device cpu (") and "threads" in lines[2]
    # A config given in Python (a dict, no file) says so.
    capsys.readouterr()
    train(tiny_config(data_root, tmp_path / "py", "lstm", train={"epochs": 1}))
    assert seen[1].splitlines()[0] == "qlam-train: config (given in Python, not read from a file)"
