"""qlam.train: configs, the trainer, checkpoints and the command lines (qlam-train, qlam-eval, qlam-sweep)."""
from .checkpoint import CheckpointError
from .config import Config, load_config
from .schema import ConfigError
from .trainer import RunDirError, evaluate, train

__all__ = ["CheckpointError", "Config", "ConfigError", "RunDirError", "evaluate", "load_config", "train"]
