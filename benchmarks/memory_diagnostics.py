"""Memory diagnostics of a QLAM classifier on its task (qlam.diagnostics), untrained or from a checkpoint.

    python benchmarks/memory_diagnostics.py configs/smnist/cpu.yaml [key=value ...] \\
        [--checkpoint runs/.../best.pt] --out results/qlam-remedies/diagnostics/NAME

(``python benchmarks/memory_diagnostics.py --table A.json B.json ...`` prints a markdown table of results)
writes NAME.json (every number and curve) and NAME.png (four panels): (a) how far each token moves
the quantum state, per position, background and digit pixels apart; (b) the spread across examples
of the Pauli features per position, next to a Haar-random state's; (c) the loss gradient at each
token's circuit angles per position; (d) accuracy with the memory and with the state reset to
|0...0> before every token, and linear probes of the label from the final memory. One thread.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from qlam import diagnostics as D
from timing import ext  # benchmarks/ is sys.path[0] when run as a script
from qlam.data import BatchLoader, build_task
from qlam.models import build_model, count_parameters
from qlam.train import checkpoint
from qlam.train.config import config_from_dict, load_config


def _batches(task, x, y, batch_size):
    return list(BatchLoader(x, y, task.mean, task.std, batch_size, shuffle=False).batches())


def _normalised(task, x):
    return next(BatchLoader(x, torch.zeros(len(x), dtype=torch.long), task.mean, task.std, len(x),
                            shuffle=False).batches())[0]


def _r(t, digits=5):
    if isinstance(t, torch.Tensor):
        t = t.tolist()
    if isinstance(t, float):
        return float(f"{t:.{digits}g}")
    if isinstance(t, list):
        return [_r(v, digits) for v in t]
    if isinstance(t, dict):
        return {k: _r(v, digits) for k, v in t.items()}
    return t


def run(cfg, model, task, n_traj: int, n_probe_train: int, n_probe_test: int, n_eval: int, seed: int) -> dict:
    torch.manual_seed(seed)
    n = cfg.model.qlam.n_qubits
    out = {"params": count_parameters(model), "n_qubits": n, "random_state_spread": D.random_state_spread(n)}
    xb = _normalised(task, task.val_x[:n_traj])
    yb = task.val_y[:n_traj]
    mask = D.background_mask(xb)
    out["background_fraction"] = mask.float().mean().item()
    model.eval()
    cells = dict(D.qlam_cells(model))
    inputs = D.cell_inputs(model, xb)
    per_cell = {}
    for name, inp in inputs.items():
        cell = cells[name]
        states = D.state_trajectory(cell, inp)
        motion = D.state_motion(states)  # (B, T, H)
        feats, _ = D.cell_features(cell, inp)
        spread = D.feature_spread(feats)
        m = mask[:, :, None].expand_as(motion)
        angles, ent = cell.circuit_angles(inp)
        per_cell[name] = {
            "motion_per_position": motion.mean((0, 2)),
            "motion_mean": motion.mean().item(),
            "motion_background": motion[m].mean().item(),
            "motion_foreground": motion[~m].mean().item(),
            "motion_per_head": motion.mean((0, 1)),
            "angle_rms_background": angles[mask].pow(2).mean().sqrt().item(),
            "angle_rms_foreground": angles[~mask].pow(2).mean().sqrt().item(),
            "feature_std_per_position": spread["std_per_position"],
            "final_feature_std_mean": spread["final_std_mean"],
            "final_feature_abs_mean": spread["final_abs_mean"],
            "final_feature_std_per_head": spread["final_std"].mean(-1),
            "step_sizes": D.step_size_stats(cell, inp, mask),
        }
        # One Adam step moves each weight by about its learning rate.
        sens = D.parameter_sensitivity(cell, inp, eps=cfg.model.qlam.angle_lr or cfg.train.lr)
        per_cell[name]["sensitivity_per_position"] = sens
        per_cell[name]["sensitivity_final"] = sens[-1].item()
    grads = D.gradient_profile(model, xb, yb)
    for name, g in grads.items():
        ga, gx = g["angles"], g["input"]
        T = ga.shape[0]
        q = T // 4
        per_cell[name].update({
            "grad_angles_per_position": ga, "grad_input_per_position": gx,
            "grad_angles_quarters": [ga[i * q:(i + 1) * q].mean().item() for i in range(4)],
            "grad_input_quarters": [gx[i * q:(i + 1) * q].mean().item() for i in range(4)],
        })
    out["cells"] = per_cell
    evb = _batches(task, task.val_x[:n_eval], task.val_y[:n_eval], 250)
    out["memory_contribution_val"] = D.memory_contribution(model, evb)
    if n_probe_train:
        tr = (_normalised(task, task.train_x[:n_probe_train]), task.train_y[:n_probe_train])
        te = (_normalised(task, task.val_x[:n_probe_test]), task.val_y[:n_probe_test])
        out["probes"] = D.probe_memory(model, tr, te)
        out["probes_histogram_baseline"] = D.linear_probe(D.histogram_features(tr[0]), tr[1],
                                                          D.histogram_features(te[0]), te[1])
    return out


def plot(result: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(2, 2, figsize=(12, 8))
    for name, c in result["cells"].items():
        short = name.replace("blocks.", "b").replace(".mixer.qlam.cells.", "/c")
        ax[0, 0].plot(c["motion_per_position"], label=f"{short} (bg {c['motion_background']:.2g}, "
                                                      f"fg {c['motion_foreground']:.2g})", lw=0.8)
        ax[0, 1].plot(c["feature_std_per_position"], label=short, lw=0.8)
        ax[1, 0].semilogy(c["grad_angles_per_position"], label=short, lw=0.8)
    ax[0, 0].set(title="(a) state motion per token 1-|<psi_t|psi_t-1>|^2 (dotted: 1-F after one step)",
                 xlabel="position", yscale="log")
    ax[0, 1].axhline(result["random_state_spread"], color="k", ls="--", lw=0.8, label="Haar-random states")
    ax[0, 1].set(title="(b) std across examples of the Pauli features", xlabel="position")
    ax[1, 0].set(title="(c) |dLoss/d angles_t| per position (batch mean)", xlabel="position")
    for name, c in result["cells"].items():
        ax[0, 0].plot(c["sensitivity_per_position"], ls=":", lw=0.8,
                      label=f"{name.split('.')[1]}: 1-F after one lr-sized step of W_a")
    mc = result["memory_contribution_val"]
    labels, values = ["model", "state reset\nevery token"], [mc["normal"]["acc"], mc["reset"]["acc"]]
    for name, p in result.get("probes", {}).items():
        short = name.replace("blocks.", "b").replace(".mixer.qlam.cells.", "/c")
        labels += [f"probe {short}\nmeasured", f"probe {short}\nfull state"]
        values += [p["measured_features"]["test_acc"], p["density_matrix"]["test_acc"]]
    if "probes_histogram_baseline" in result:
        labels.append("probe\nhistogram")
        values.append(result["probes_histogram_baseline"]["test_acc"])
    ax[1, 1].bar(range(len(values)), values)
    ax[1, 1].set_xticks(range(len(values)), labels, fontsize=7)
    ax[1, 1].axhline(0.1, color="k", ls="--", lw=0.8)
    ax[1, 1].set(title="(d) validation accuracy", ylim=(0, 1))
    for a in ax.flat[:3]:
        a.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_table(paths) -> str:
    """A markdown table of diagnostics JSONs: one row per file and QLAM block."""
    rows = ["| diagnostics | block | motion/token background | motion/token digit | final feature std "
            "(Haar-random) | 1-F after one lr-sized step | probe: measured features | probe: full state | "
            "val acc (memory / reset every token) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    loaded = [(path, json.loads(Path(path).read_text())) for path in paths]
    for path, r in loaded:
        mc = r["memory_contribution_val"]
        for i, (name, c) in enumerate(r["cells"].items()):
            pr = r.get("probes", {}).get(name, {})
            probe = (lambda k: f"{pr[k]['test_acc'] * 100:.1f} %" if k in pr else "-")
            acc = (f"{mc['normal']['acc'] * 100:.1f} % / {mc['reset']['acc'] * 100:.1f} %" if i == 0 else "")
            label = Path(path).stem if i == 0 else ""
            rows.append(f"| {label} | {name.split('.')[1]} | {c['motion_background']:.3g} | "
                        f"{c['motion_foreground']:.3g} | {c['final_feature_std_mean']:.3f} "
                        f"({r['random_state_spread']:.3f}) | {c['sensitivity_final']:.3g} | "
                        f"{probe('measured_features')} | {probe('density_matrix')} | {acc} |")
    hist = loaded[0][1].get("probes_histogram_baseline") if loaded else None
    if hist:
        rows.append(f"\nProbe of the label from the 16-bin intensity histogram (no memory, no position), same "
                    f"examples: {hist['test_acc'] * 100:.1f} %.")
    return "\n".join(rows)


def main(argv=None) -> int:
    if argv is None and sys.argv[1:2] == ["--table"]:
        print(summary_table(sys.argv[2:]))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--checkpoint", help="a best.pt/last.pt; its own config is used (overrides still apply)")
    p.add_argument("--out", required=True, help="output path without extension")
    p.add_argument("--n-traj", type=int, default=64, help="examples for motion, spread and gradients")
    p.add_argument("--n-eval", type=int, default=1000, help="validation examples for the memory contribution")
    p.add_argument("--n-probe-train", type=int, default=2000, help="0 = no probes")
    p.add_argument("--n-probe-test", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if args.checkpoint:
        ckpt = checkpoint.load(args.checkpoint)
        cfg = config_from_dict(ckpt["config"], args.overrides)
    else:
        cfg = load_config(args.config, args.overrides)
    if cfg.model.name != "qlam":
        print("memory_diagnostics: model.name must be qlam", file=sys.stderr)
        return 2
    task = build_task(cfg.task)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, task.channels, task.n_classes, task.seq_len)
    if args.checkpoint:
        model.load_state_dict(ckpt["model"])
    result = run(cfg, model, task, args.n_traj, args.n_probe_train, args.n_probe_test, args.n_eval, args.seed)
    result.update({"config": args.config, "overrides": args.overrides, "checkpoint": args.checkpoint,
                   "command": " ".join(["python", "benchmarks/memory_diagnostics.py", *sys.argv[1:]]),
                   "seconds": time.perf_counter() - t0})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ext(out, ".json").write_text(json.dumps(_r(result), indent=1))
    title = f"{args.checkpoint or 'untrained'}: {args.config} {' '.join(args.overrides)}"
    plot(result, ext(out, ".png"), title)
    c = result["cells"]
    for name, v in c.items():
        print(f"{name}: motion bg {v['motion_background']:.3g} fg {v['motion_foreground']:.3g}; final feature std "
              f"{v['final_feature_std_mean']:.3g} (random {result['random_state_spread']:.3g}); "
              "one-step 1-F at the end "
              f"{v['sensitivity_final']:.3g}; grad quarters "
              f"{['%.2g' % g for g in v['grad_angles_quarters']]}; steps {v['step_sizes']}")
    mc = result["memory_contribution_val"]
    print(f"val acc {mc['normal']['acc']:.4f} (loss {mc['normal']['loss']:.3f}); reset every token "
          f"{mc['reset']['acc']:.4f} (loss {mc['reset']['loss']:.3f})")
    for name, pr in result.get("probes", {}).items():
        print(f"probe {name}: measured {pr['measured_features']['test_acc']:.3f}, "
              f"full state {pr['density_matrix']['test_acc']:.3f}")
    if "probes_histogram_baseline" in result:
        print(f"probe histogram: {result['probes_histogram_baseline']['test_acc']:.3f}")
    print(f"{result['seconds']:.0f} s -> {ext(out, '.json')}, {ext(out, '.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
