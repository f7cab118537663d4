"""The main job (``bash scripts/train.sh``) trains the config that fits the machine, and says so first."""
from pathlib import Path

import pytest
import torch
import yaml

from qlam.train import main_job
from qlam.train.config import load_config
from qlam.train.main_job import CHECKOUT, CPU_CONFIG, GPU_CONFIG, choose_config
from train_fixtures import tiny_config, write_idx_dataset


@pytest.fixture(autouse=True)
def _at_checkout(monkeypatch):
    monkeypatch.chdir(CHECKOUT)  # where scripts/train.sh runs it
    monkeypatch.delenv(main_job.CALLER_DIR_ENV, raising=False)


def _cuda(monkeypatch, available):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)


def test_both_configs_exist_and_fit_their_machines():
    full, cpu = load_config(CHECKOUT / GPU_CONFIG), load_config(CHECKOUT / CPU_CONFIG)
    assert full.task.name == cpu.task.name == "smnist" and full.model.name == cpu.model.name == "qlam"
    assert cpu.train.device == "cpu" and cpu.train.epochs < full.train.epochs and cpu.task.train_subset


def test_without_a_gpu_the_cpu_config_and_why(monkeypatch):
    _cuda(monkeypatch, False)
    args, line = choose_config([])
    assert args == [CPU_CONFIG]
    assert line.startswith(f"qlam: main job: training {CPU_CONFIG}")
    assert "no CUDA GPU is available" in line and f"bash scripts/train.sh {GPU_CONFIG}" in line


def test_with_a_gpu_the_full_config(monkeypatch):
    _cuda(monkeypatch, True)
    args, line = choose_config([])
    assert args == [GPU_CONFIG]
    assert line.startswith(f"qlam: main job: training {GPU_CONFIG}")
    assert "a CUDA GPU is available" in line and f"bash scripts/train.sh {CPU_CONFIG}" in line


@pytest.mark.parametrize("cuda", [False, True])
def test_overrides_and_flags_pass_through_to_the_chosen_config(monkeypatch, cuda):
    _cuda(monkeypatch, cuda)
    args, _ = choose_config(["train.epochs=2", "--resume", "model.d_model=16"])
    assert args == [GPU_CONFIG if cuda else CPU_CONFIG, "train.epochs=2", "--resume", "model.d_model=16"]


@pytest.mark.parametrize("cuda", [False, True])
def test_a_config_given_always_wins(monkeypatch, cuda):
    _cuda(monkeypatch, cuda)
    for argv in (["configs/smnist/lstm.yaml", "train.epochs=2"], ["train.epochs=2", "configs/smnist/lstm.yaml"],
                 ["--resume", "configs/smnist/lstm.yaml"]):
        args, line = choose_config(argv)
        assert args == argv
        assert line == "qlam: main job: training configs/smnist/lstm.yaml (the config given on the command line)"


def test_a_relative_config_is_found_from_the_callers_folder(monkeypatch, tmp_path):
    (tmp_path / "mine.yaml").write_text("{}")
    monkeypatch.setenv(main_job.CALLER_DIR_ENV, str(tmp_path))
    args, _ = choose_config(["mine.yaml", "train.epochs=1"])
    assert args == [str(tmp_path / "mine.yaml"), "train.epochs=1"]
    assert choose_config([GPU_CONFIG])[0] == [GPU_CONFIG]  # a path that exists from the checkout stays as given


def test_main_prints_the_choice_first_then_runs_qlam_train(monkeypatch, capsys):
    _cuda(monkeypatch, False)
    seen = []
    monkeypatch.setattr("qlam.train.cli.train_main", lambda argv: seen.append(argv) or 0)
    assert main_job.main(["train.epochs=1"]) == 0
    assert seen == [[CPU_CONFIG, "train.epochs=1"]]
    assert capsys.readouterr().out.splitlines()[0].startswith(f"qlam: main job: training {CPU_CONFIG}")


def test_train_sh_runs_the_main_job():
    script = (CHECKOUT / "scripts" / "train.sh").read_text()
    assert "python -m qlam.train.main_job \"$@\"" in script and "configs/smnist/qlam.yaml \"$@\"" not in script


def test_the_main_job_end_to_end_first_lines(monkeypatch, tmp_path, capsys):
    """A real (tiny) run through the main job: its choice line, then the run's own first lines."""
    write_idx_dataset(tmp_path / "data" / "mnist", n_train=80, n_test=20)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tmp_path / "data", tmp_path / "runs", "lstm", train={"epochs": 1})))
    assert main_job.main([str(path), "output.name=job"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"qlam: main job: training {path} (the config given on the command line)"
    assert lines[1] == f"qlam-train: config {path} output.name=job"
    assert lines[2].startswith("qlam-train: task smnist (49 tokens x 1 channel, 10 classes), model lstm with ")
    assert lines[3].startswith("qlam-train: device cpu (")
    assert lines[4] == f"qlam-train: run folder {Path(tmp_path / 'runs' / 'job')}"
