"""The training config: its typed schema, YAML loading and dotted-key overrides.

``load_config("configs/smnist/qlam.yaml", ["train.lr=3e-4", "model.qlam.n_heads=2"])``
returns a validated ``Config``; ``python -m qlam.train --help-config`` lists every key.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Literal, Optional

import yaml

from .schema import ConfigError, build, field, to_dict

TaskName = Literal["smnist", "psmnist", "sfmnist", "scifar10", "scifar10_gray"]
ModelName = Literal["qlam", "lstm", "transformer", "ssm"]


@dataclass
class TaskConfig:
    name: TaskName = field("smnist", help="the task")
    data_root: Optional[str] = field(None, help="the writable data folder, searched first (then ../shared/data "
                                     "unless this is set, and /usr/share/datasets); default $QLAM_DATA, else "
                                     "~/.cache/qlam/data")
    download: bool = field(True, help="a data set found in no data folder is downloaded with torchvision into "
                           "the writable one (needs internet; fails within seconds without); false, or the "
                           "environment variable QLAM_NO_DOWNLOAD=1, turns this off")
    verify_md5: bool = field(True, help="check CIFAR-10 batches against the known md5s")
    val_size: int = field(5000, ge=0, help="training images held out for validation (seeded split)")
    split_seed: int = field(0, help="seed of the train/validation split")
    train_subset: Optional[int] = field(None, ge=1, help="use only this many training images")
    val_subset: Optional[int] = field(None, ge=1, help="use only this many validation images")
    test_subset: Optional[int] = field(None, ge=1, help="use only the first this many test images")
    permutation_seed: int = field(12008, help="psmnist: torch.manual_seed(seed); torch.randperm(784)")
    downsample: int = field(1, ge=1, help="average-pool images by this factor first (1 = the real task)")


@dataclass
class QLAMOptions:
    n_qubits: int = field(6, ge=1, help="qubits per head")
    n_heads: int = field(4, ge=1, help="independent quantum memories")
    depth: int = field(2, ge=1, help="circuit layers per token")
    entangler: Literal["cnot", "cz", "rzz", "none"] = field("rzz", help="rzz (default): a learned ZZ phase per "
                                                            "ring pair, the identity at angle 0; cnot/cz: a fixed ring")
    n_measurements: int = field(4, ge=1, help="query-chosen observables read per head")
    pair_features: bool = field(False, help="also measure two-qubit Paulis")
    backend: Literal["auto", "kernel", "reference"] = field("auto")
    checkpoint_every: Optional[int] = field(None, ge=1, help="keep every k-th state for the backward")
    recompute_chunk: Optional[int] = field(None, ge=1, help="train the model in chunks of this many tokens, "
                                           "recomputed in the backward: memory flat in T, ~1 more forward")
    # How a token becomes its circuit; see qlam.QLAM. The defaults (rzz, step_size fixed) were chosen by the
    # table in results/qlam-remedies/README.md; entangler=cnot step_size=none is the original alpha = W x + b.
    angle_init: float = field(0.5, ge=0, help="multiplier of the angle projection's weights at init")
    angle_bias: bool = field(True, help="the angle projection has a bias")
    angle_map: Literal["linear", "tanh"] = field("linear", help="tanh: angles = pi * tanh(W x + b)")
    step_size: Literal["none", "selective", "fixed"] = field("fixed", help="fixed (default): head h's angles "
                                                             "times a learned softplus(c_h); selective: times "
                                                             "softplus(w_h x + c_h), an input-dependent step; "
                                                             "none: the angles as projected")
    dt_min: float = field(0.001, gt=0, help="fixed/selective step: smallest initial step over the heads")
    dt_max: float = field(0.1, gt=0, help="fixed/selective step: largest initial step over the heads")
    reset_state_every_token: bool = field(False, help="diagnosis only: each token's circuit acts on |0...0> "
                                          "(no memory)")
    angle_lr: Optional[float] = field(None, gt=0, help="learning rate of the angle projection (no weight decay); "
                                      "null: train.lr")


@dataclass
class TransformerOptions:
    n_heads: int = field(4, ge=1, help="attention heads (must divide d_model)")
    positional: Literal["sinusoidal", "learned"] = field("sinusoidal")
    # Attention variants from other quantum-attention work, simulated exactly on a classical machine (no quantum
    # speed-up is claimed or measured); see qlam.models.transformer. They add no parameters.
    attention: Literal["dense", "sparse_rank1", "topk"] = field(
        "dense", help="dense: softmax attention (scaled_dot_product_attention); sparse_rank1: exp(scores) kept "
        "exactly on each row's large entries plus an all-ones rank-one part for the rest (Guo et al.); topk: "
        "per query a softmax over its attention_k largest scores, the rest masked (our reading of QSAT)")
    attention_k: int = field(32, ge=1, help="sparse_rank1 / topk: entries kept per query (clamped to the "
                             "sequence length; with the tau rule, the most kept per query)")
    sparse_rule: Literal["topk", "tau"] = field("topk", help="sparse_rank1: the large entries are each row's "
                                                "attention_k largest scores (topk) or its scores with |score| > "
                                                "attention_tau, at most attention_k of them (tau)")
    attention_tau: float = field(1.0, gt=0, help="sparse_rank1 with sparse_rule=tau: the threshold on |score| "
                                 "(score = q.k / sqrt(d_head))")


@dataclass
class SSMOptions:
    d_state: int = field(64, ge=2, help="S4D state size per channel (even)")
    dt_min: float = field(0.001, gt=0)
    dt_max: float = field(0.1, gt=0)
    lr: float = field(0.001, gt=0, help="learning rate of A, dt (no weight decay), as in S4D")


@dataclass
class ModelConfig:
    name: ModelName = field("qlam", help="the model")
    d_model: int = field(64, ge=1, help="width of the residual stream (LSTM: hidden size)")
    n_layers: int = field(2, ge=1, help="blocks (LSTM: layers)")
    dropout: float = field(0.0, ge=0.0, lt=1.0)
    pooling: Literal["mean", "last"] = field("mean", help="how the sequence becomes one vector")
    ff_mult: int = field(2, ge=0, help="gated feed-forward width multiple (0 = none; not LSTM)")
    qlam: QLAMOptions = field(QLAMOptions())
    transformer: TransformerOptions = field(TransformerOptions())
    ssm: SSMOptions = field(SSMOptions())


@dataclass
class TrainConfig:
    epochs: int = field(10, ge=1)
    batch_size: int = field(64, ge=1, help="global batch (split over processes)")
    eval_batch_size: int = field(256, ge=1)
    lr: float = field(1e-3, gt=0)
    weight_decay: float = field(0.01, ge=0)
    warmup_fraction: float = field(0.05, ge=0, le=1, help="share of steps with a linear warm-up")
    min_lr_ratio: float = field(0.0, ge=0, le=1, help="cosine decays to lr * this")
    grad_clip: float = field(1.0, ge=0, help="max gradient norm (0 = off)")
    label_smoothing: float = field(0.0, ge=0, lt=1)
    seed: int = field(0)
    deterministic: bool = field(False, help="torch.use_deterministic_algorithms(True)")
    precision: Literal["auto", "fp32", "bf16"] = field("auto", help="auto: bf16 autocast on GPU, fp32 on CPU")
    compile: bool = field(False, help="torch.compile the model")
    device: Literal["auto", "cpu", "cuda"] = field("auto")
    num_threads: Optional[int] = field(None, ge=1, help="CPU threads (torch.set_num_threads)")
    keep_freed_memory: bool = field(True, help="Linux/glibc: keep freed memory for reuse instead of returning it "
                                    "to the OS, so large tensors stop page-faulting every step (qlam.allocator)")
    max_steps_per_epoch: Optional[int] = field(None, ge=1, help="cut epochs short (smoke tests)")
    checkpoint_every_steps: Optional[int] = field(None, ge=1, help="also save `last` every this many steps")
    skip_nonfinite: bool = field(False, help="skip a batch whose loss or gradient is not finite (else stop)")
    max_nonfinite_skips: int = field(10, ge=1, help="stop anyway after this many such batches in a row")
    dist_timeout_s: float = field(600.0, gt=0, help="DDP: a rank waiting this long for the others fails")


@dataclass
class OutputConfig:
    dir: str = field("runs", help="parent folder of run folders")
    name: Optional[str] = field(None, help="run folder name; default <task>-<model>-seed<seed> "
                                     "(<task>-transformer-<attention>-seed<seed> for an attention variant)")
    plots: bool = field(True, help="write learning-curve PNGs")
    progress: bool = field(True, help="show progress bars")


@dataclass
class Config:
    task: TaskConfig = field(TaskConfig())
    model: ModelConfig = field(ModelConfig())
    train: TrainConfig = field(TrainConfig())
    output: OutputConfig = field(OutputConfig())
    # Where the config came from ("FILE KEY=VALUE ..."), set by load_config for the run's first lines;
    # a plain attribute, not a key: it is not saved, compared on resume or listed by --help-config.
    source = None

    def run_dir(self) -> Path:
        model = self.model.name
        if model == "transformer" and self.model.transformer.attention != "dense":
            model += f"-{self.model.transformer.attention}"  # not the dense transformer's folder
        name = self.output.name or f"{self.task.name}-{model}-seed{self.train.seed}"
        return Path(self.output.dir) / name

    def to_dict(self) -> Dict[str, Any]:
        return to_dict(self)


def apply_override(data: Dict[str, Any], item: str) -> None:
    """Sets ``a.b.c=value`` in a nested dict; the value is read as YAML (numbers, true, null, lists)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE with a dotted key, e.g. train.lr=3e-4")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {item!r}: bad key {key!r}")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {'.'.join(parts[:i + 1])} is not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None


