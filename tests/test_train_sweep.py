"""qlam-sweep: several seeds of a config, then the markdown table and the plot."""
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
