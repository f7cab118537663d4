"""scripts/gpu_check.sh on a machine without a GPU: its step groups (QLAM_GPU_STEPS), its preflight, and
the bundle's runner (scripts/gpu_bundle_run.sh) that starts it on a GPU machine with no registry.

The steps themselves need an NVIDIA GPU; these tests check what decides, before any of them, whether
and which run: a bad group name stops the script at once with the allowed names, without a GPU it
stops saying what is missing, leaving no logs behind, and on a fake GPU machine (tools that only
record their calls) a chosen subset runs just its steps."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def run_script(tmp_path, **env):
    full = dict(os.environ, QLAM_GPU_LOG_DIR=str(tmp_path / "logs"), **env)
    return subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=full, capture_output=True, text=True, timeout=60)


def has_gpu():
    smi = shutil.which("nvidia-smi")
    return smi is not None and subprocess.run([smi, "-L"], capture_output=True).returncode == 0


def declared_groups():
    match = re.search(r'^all_groups="([^"]+)"', SCRIPT.read_text(), re.MULTILINE)
    assert match, "gpu_check.sh no longer declares all_groups"
    return match.group(1).split()


def test_every_declared_group_gates_steps_and_is_documented():
    text = SCRIPT.read_text()
    groups = declared_groups()
    assert groups[:3] == ["tests", "latencies", "register"]  # the order in which a short lease needs them
    for group in groups:
        assert re.search(rf"\bwanted {group}\b", text), f"group {group} gates no step"
        assert re.search(rf"^#\s+{group}\s+\S", text, re.MULTILINE), f"group {group} is not described in the header"
    # every step after the build lies under some group's gate
    body = text[text.index("# ---- correctness first"):]
    for line in body.splitlines():
        if re.match(r"\s*(QLAM_CUDA_PROGRAM=\S+ )?step ", line):
            assert line.startswith("  "), f"a step outside any group: {line.strip()}"
        elif re.match(r"\S.*&& step ", line):
            assert line.startswith("wanted "), f"a step outside any group: {line.strip()}"


@pytest.mark.parametrize("steps", ["bogus", "tests,registr", "tests bogus"])
def test_unknown_group_stops_at_once_naming_the_groups(tmp_path, steps):
    result = run_script(tmp_path, QLAM_GPU_STEPS=steps)
    assert result.returncode == 2
    assert "unknown step group" in result.stderr
    for group in declared_groups():
        assert group in result.stderr
    assert not (tmp_path / "logs").exists()


@pytest.mark.skipif(has_gpu(), reason="this machine has an NVIDIA GPU")
@pytest.mark.parametrize("steps", [None, "tests,latencies,register", "all"])
def test_without_a_gpu_it_stops_saying_what_is_missing(tmp_path, steps):
    env = {} if steps is None else {"QLAM_GPU_STEPS": steps}
    result = run_script(tmp_path, **env)
    assert result.returncode == 2
    assert "no NVIDIA GPU here" in result.stderr
    assert "bash scripts/test.sh" in result.stderr
    assert not (tmp_path / "logs").exists()


FAKE_TOOLS = {
    # nvidia-smi -L lists one GPU; --query-gpu=compute_cap answers 9.0
    "nvidia-smi": 'case "$*" in *compute_cap*) echo "9.0" ;; *) echo "GPU 0: Fake GPU (UUID: GPU-0)" ;; esac\n',
    "nvcc": 'echo "Cuda compilation tools, release 13.0"; echo "Build fake"\n',
}
RECORDING = 'echo "$(basename "$0") $*" >> "$QLAM_FAKE_CALLS"; echo "${QLAM_DATA:-}" >> "$QLAM_FAKE_CALLS.data"\n'


def fake_gpu_machine(tmp_path):
    """An environment whose PATH has nvidia-smi seeing a GPU, and python3, ncu and compute-sanitizer that only
    record their arguments (and QLAM_DATA): the script's flow without building or running anything. None of
    this machine's qlam settings (environment, data, steps, logs) leak in. Returns (env, calls file)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {**FAKE_TOOLS, **{n: RECORDING for n in ("python3", "python", "ncu", "compute-sanitizer")}}.items():
        tool = bin_dir / name
        tool.write_text("#!/bin/sh\n" + body)
        tool.chmod(0o755)
    calls = tmp_path / "calls.txt"
    env = {k: v for k, v in os.environ.items()
           if k not in ("QLAM_ENV", "VIRTUAL_ENV", "QLAM_DATA", "QLAM_GPU_STEPS", "QLAM_GPU_LOG_DIR")}
    env.update(PATH=f"{bin_dir}:/usr/bin:/bin", HOME=str(tmp_path / "home"), QLAM_FAKE_CALLS=str(calls))
    return env, calls


