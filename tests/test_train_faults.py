"""Training under faults: an unwritable run folder, a full disk, a non-finite loss or gradient."""
import errno
import json

import pytest
import torch
import yaml

from qlam.train import CheckpointError, RunDirError, train
from qlam.train import checkpoint as ckpt_mod
from qlam.train.cli import train_main
from qlam.train.config import config_from_dict
from qlam.train.records import RecordWriteError, read_metrics
from qlam.train.trainer import NonFiniteError, Trainer
from train_fixtures import tiny_config, write_idx_dataset

TIMING = ("epoch_time_s", "tokens_per_s")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_idx_dataset(tmp_path_factory.mktemp("data") / "mnist", n_train=160, n_test=48).parent


@pytest.fixture(autouse=True)
def _keep_thread_count():  # train.num_threads sets torch's global thread count in-process
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _cfg(data_root, out, **train_opts):  # 8 steps per epoch, last.pt every 3 steps
    return tiny_config(data_root, out, "lstm", train={"epochs": 2, "checkpoint_every_steps": 3, "num_threads": 1,
                                                      **train_opts})


def _strip(rows):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def _all_finite(path):
    payload = ckpt_mod.load(path)
    tensors = list(payload["model"].values())
    tensors += [v for s in payload["optimizer"]["state"].values() for v in s.values() if torch.is_tensor(v)]
    return all(torch.isfinite(t.float()).all() for t in tensors)


# -- the run folder -----------------------------------------------------------------------------------

def test_an_unwritable_run_folder_fails_before_any_data_is_read(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    # The data root does not exist: had data loading come first, the error would be DatasetNotFoundError.
    cfg = tiny_config(tmp_path / "no-data", blocker, "lstm")
    with pytest.raises(RunDirError, match="cannot be written.*output.dir"):
        train(cfg)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert train_main([str(path)]) == 2
    err = capsys.readouterr().err
    assert f"run folder {blocker}" in err and "Traceback" not in err


@pytest.mark.skipif(hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0,
                    reason="root writes into read-only folders")
def test_a_read_only_run_folder_fails_before_training(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(RunDirError, match="cannot be written"):
        train(tiny_config(tmp_path / "no-data", tmp_path / "ro", "lstm"))


# -- a full disk --------------------------------------------------------------------------------------

def test_a_full_disk_during_a_checkpoint_keeps_the_last_good_one(data_root, tmp_path, monkeypatch):
    reference = train(_cfg(data_root, tmp_path / "ref"))
    cfg = _cfg(data_root, tmp_path / "full")
    last = tmp_path / "full" / "smnist-lstm-seed0" / "last.pt"
    real_save, calls, before = torch.save, [], {}

    def disk_full_on_third(obj, f):
        calls.append(1)
        if len(calls) == 3:  # last.pt at step 3 and 6 were written; the step-8 best.pt fails half-way
            before["last"] = last.read_bytes()
            f.write(b"PK\x03\x04" + bytes(4096))
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, f)

    monkeypatch.setattr(torch, "save", disk_full_on_third)
    with pytest.raises(CheckpointError, match=r"could not write checkpoint .*best.pt: No space left on device "
                                              r"\(ENOSPC\); the previous best.pt, if any, is unchanged"):
        train(cfg)
    monkeypatch.undo()
    assert last.read_bytes() == before["last"] and ckpt_mod.load(last)["state"]["global_step"] == 6
    assert not [p.name for p in last.parent.iterdir() if p.name.startswith(".")]  # no half-written file
    # Space freed: --resume finishes the run exactly as if nothing had happened.
    resumed = train(cfg, resume=True)
    assert _strip(read_metrics(last.parent)) == _strip(read_metrics(tmp_path / "ref" / "smnist-lstm-seed0"))
    assert resumed["test_loss"] == reference["test_loss"] and resumed["test_acc"] == reference["test_acc"]


def test_a_full_disk_while_writing_metrics_leaves_the_old_file_whole(data_root, tmp_path, monkeypatch):
    from pathlib import Path
    cfg = _cfg(data_root, tmp_path)
    run = tmp_path / "smnist-lstm-seed0"
    real_write = Path.write_text

    def full_at_epoch_2(self, text, *args, **kwargs):
        if self.name.startswith(".metrics.jsonl") and (run / "metrics.jsonl").exists():
            real_write(self, text[:10])  # a partial temporary file, as a full disk leaves it
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_at_epoch_2)
    with pytest.raises(RecordWriteError, match=r"could not write .*metrics.jsonl: No space left on device"):
        train(cfg)
    monkeypatch.undo()
    assert len(read_metrics(run)) == 1  # epoch 1's file, whole
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]
    assert len(read_metrics(run)) == 1 and train(cfg, resume=True)["epochs"] == 2
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]


