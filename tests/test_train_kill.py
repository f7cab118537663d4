"""A run killed at any moment resumes with --resume to exactly the uninterrupted run's metrics and results.

Two tests: real SIGKILLs at seeded random moments of CLI subprocesses, and an in-process crash after
every single file the trainer writes (so the narrow windows between two writes are all covered).
"""
import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import yaml

from qlam.train import checkpoint as ckpt_mod
from qlam.train import records, train
from qlam.train.records import read_metrics
from train_fixtures import tiny_config, write_idx_dataset

TIMING = ("epoch_time_s", "tokens_per_s")
RESULT_KEYS = ("best_val_acc", "best_epoch", "test_acc", "test_loss", "test_count", "epochs", "steps", "params")
TRIALS, KILLS = 10, 2  # 5 runs, each killed twice


def _config(data_root, out_dir, name, epochs=3, batch_size=16):
    cfg = tiny_config(data_root, out_dir, "qlam", output={"name": name},
                      train={"epochs": epochs, "batch_size": batch_size, "checkpoint_every_steps": 3,
                             "num_threads": 1})  # tiny ops: extra threads only contend on 2 busy cores
    cfg["model"]["dropout"] = 0.1  # dropout draws from the RNG, so a resume must restore its state too
    return cfg


@pytest.fixture(autouse=True)
def _keep_thread_count():  # train.num_threads sets torch's global thread count in-process
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _metrics(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]  # a torn line would fail here
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def _results(run_dir):
    saved = json.loads((run_dir / "results.json").read_text())
    return {k: saved[k] for k in RESULT_KEYS}


def _assert_same_run(run_dir, ref_dir):
    assert _metrics(run_dir) == _metrics(ref_dir) and len(_metrics(run_dir)) == _results(ref_dir)["epochs"]
    assert _results(run_dir) == _results(ref_dir)
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")]  # no stray temporary files
    a, b = (ckpt_mod.load(d / "best.pt")["model"] for d in (run_dir, ref_dir))
    assert all(torch.equal(a[k], b[k]) for k in a)


def _cli(path, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "qlam.train", str(path), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_gives_the_same_run(tmp_path):
    root = write_idx_dataset(tmp_path / "data" / "mnist", n_train=160, n_test=48).parent
    runs = tmp_path / "runs"

    def config_file(name):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(_config(root, runs, name, epochs=4, batch_size=8)))  # 64 steps
        return path

    def inode(path):
        return path.stat().st_ino if path.exists() else None

    def wait_for(proc, path, old=None):  # until the process (re)writes the file (atomically: a new inode)
        while inode(path) in (None, old) and proc.poll() is None:
            time.sleep(0.002)

    # The uninterrupted run; it also measures the window worth killing in: from config.yaml (the run
    # folder is set up; before it is only interpreter start-up) to results.json.
    proc = _cli(config_file("ref"))
    wait_for(proc, runs / "ref" / "config.yaml")
    t0 = time.perf_counter()
    wait_for(proc, runs / "ref" / "results.json")
    window = time.perf_counter() - t0
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]

    def chain(c):
        """Run c is killed KILLS times (the second kill hits the resumed process), then resumed to the end."""
        name, outcomes = f"kill{c}", []
        path = config_file(name)
        for k in range(KILLS):
            delay = random.Random(1000 * c + k).uniform(0.0, 1.1 * window)  # seeded; some land after the end
            config = runs / name / "config.yaml"
            before = inode(config)
            proc = _cli(path, *(["--resume"] if k else []))
            wait_for(proc, config, before)
            time.sleep(delay)
            live = proc.poll() is None
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=120)
            last = runs / name / "last.pt"
            outcomes.append((live, ckpt_mod.load(last)["state"]["global_step"] if last.exists() else None))
        resumed = _cli(path, "--resume")
        _, err = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, (c, err[-2000:])
        _assert_same_run(runs / name, runs / "ref")
        return outcomes

    with ThreadPoolExecutor(2) as pool:  # two at a time: most of each process is interpreter start-up
        outcomes = [o for chain_outcomes in pool.map(chain, range(TRIALS // KILLS)) for o in chain_outcomes]
    print(f"window {window:.2f} s; (killed a live run, last.pt global step after the kill):", outcomes)
    # Not vacuous: most kills hit a live run, and at least one of them after its first checkpoint.
    assert sum(live for live, _ in outcomes) >= TRIALS // 2
    assert any(live and at for live, at in outcomes)


class _Crash(BaseException):
    """Stands for SIGKILL in-process: nothing catches it and no clean-up code of the trainer runs."""


def test_a_crash_after_any_file_write_resumes_to_the_same_run(tmp_path, monkeypatch):
    root = write_idx_dataset(tmp_path / "data" / "mnist", n_train=160, n_test=48).parent
    train(_config(root, tmp_path, "ref"))  # 3 epochs of 8 steps
    writes = []
    real_save, real_write = ckpt_mod.save, records.write_text

    def counted(real, path_arg):
        def wrapper(*args):
            real(*args)
            writes.append(args[path_arg].name)
            if len(writes) == crash_after:
                raise _Crash(writes[-1])
        return wrapper

    monkeypatch.setattr(ckpt_mod, "save", counted(real_save, 1))  # save(payload, path)
    monkeypatch.setattr(records, "write_text", counted(real_write, 0))  # write_text(path, text)
    crash_after = None
    train(_config(root, tmp_path, "count"))  # counts the writes of one whole run
    total = len(writes)
    # 20-21 writes (best.pt only when validation improves, so the count depends on the model)
    assert total >= 15 and writes[0] == "config.yaml" and writes[-1] == "results.json"
    for k in range(1, total + 1):  # crash right after write k (config.yaml is write 1)
        writes.clear()
        crash_after = k
        cfg = _config(root, tmp_path, f"crash{k}")
        with pytest.raises(_Crash):
            train(cfg)
        crashed_at, crash_after = writes[-1], None  # the resumed run goes to the end
        train(cfg, resume=True)
        try:
            _assert_same_run(tmp_path / f"crash{k}", tmp_path / "ref")
        except AssertionError as error:
            raise AssertionError(f"crash after write {k} ({crashed_at}): {error}") from None
    assert read_metrics(tmp_path / "ref")[-1]["epoch"] == 3
    print(f"{total} crash points, every one resumed to the same run")
