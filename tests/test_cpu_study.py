"""The CPU study (issue 11): its configs share one budget, its records come from those configs, and the report
(results/cpu-study/report.md, embedded in the README) is rebuilt from the records alone."""
import shutil
from pathlib import Path

import pytest
import yaml

from qlam.models import build_model, count_parameters
from qlam.train import study
from qlam.train.config import load_config
from qlam.train.schema import to_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "study"
RECORDS = ROOT / "results" / "cpu-study"
# keys a run may set without changing what is compared: where and how it ran, which seed
RUN_KEYS = {"task": {"data_root", "download", "verify_md5"},
            "train": {"seed", "device", "num_threads", "keep_freed_memory"}}


def _config_files():
    return sorted(CONFIGS.glob("*/*.yaml"))


def _comparable(data: dict) -> dict:
    return {part: {k: v for k, v in data[part].items() if k not in RUN_KEYS.get(part, ())}
            for part in ("task", "model", "train")}


def test_every_task_has_every_model_and_the_ablation():
    names = {t: {p.stem for p in (CONFIGS / t).glob("*.yaml")} for t in study.TASKS}
    for task in study.TASKS:
        assert set(study.MODELS) <= names[task], task
    for task in study.ABLATION_TASKS:
        assert set(study.ABLATION) <= names[task], task


def test_one_budget_for_all_models():
    """Same training subset, validation and test sets, epochs, optimiser and schedule everywhere (one lr, not tuned)."""
    budgets = set()
    for path in _config_files():
        data = to_dict(load_config(path))
        assert data["task"]["name"] == path.parent.name, path
        task = {k: v for k, v in data["task"].items() if k != "name"}
        budgets.add(repr((sorted(task.items()), sorted(data["train"].items()))))
    assert len(budgets) == 1, budgets


@pytest.mark.parametrize("task", study.TASKS)
def test_parameters_within_5_percent_of_qlam(task):
    in_channels, seq_len = (3, 1024) if task == "scifar10" else (1, 784)
    counts = {}
    for path in sorted((CONFIGS / task).glob("*.yaml")):
        cfg = load_config(path)
        counts[path.stem] = count_parameters(build_model(cfg.model, in_channels, 10, seq_len))
    for name, n in counts.items():
        assert abs(n / counts["qlam"] - 1) <= 0.05, (task, name, n, counts["qlam"])


def test_records_were_made_by_the_committed_configs():
    finished = sorted(RECORDS.glob("*-*/seed*/results.json"))
    assert finished, "no records in results/cpu-study"
    for path in finished:
        task, name = path.parent.parent.name.split("-", 1)
        expected = _comparable(to_dict(load_config(CONFIGS / task / f"{name}.yaml")))
        recorded = _comparable(yaml.safe_load((path.parent / "config.yaml").read_text()))
        assert recorded == expected, path
        assert (path.parent / "metrics.csv").exists(), path


def test_report_is_rebuilt_from_the_records(tmp_path):
    for path in list(RECORDS.rglob("results.json")) + list(RECORDS.rglob("metrics.csv")):
        dest = tmp_path / path.relative_to(RECORDS)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    assert study.main([str(tmp_path)]) == 0
    assert (tmp_path / "report.md").read_text() == (RECORDS / "report.md").read_text()
    assert {p.name for p in tmp_path.glob("curves_*.png")} == {f"curves_{t}.png" for t in study.TASKS}


def test_readme_embeds_the_report():
    readme = (ROOT / "README.md").read_text()
    begin, end = "<!-- cpu-study report: begin -->\n", "<!-- cpu-study report: end -->"
    assert begin in readme and end in readme
    block = readme.split(begin, 1)[1].split(end, 1)[0]
    assert block.strip() == (RECORDS / "report.md").read_text().strip()


def test_report_says_when_a_folder_has_no_records(tmp_path, capsys):
    assert study.main([str(tmp_path)]) == 2
    assert "no run records" in capsys.readouterr().err


def test_study_cost_benchmark_predicts_a_run_from_its_config():
    import importlib.util
    spec = importlib.util.spec_from_file_location("study_cost", ROOT / "benchmarks" / "study_cost.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    row = bench.measure("smnist", "lstm", "cpu", repeats=1)
    assert row["steps"] == 2500 // 32 * 4 and row["eval_images"] == 1000 * 4 + 10_000
    assert row["predicted_run_s"] == pytest.approx(row["steps"] * row["train_step_s"]
                                                   + row["eval_images"] * row["eval_s_per_image"])
    assert row["params"] == 30_798 and row["train_step_s"] > 0 and row["eval_s_per_image"] > 0
