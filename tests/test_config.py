"""The typed config: every shipped YAML validates, and bad configs give errors that name the key."""
from pathlib import Path

import pytest

from qlam.models import build_model, count_parameters
from qlam.train.cli import train_main
from qlam.train.config import Config, config_from_dict, load_config
from qlam.train.schema import ConfigError, describe

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))
SHAPES = {"smnist": (1, 784), "psmnist": (1, 784), "sfmnist": (1, 784), "scifar10": (3, 1024),
          "scifar10_gray": (1, 1024)}
ATTENTION_VARIANTS = {"sparse_rank1": "sparse_rank1", "qsat": "topk"}  # config stem -> model.transformer.attention


def test_every_task_has_every_model_and_a_cpu_config():
    names = {(p.parent.name, p.stem) for p in CONFIGS}
    for task in SHAPES:
        for model in ("qlam", "lstm", "transformer", "ssm", "cpu"):
            assert (task, model) in names, f"configs/{task}/{model}.yaml is missing"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shipped_configs_validate_and_build(path):
    cfg = load_config(path)
    assert cfg.task.name == path.parent.name
    if path.stem in ATTENTION_VARIANTS:
        assert (cfg.model.name, cfg.model.transformer.attention) == ("transformer", ATTENTION_VARIANTS[path.stem])
    elif path.stem != "cpu":  # <model>.yaml, or <model>-<variant>.yaml (configs/remedies)
        assert cfg.model.name == path.stem.split("-")[0]
    channels, seq_len = SHAPES[cfg.task.name]
    assert count_parameters(build_model(cfg.model, channels, 10, seq_len)) > 1000


def test_defaults_and_overrides():
    cfg = config_from_dict({}, ["train.lr=3e-4", "model.qlam.n_heads=2", "task.train_subset=null",
                                "output.name=abc", "train.precision=bf16"])
    assert isinstance(cfg, Config)
    assert cfg.train.lr == 3e-4 and cfg.model.qlam.n_heads == 2 and cfg.task.train_subset is None
    assert cfg.run_dir() == Path("runs") / "abc"
    assert config_from_dict({"train": {"lr": "1e-3"}}).train.lr == 1e-3  # YAML 1.1 reads 1e-3 as a string
    assert config_from_dict({"train": {"lr": 1}}).train.lr == 1.0


@pytest.mark.parametrize("data, overrides, words", [
    ({"train": {"epochz": 3}}, [], ["unknown key 'train.epochz'", "epochs"]),
    ({"modle": {}}, [], ["unknown key 'modle'", "model"]),
    ({}, ["model.qlam.n_qbits=4"], ["model.qlam.n_qbits", "n_qubits"]),
    ({"train": {"epochs": "ten"}}, [], ["train.epochs", "integer", "'ten'"]),
    ({"train": {"epochs": 2.5}}, [], ["train.epochs", "integer"]),
    ({"train": {"deterministic": "yes"}}, [], ["train.deterministic", "true or false"]),
    ({"model": {"name": "gru"}}, [], ["model.name", "'qlam'", "'lstm'", "'gru'"]),
    ({"task": {"name": "mnist"}}, [], ["task.name", "'smnist'"]),
    ({"train": {"lr": -1}}, [], ["train.lr", "> 0"]),
    ({"model": {"dropout": 1.5}}, [], ["model.dropout", "< 1.0"]),
    ({"model": {"qlam": {"entangler": "swap"}}}, [], ["model.qlam.entangler", "'cnot'"]),
    ({"model": {"qlam": 3}}, [], ["model.qlam", "mapping"]),
    ({"model": {"name": "transformer", "d_model": 30, "transformer": {"n_heads": 4}}}, [],
     ["model.transformer.n_heads", "divide"]),
    ({}, ["train.lr"], ["KEY=VALUE"]),
])
def test_bad_configs_name_the_key(data, overrides, words):
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, overrides)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_cli_reports_config_errors_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: fast\n")
    assert train_main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert "qlam-train: error:" in err and "train.lr" in err and "Traceback" not in err
    assert train_main([str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "broken.yaml").write_text("train: [1,\n")
    assert train_main([str(tmp_path / "broken.yaml")]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_help_config_lists_keys(capsys):
    assert train_main(["--help-config"]) == 0
    out = capsys.readouterr().out
    for key in ("task.name", "model.qlam.n_qubits", "train.lr", "output.dir"):
        assert key in out
    assert "model.ssm.d_state" in describe(Config)
