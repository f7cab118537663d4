"""A DDP worker killed mid-run: the others stop within a bound with a clear message; --resume finishes the run.

Two launches on CPU (gloo): one torchrun with two workers (torchrun sees the death and stops the
other worker), and two torchruns of one worker each, as on two machines (the survivor itself sees its
peer gone in the next collective). The resumed run must match one process on the same global batch.
"""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from qlam.train import train
from qlam.train.records import read_metrics
from train_fixtures import tiny_config, write_idx_dataset

STOP_BOUND_S = 30  # measured: 0.7 s (torchrun) and 3 s (two launchers); gloo would wait 30 min, dist_timeout_s 600 s
EPOCHS = 2  # longer runs drift past 2e-4 from one process (lr 0.01), resumed or not


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(path, how, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = [sys.executable, "-m", "torch.distributed.run"]
    if how == "one-torchrun":
        cmds = [run + ["--standalone", "--nproc_per_node", "2"]]
    else:
        port = str(_free_port())
        cmds = [run + ["--nnodes", "2", "--node_rank", str(r), "--master_addr", "127.0.0.1", "--master_port", port,
                       "--nproc_per_node", "1"] for r in (0, 1)]
    return [subprocess.Popen(cmd + ["-m", "qlam.train", str(path), *extra], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for cmd in cmds]


def _worker_of_rank(launchers, rank):
    """The pid of the worker process (a child of a launcher) whose RANK is ``rank``."""
    parents = {str(p.pid) for p in launchers}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = next(line.split()[1] for line in (d / "status").read_text().splitlines() if line.startswith("PPid"))
            environ = (d / "environ").read_bytes().split(b"\0")
        except (OSError, StopIteration):
            continue
        if ppid in parents and f"RANK={rank}".encode() in environ:
            return int(d.name)
    raise AssertionError(f"no worker of rank {rank}")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["one-torchrun", "two-torchruns"])
def test_a_killed_worker_stops_the_others_then_resume_finishes(tmp_path, how):
    root = write_idx_dataset(tmp_path / "data" / "mnist", n_train=160, n_test=48).parent
    base = tiny_config(root, tmp_path / "runs", "qlam", train={"epochs": EPOCHS, "checkpoint_every_steps": 3})
    single = tiny_config(root, tmp_path / "runs", "qlam", train={"epochs": EPOCHS}, output={"name": "single"})
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(dict(base, output=dict(base["output"], name="ddp"))))
    run = tmp_path / "runs" / "ddp"

    launchers = _launch(path, how)
    while not (run / "last.pt").exists():  # the first checkpoint (step 3 of 16)
        assert all(p.poll() is None for p in launchers), launchers[0].communicate()[1][-3000:]
        time.sleep(0.01)
    os.kill(_worker_of_rank(launchers, 1), signal.SIGKILL)
    killed = time.perf_counter()
    errs = [p.communicate(timeout=STOP_BOUND_S + 30)[1] for p in launchers]
    stopped = time.perf_counter() - killed
    print(f"{how}: every process stopped {stopped:.1f} s after the kill")
    assert stopped < STOP_BOUND_S and all(p.returncode != 0 for p in launchers)
    assert not (run / "results.json").exists()  # killed mid-run
    if how == "one-torchrun":  # torchrun names the dead worker as the root cause
        assert "rank      : 1" in errs[0] and "Signal 9 (SIGKILL)" in errs[0]
    else:  # the survivor (rank 0) says what happened and what to do
        assert "qlam-train: error: rank 0 of 2:" in errs[0] and "--resume" in errs[0], errs[0][-3000:]
        print(next(line for line in errs[0].splitlines() if "qlam-train: error:" in line))
        assert errs[0].count("Traceback") == 1  # torchrun's own report only; none from the worker

    launchers = _launch(path, how, "--resume")
    errs = [p.communicate(timeout=240)[1] for p in launchers]
    assert all(p.returncode == 0 for p in launchers), errs[0][-3000:]
    assert "resuming" in errs[0]
    reference = train(single)
    rows, results = read_metrics(run), yaml.safe_load((run / "results.json").read_text())
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1)) and results["world_size"] == 2
    for a, b in zip(read_metrics(tmp_path / "runs" / "single"), rows):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert abs(a[key] - b[key]) < 2e-4, (key, a[key], b[key])
    assert abs(results["test_loss"] - reference["test_loss"]) < 2e-4


HUNG_PEER = """
import os, sys, time, torch
from qlam.train import distributed
ctx = distributed.setup("cpu", timeout_s=float(sys.argv[1]))
if ctx.rank == 1:
    time.sleep(120)  # alive but hung: torchrun would not notice, only the timeout does
t0 = time.perf_counter()
try:
    distributed.all_reduce_sum(torch.ones(1))
except distributed.DistributedError as error:
    print(f"after {time.perf_counter() - t0:.1f} s: {error}")
"""


def test_a_hung_peer_is_given_up_on_after_dist_timeout_s(tmp_path):
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, "-c", HUNG_PEER, "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=dict(os.environ, WORLD_SIZE="2", RANK=str(r), LOCAL_RANK=str(r),
                                                  MASTER_ADDR="127.0.0.1", MASTER_PORT=port, OMP_NUM_THREADS="1"))
             for r in (0, 1)]
    try:
        out, err = procs[0].communicate(timeout=60)
    finally:
        procs[1].kill()
        procs[1].communicate()
    assert "rank 0 of 2: a sum with the other processes failed" in out, err[-2000:]
    assert "train.dist_timeout_s" in out and "--resume" in out
    print(out.strip())
    waited = float(out.split("after ")[1].split(" s:")[0])
    assert 2.5 <= waited < 15, out  # the 3 s given, not gloo's default 30 minutes
