"""DistributedDataParallel on CPU: two gloo processes under torchrun match one process on the same global batch."""
import os
import subprocess
import sys

import pytest
import yaml

from qlam.train import train
from qlam.train.records import read_metrics
from train_fixtures import tiny_config, write_idx_dataset


@pytest.mark.parametrize("model", ["qlam"])
def test_two_gloo_processes_equal_one(tmp_path, model):
    root = write_idx_dataset(tmp_path / "data" / "mnist", n_train=160, n_test=48).parent
    base = tiny_config(root, tmp_path / "runs", model, train={"epochs": 2, "batch_size": 16})
    single = train(dict(base, output=dict(base["output"], name="single")))
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(dict(base, output=dict(base["output"], name="ddp"))))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "qlam.train", str(path)], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp_dir = tmp_path / "runs" / "ddp"
    results = yaml.safe_load((ddp_dir / "results.json").read_text())
    assert results["world_size"] == 2 and results["test_count"] == single["test_count"]
    for a, b in zip(read_metrics(tmp_path / "runs" / "single"), read_metrics(ddp_dir)):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert abs(a[key] - b[key]) < 2e-4, (key, a[key], b[key])
    assert abs(results["test_loss"] - single["test_loss"]) < 2e-4
    # Only rank 0 writes: no stray temporary files.
    assert not [p for p in ddp_dir.iterdir() if p.name.startswith(".")]


EXIT_PROBE = '''
import atexit, os, sys
import torch
import torch.distributed as dist

def report():  # registered before qlam's handler, so it runs after it
    names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
    gloo = sum(name.startswith("pt_gloo") for name in names)
    print(f"rank {os.environ['RANK']}: initialized={dist.is_initialized()} gloo_threads={gloo}", flush=True)

atexit.register(report)
from qlam.train import distributed
distributed.setup("cpu")
total = torch.ones(3)
dist.all_reduce(total)
assert total[0].item() == 2
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the thread names from /proc")
def test_the_process_group_is_destroyed_before_the_interpreter_exits(tmp_path):
    # A gloo worker thread may still hold the last collective's tensors when the main thread
    # finishes; if the interpreter starts finalizing first, releasing them ends the thread inside a
    # destructor and the process aborts (std::terminate) after a completed run. qlam destroys the
    # group it created at exit, so by the time the interpreter finalizes no gloo thread is left.
    script = tmp_path / "probe.py"
    script.write_text(EXIT_PROBE)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        assert f"rank {rank}: initialized=False gloo_threads=0" in proc.stdout, proc.stdout[-2000:]