def config_from_dict(data: Dict[str, Any], overrides: Iterable[str] = ()) -> Config:
    data = copy.deepcopy(data or {})
    for item in overrides:
        apply_override(data, item)
    cfg = build(Config, data)
    _check_consistency(cfg)
    return cfg


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping (first on line {seen[key] + 1})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def read_yaml(path: Path) -> Any:
    """The YAML in ``path``; a syntax error becomes ``ConfigError("FILE:LINE:COLUMN: ...")``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the config file ({error})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error)
        context, start = getattr(error, "context", None), getattr(error, "context_mark", None)
        if context and start is not None and mark is not None and start.line != mark.line:
            context += f" that starts on line {start.line + 1}"
        raise ConfigError(f"{where}: not valid YAML: {problem}{f' ({context})' if context else ''}") from None


def load_config(path, overrides: Iterable[str] = ()) -> Config:
    """The file is checked alone first, so an error names the file or the override that caused it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    data = read_yaml(path)
    overrides = list(overrides)
    try:
        build(Config, data)  # the schema alone: overrides may still settle cross-key checks
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    try:
        cfg = config_from_dict(data, overrides)
    except ConfigError as error:
        where = f"{path} with the command-line overrides {' '.join(overrides)}" if overrides else str(path)
        raise ConfigError(f"{where}: {error}") from None
    cfg.source = " ".join([str(path)] + overrides)
    return cfg


def _check_consistency(cfg: Config) -> None:
    m = cfg.model
    if m.name == "transformer" and m.d_model % m.transformer.n_heads:
        raise ConfigError(f"model.transformer.n_heads={m.transformer.n_heads} must divide "
                          f"model.d_model={m.d_model}")
    if m.name == "ssm" and m.ssm.d_state % 2:
        raise ConfigError(f"model.ssm.d_state must be even, got {m.ssm.d_state}")
    if m.qlam.dt_min > m.qlam.dt_max:
        raise ConfigError(f"model.qlam.dt_min={m.qlam.dt_min} must not exceed model.qlam.dt_max={m.qlam.dt_max}")
    if m.ssm.dt_min > m.ssm.dt_max:
        raise ConfigError(f"model.ssm.dt_min={m.ssm.dt_min} must not exceed model.ssm.dt_max={m.ssm.dt_max}")
