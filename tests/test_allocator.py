"""qlam.allocator.keep_freed_memory: on Linux/glibc, freed large blocks are reused instead of being
mapped afresh (each 4 KiB page of a fresh mapping costs a page fault when first touched)."""
import subprocess
import sys
from pathlib import Path

import pytest

import qlam.allocator
from qlam.train.config import Config, config_from_dict
from qlam.train.trainer import RESUME_FREE

# A child process (transparent huge pages off) runs training steps of configs/smnist/cpu.yaml's model (batch 32, 392 tokens) and
# reports its minor page faults over the last 6 of 12 steps; the parent compares them with and
# without keep_freed_memory().
_CHILD = """
import ctypes, resource, sys
# Transparent huge pages off for this process (prctl PR_SET_THP_DISABLE), so that a fault is one
# 4 KiB page on every machine: with THP on for all memory, one fault maps 2 MiB and the counts
# shrink by up to 512x whichever setting is tried (CI saw 590 against 1,929).
ctypes.CDLL(None, use_errno=True).prctl(41, 1, 0, 0, 0)
import torch
from qlam.allocator import keep_freed_memory
from qlam.models import build_model
from qlam.train.config import load_config
took = keep_freed_memory() if sys.argv[1] == "on" else None
torch.manual_seed(0)
torch.set_num_threads(1)
model = build_model(load_config(sys.argv[2]).model, 1, 10, 392)
opt = torch.optim.AdamW(model.parameters())
x, y = torch.randn(32, 392, 1), torch.randint(0, 10, (32,))
for i in range(12):
    if i == 6:
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
"""
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "smnist" / "cpu.yaml"


def _faults(mode):
    out = subprocess.run([sys.executable, "-c", _CHILD, mode, str(CONFIG)], capture_output=True, text=True,
                         check=True).stdout
    took, faults = out.split()
    return took, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_freed_blocks_are_reused_without_page_faults():
    took, with_setting = _faults("on")
    _, without = _faults("off")
    if took != "True":
        pytest.skip("this C library does not take glibc's mallopt settings (not glibc?)")
    # Without: glibc unmaps (or trims) the steps' large blocks when they are freed, and the next
    # step faults their pages in again (10,500-48,000 over the 6 steps in 9 runs here, with the
    # machine's huge pages set to "madvise" and to "always"); with: the same heap memory each step,
    # but the heap still grows now and then as fragmentation shifts (2-1,770 in the same runs),
    # hence a 2x margin only.
    assert with_setting * 2 < without and without > 3000, (with_setting, without)


def test_returns_false_where_it_cannot_apply(monkeypatch):
    monkeypatch.setattr(qlam.allocator.sys, "platform", "darwin")
    assert qlam.allocator.keep_freed_memory() is False


def test_trainer_key_defaults_on_and_may_change_on_resume():
    assert Config().train.keep_freed_memory is True
    assert config_from_dict({"train": {"keep_freed_memory": False}}).train.keep_freed_memory is False
    assert ("train", "keep_freed_memory") in RESUME_FREE