def test_stale_temporary_files_of_a_killed_write_are_removed_on_resume(data_root, tmp_path):
    cfg = _cfg(data_root, tmp_path)
    with pytest.raises(Exception, match="stopped after 5 steps"):
        train(cfg, stop_after_steps=5)
    run = tmp_path / "smnist-lstm-seed0"
    for name in (".last.pt.tmp-99999", ".metrics.jsonl.tmp-99999"):  # what SIGKILL mid-write leaves
        (run / name).write_bytes(b"PK\x03\x04 half")
    train(cfg, resume=True)
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]


# -- non-finite loss and gradients --------------------------------------------------------------------

def _poisoned(cfg, bad_steps, where="loss"):
    """A Trainer whose forward gives NaN logits (or, for where="grad", infinite gradients) at these global steps."""
    trainer = Trainer(config_from_dict(cfg))
    forward, calls = trainer.forward, [0]

    class InfGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return g * float("inf")

    def poisoned(x):
        out = forward(x)
        if out.requires_grad:  # training steps only, not evaluation
            calls[0] += 1
            if calls[0] in bad_steps:
                out = out * float("nan") if where == "loss" else InfGrad.apply(out)
        return out

    trainer.forward = poisoned
    return trainer


def test_a_nan_loss_stops_the_run_naming_the_step_and_saves_nothing_corrupt(data_root, tmp_path):
    trainer = _poisoned(_cfg(data_root, tmp_path), {11})
    with pytest.raises(NonFiniteError, match=r"non-finite loss at epoch 2, step 3/8 \(global step 11\).*"
                                             r"last.pt \(global step 9\) is kept.*train.skip_nonfinite=true"):
        trainer.fit()
    run = tmp_path / "smnist-lstm-seed0"
    assert ckpt_mod.load(run / "last.pt")["state"]["global_step"] == 9
    assert _all_finite(run / "last.pt") and _all_finite(run / "best.pt")
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())  # stopped before the step


def test_an_infinite_gradient_with_a_finite_loss_stops_the_run_too(data_root, tmp_path):
    trainer = _poisoned(_cfg(data_root, tmp_path), {2}, where="grad")
    with pytest.raises(NonFiniteError, match=r"non-finite gradient norm at epoch 1, step 2/8.*no checkpoint"):
        trainer.fit()
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_skip_nonfinite_skips_and_counts_the_batches(data_root, tmp_path):
    trainer = _poisoned(_cfg(data_root, tmp_path, skip_nonfinite=True), {5, 6, 12})
    with pytest.warns(RuntimeWarning, match="skipped the batch") as caught:
        results = trainer.fit()
    assert [str(w.message).split(": non-finite")[0] for w in caught] == [
        f"qlam-train: skipped the batch at {where}" for where in ("epoch 1, step 5/8 (global step 5)",
                                                                 "epoch 1, step 6/8 (global step 6)",
                                                                 "epoch 2, step 4/8 (global step 12)")]
    assert results["skipped_steps"] == 3 and results["epochs"] == 2
    rows = read_metrics(tmp_path / "smnist-lstm-seed0")
    assert all(torch.isfinite(torch.tensor([r["train_loss"], r["val_loss"]])).all() for r in rows)
    saved = json.loads((tmp_path / "smnist-lstm-seed0" / "results.json").read_text())
    assert saved["skipped_steps"] == 3 and _all_finite(tmp_path / "smnist-lstm-seed0" / "best.pt")


def test_skip_nonfinite_still_stops_after_too_many_in_a_row(data_root, tmp_path):
    cfg = _cfg(data_root, tmp_path, skip_nonfinite=True, max_nonfinite_skips=3)
    trainer = _poisoned(cfg, set(range(4, 100)))
    with pytest.warns(RuntimeWarning), pytest.raises(
            NonFiniteError, match=r"in 3 batches in a row, the last at epoch 1, step 6/8.*max_nonfinite_skips=3"):
        trainer.fit()


def test_a_diverging_run_exits_with_a_message_not_a_traceback(data_root, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_cfg(data_root, tmp_path)))
    # grad_clip off and an absurd learning rate: the weights blow up and the loss with them.
    assert train_main([str(path), "model.name=transformer", "train.lr=1e10", "train.grad_clip=0"]) == 1
    err = capsys.readouterr().err
    assert "qlam-train: error: non-finite loss at epoch 1, step 2/8" in err and "Traceback" not in err
