"""qlam-sweep: several seeds of a config, then the markdown table and the plot."""
import json
import signal
import subprocess
import sys
import time

import pytest
import yaml

from qlam.train import sweep, table
from train_fixtures import tiny_config, write_idx_dataset


def test_sweep_two_seeds_writes_table_and_plot(tmp_path, capsys):
    root = write_idx_dataset(tmp_path / "data" / "mnist", n_train=96, n_test=32).parent
    cfg_dir = tmp_path / "configs" / "smnist"
    cfg_dir.mkdir(parents=True)
    path = cfg_dir / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(root, tmp_path / "ignored", "lstm", train={"epochs": 1})))
    out = tmp_path / "sweep"
    assert sweep.main([str(path), "--seeds", "0", "1", "--out", str(out), "train.lr=0.02"]) == 0
    text = (out / "table.md").read_text()
    assert "| ours: tiny |" in text and " ± " in text and "n=2" in text
    assert "S4 (Gu et al. 2022)" in text and "99.63" in text
    assert (out / "accuracy.png").stat().st_size > 1000
    assert (out / "smnist-tiny" / "seed1" / "results.json").exists()
    # A second call skips finished runs.
    assert sweep.main([str(path), "--seeds", "0", "1", "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("is done, skipped") == 2


def test_table_statistics():
    rows = [{"model": "qlam", "task": "smnist", "test_acc": a, "params": 10, "train_time_s": 60.0} for a in (0.5, 0.7)]
    s = table.summarise(rows)["qlam"]["smnist"]
    assert abs(s["mean"] - 60.0) < 1e-9 and abs(s["std"] - 14.142135623730951) < 1e-9 and s["n"] == 2
    assert "not run" in table.markdown(rows + [{"model": "lstm", "task": "psmnist", "test_acc": 0.1, "params": 1,
                                                 "train_time_s": 1.0}])


def _tiny_sweep_config(tmp_path, **train):
    root = write_idx_dataset(tmp_path / "data" / "mnist", n_train=96, n_test=32).parent
    cfg_dir = tmp_path / "configs" / "smnist"
    cfg_dir.mkdir(parents=True)
    path = cfg_dir / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(root, tmp_path / "ignored", "lstm", train={"epochs": 1, **train})))
    return path


def test_sweep_jobs_runs_seeds_in_parallel_processes(tmp_path, capsys):
    path = _tiny_sweep_config(tmp_path)
    out = tmp_path / "sweep"
    assert sweep.main([str(path), "--seeds", "0", "1", "2", "--jobs", "2", "--out", str(out)]) == 0
    for seed in (0, 1, 2):
        assert (out / "smnist-tiny" / f"seed{seed}" / "results.json").exists()
        log = (out / "smnist-tiny" / f"seed{seed}.log").read_text()
        assert "test accuracy" in log and f"seed{seed}" in log
    assert "n=3" in (out / "table.md").read_text()
    # Same numbers as the in-process sweep: a child is just `qlam-sweep CONFIG --seeds K` with one thread.
    serial = tmp_path / "serial"
    assert sweep.main([str(path), "--seeds", "1", "--out", str(serial), "train.num_threads=1"]) == 0
    a = json.loads((out / "smnist-tiny" / "seed1" / "results.json").read_text())
    b = json.loads((serial / "smnist-tiny" / "seed1" / "results.json").read_text())
    assert a["test_acc"] == b["test_acc"] and a["test_loss"] == b["test_loss"]
    # Re-running skips every finished run.
    capsys.readouterr()
    assert sweep.main([str(path), "--seeds", "0", "1", "2", "--jobs", "2", "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("is done, skipped") == 3


def test_sweep_jobs_failed_run_is_reported_and_the_others_finish(tmp_path, capsys):
    path = _tiny_sweep_config(tmp_path)
    out = tmp_path / "sweep"
    # seed 1's run folder holds a run of another config: that run refuses to start, the others go on.
    assert sweep.main([str(path), "--seeds", "1", "--out", str(out), "train.lr=0.5"]) == 0
    (out / "smnist-tiny" / "seed1" / "results.json").unlink()
    assert sweep.main([str(path), "--seeds", "0", "1", "2", "--jobs", "2", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "1 run(s) failed" in err and "seed1" in err
    assert (out / "smnist-tiny" / "seed0" / "results.json").exists()
    assert (out / "smnist-tiny" / "seed2" / "results.json").exists()


def test_sweep_jobs_bad_values_and_bad_config_fail_before_any_run(tmp_path, capsys):
    path = _tiny_sweep_config(tmp_path)
    out = tmp_path / "sweep"
    with pytest.raises(SystemExit):
        sweep.main([str(path), "--jobs", "0", "--out", str(out)])
    assert "--jobs" in capsys.readouterr().err
    assert sweep.main([str(path), "--jobs", "2", "--out", str(out), "train.epochs=0"]) == 2
    assert "train.epochs" in capsys.readouterr().err
    assert not list(out.rglob("results.json"))


def test_sweep_jobs_sigterm_stops_the_children(tmp_path):
    path = _tiny_sweep_config(tmp_path, epochs=200)
    out = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "qlam.train.sweep", str(path), "--seeds", "0", "1", "--jobs", "2",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    logs = [out / "smnist-tiny" / f"seed{k}.log" for k in (0, 1)]
    deadline = time.time() + 120
    while time.time() < deadline and not all(p.exists() and "epoch 1" in p.read_text() for p in logs):
        time.sleep(0.2)
    children = [int(line.split()[0]) for line in subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True).stdout.split()]
    assert len(children) == 2
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    time.sleep(0.5)
    for pid in children:  # gone (or a zombie already reaped by init)
        alive = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
        assert alive in ("", "Z"), (pid, alive)
