"""The main job, ``bash scripts/train.sh [CONFIG] [KEY=VALUE ...] [--resume]``: sMNIST with the config that fits.

With a CUDA GPU it trains the full config, ``configs/smnist/qlam.yaml`` (~0.6M parameters, 50 epochs);
without one, ``configs/smnist/cpu.yaml`` (QLAM sized for a CPU: minutes), because the full config would
take days there (~75 h on 2 cores). A config given on the command line always wins; KEY=VALUE overrides
and flags pass through to ``qlam-train`` either way. The first line printed says which config, why, and
how to pick another. ``python -m qlam.train.main_job ...`` is what scripts/train.sh runs.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, List, Optional, Tuple

# python/qlam/train/main_job.py -> the checkout root, where configs/ lies.
CHECKOUT = Path(__file__).resolve().parents[3]
GPU_CONFIG = "configs/smnist/qlam.yaml"
CPU_CONFIG = "configs/smnist/cpu.yaml"
# scripts/train.sh changes to the checkout; it passes the folder it was called from here, so that a
# relative config path given by the user is found from there too.
CALLER_DIR_ENV = "QLAM_CALLER_DIR"
HELP_FLAGS = ("-h", "--help", "--help-config")


def _is_config(arg: str) -> bool:
    """A positional argument that is not a KEY=VALUE override (a path with '=' still counts if it is .yaml)."""
    return not arg.startswith("-") and ("=" not in arg or arg.endswith((".yaml", ".yml")))


def _shown(path: Path) -> str:
    """The path relative to the current folder when it lies below it (as the user would type it)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _locate(config: str) -> str:
    """A relative config path as given, unless it only exists relative to the folder train.sh was called from."""
    caller = os.environ.get(CALLER_DIR_ENV)
    path = Path(config).expanduser()
    if path.is_absolute() or path.exists() or not caller or not (Path(caller) / path).exists():
        return config
    return str(Path(caller) / path)


def choose_config(argv: List[str], cuda_available: Optional[Callable[[], bool]] = None) -> Tuple[List[str], str]:
    """The arguments for qlam-train and the line that explains the choice.

    ``argv``: the main job's arguments (an optional config, KEY=VALUE overrides, flags). Without a config among
    them: the full config when ``cuda_available()`` (default ``torch.cuda.is_available``), else the CPU one.
    """
    argv = list(argv)
    given = next((i for i, arg in enumerate(argv) if _is_config(arg)), None)
    if given is not None:
        argv[given] = _locate(argv[given])
        return argv, f"qlam: main job: training {argv[given]} (the config given on the command line)"
    if cuda_available is None:
        import torch
        cuda_available = torch.cuda.is_available
    gpu, cpu = _shown(CHECKOUT / GPU_CONFIG), _shown(CHECKOUT / CPU_CONFIG)
    if cuda_available():
        line = (f"qlam: main job: training {gpu}, the full config (~0.6M parameters, 50 epochs), because a CUDA "
                f"GPU is available; to pick another config: bash scripts/train.sh {cpu} [KEY=VALUE ...]")
        return [gpu] + argv, line
    line = (f"qlam: main job: training {cpu} (QLAM sized for a CPU, minutes), because no CUDA GPU is available "
            f"and the full config {gpu} would take days on a CPU (~75 h on 2 cores); to pick another config: "
            f"bash scripts/train.sh {gpu} [KEY=VALUE ...]")
    return [cpu] + argv, line


def main(argv: Optional[List[str]] = None) -> int:
    from .cli import train_main

    argv = sys.argv[1:] if argv is None else list(argv)
    if any(arg in HELP_FLAGS for arg in argv):  # qlam-train's own help; no config is chosen
        return train_main(argv)
    args, line = choose_config(argv)
    print(line, flush=True)
    return train_main(args)


if __name__ == "__main__":
    sys.exit(main())
