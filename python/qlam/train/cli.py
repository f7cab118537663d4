"""Command lines: ``qlam-train CONFIG [KEY=VALUE ...] [--resume]`` and ``qlam-eval CHECKPOINT``."""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from ..data import DatasetFormatError, DatasetNotFoundError
from .checkpoint import CheckpointError
from .schema import ConfigError

# Exit 2: something to fix in the config, the data or a checkpoint, found before or while loading.
USER_ERRORS = (ConfigError, DatasetNotFoundError, DatasetFormatError, CheckpointError)


def _fail(prog: str, error: Exception, code: int = 2) -> int:
    print(f"{prog}: error: {error}", file=sys.stderr)
    return code


def train_main(argv: Optional[List[str]] = None) -> int:
    from .config import Config, load_config
    from .schema import describe
    from .distributed import DistributedError
    from .trainer import NonFiniteError, RunDirError, train

    parser = argparse.ArgumentParser(
        prog="qlam-train", description="Train a sequence classifier from a YAML config "
        "(also under `torchrun --nproc_per_node N`). Example: qlam-train configs/smnist/qlam.yaml train.lr=3e-4")
    parser.add_argument("config", nargs="?", help="YAML config, e.g. configs/smnist/qlam.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted KEY=VALUE overrides, e.g. train.epochs=2")
    parser.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    parser.add_argument("--force", action="store_true", help="start over in a run folder that holds a run")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--help-config", action="store_true", help="list every config key and exit")
    args = parser.parse_intermixed_args(argv)
    if args.help_config:
        print(describe(Config))
        return 0
    if not args.config:
        parser.error("a config file is required (see configs/)")
    try:
        cfg = load_config(args.config, args.overrides)
        if args.print_config:
            import yaml
            print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
            return 0
        results = train(cfg, resume=args.resume, force=args.force)
    except USER_ERRORS + (RunDirError, ValueError) as error:
        return _fail("qlam-train", error)
    except (NonFiniteError, DistributedError, OSError) as error:  # the run failed (diverged, a peer died): exit 1
        return _fail("qlam-train", error, code=1)
    except KeyboardInterrupt:
        print("qlam-train: interrupted; continue with the same command and --resume", file=sys.stderr)
        return 130
    print(json.dumps(results, indent=2))
    return 0


def eval_main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="qlam-eval", description="Evaluate a checkpoint (last.pt or best.pt).")
    parser.add_argument("checkpoint")
    parser.add_argument("--split", choices=("test", "val", "both"), default="test")
    parser.add_argument("--data-root", default=None, help="override task.data_root")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    args = parser.parse_args(argv)
    from .evaluate import evaluate_checkpoint
    try:
        out = evaluate_checkpoint(args.checkpoint, args.split, args.data_root, args.device)
    except USER_ERRORS as error:
        return _fail("qlam-eval", error)
    print(json.dumps(out, indent=2))
    return 0