def script_calls(tmp_path, steps):
    env, calls = fake_gpu_machine(tmp_path)
    env["QLAM_GPU_LOG_DIR"] = str(tmp_path / "logs")
    if steps is not None:
        env["QLAM_GPU_STEPS"] = steps
    result = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return calls.read_text().splitlines(), (tmp_path / "logs" / "summary.md").read_text()


def test_a_chosen_subset_runs_only_its_steps_after_the_build(tmp_path):
    calls, summary = script_calls(tmp_path, "latencies,register")
    assert any("pip install" in c for c in calls)  # the build always runs
    ran = [c for c in calls if "benchmarks/" in c or "pytest" in c or c.startswith(("ncu", "compute-sanitizer"))]
    assert ran == ["python benchmarks/latencies.py", "python benchmarks/register_cuda.py"]
    assert "steps: latencies, register" in summary
    assert "| latency probes (cost model's latencies) | ok |" in summary
    assert "CUDA tests" not in summary


def test_by_default_every_group_runs(tmp_path):
    calls, summary = script_calls(tmp_path, None)
    text = "\n".join(calls)
    for expected in ("-m pytest", "benchmarks/latencies.py", "benchmarks/register_cuda.py", "benchmarks/ncu_register.py --smnist",
                     "compute-sanitizer --tool synccheck", "-m qlam.train", "benchmarks/memory.py"):
        assert expected in text, expected
    assert "steps: " + ", ".join(declared_groups()) in summary
    assert "0 step(s) failed" in summary


def test_the_bundle_runner_installs_offline_and_points_gpu_check_at_its_data(tmp_path):
    """.gpu_bundle/run.sh (scripts/gpu_bundle_run.sh) in a clone: the wheels installed by name from the bundle
    alone, QLAM_DATA the bundle, the logs under $OUT/gpu_check (what the device tool brings back)."""
    clone = tmp_path / "clone"
    (clone / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, clone / "scripts" / "gpu_check.sh")
    bundle = clone / ".gpu_bundle"
    (bundle / "wheels").mkdir(parents=True)
    (bundle / "mnist").mkdir()
    shutil.copy(ROOT / "scripts" / "gpu_bundle_run.sh", bundle / "run.sh")
    env, calls = fake_gpu_machine(tmp_path)
    env.update(OUT=str(tmp_path / "out"), QLAM_GPU_STEPS="register")
    result = subprocess.run(["bash", str(bundle / "run.sh")], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gpu_check rc=0" in result.stdout
    lines = calls.read_text().splitlines()
    data = Path(str(calls) + ".data").read_text().splitlines()
    assert f"python3 -m pip install -q --no-index --find-links {bundle}/wheels expecttest hypothesis pytest-timeout" in lines
    bench = lines.index("python benchmarks/register_cuda.py")
    assert data[bench] == str(bundle)
    summary = (tmp_path / "out" / "gpu_check" / "summary.md").read_text()
    assert "steps: register" in summary and "| register kernel vs today's | ok |" in summary
