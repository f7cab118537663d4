"""Every config fault names the file, the key and what is allowed; parametrised over the whole schema.

The key lists come from the schema itself, so a key added later is covered without touching this file.
"""
import dataclasses
import typing

import pytest
import yaml

from qlam.train.cli import train_main
from qlam.train.config import Config, load_config
from qlam.train.schema import ConfigError, _type_name


def _leaves(cls=Config, prefix=""):
    """(dotted key, type, field metadata) of every leaf key, and of every section."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key, tp = prefix + f.name, hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield key, tp, f.metadata
            yield from _leaves(tp, key + ".")
        else:
            yield key, tp, f.metadata


KEYS = list(_leaves())
LEAVES = [k for k in KEYS if not dataclasses.is_dataclass(k[1])]
LIMITED = [(key, tp, meta, limit) for key, tp, meta in LEAVES for limit in ("ge", "gt", "le", "lt") if limit in meta]


def _nested(key, value):
    data = value
    for part in reversed(key.split(".")):
        data = {part: data}
    return data


def _write(tmp_path, data):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _base_type(tp):
    args = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) is typing.Union else [tp]
    return args[0]


def _wrong_value(tp):
    """A value of the wrong type for ``tp``: text where a number or a switch is wanted, a number elsewhere."""
    base = _base_type(tp)
    if dataclasses.is_dataclass(base):
        return 3
    if base is bool:
        return "maybe"
    if base in (int, float):
        return "many"
    return 12  # str and Literal keys


def test_the_schema_is_walked():
    assert len(LEAVES) >= 50 and len(LIMITED) >= 20
    assert ("train.skip_nonfinite", bool) in [(k, t) for k, t, _ in LEAVES]


@pytest.mark.parametrize("key, tp, meta", KEYS, ids=[k[0] for k in KEYS])
def test_wrong_type_names_file_key_and_allowed(tmp_path, key, tp, meta):
    for value in (_wrong_value(tp), [1, 2]):  # a list is wrong for every key
        path = _write(tmp_path, _nested(key, value))
        with pytest.raises(ConfigError) as info:
            load_config(path)
        message = str(info.value)
        allowed = "a mapping" if dataclasses.is_dataclass(tp) else _type_name(tp)
        assert message.startswith(f"{path}: ") and f"{key}:" in message and allowed in message, message


@pytest.mark.parametrize("key, tp, meta, limit", LIMITED, ids=[f"{k[0]}-{k[3]}" for k in LIMITED])
def test_out_of_range_names_file_key_and_limit(tmp_path, key, tp, meta, limit):
    bound = meta[limit]
    step = 1 if _base_type(tp) is int else 0.5
    value = {"ge": bound - step, "gt": bound, "le": bound + step, "lt": bound}[limit]
    value = float(value) if _base_type(tp) is float else value
    path = _write(tmp_path, _nested(key, value))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    word = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}[limit]
    assert str(info.value) == f"{path}: {key}: must be {word} {bound}, got {value!r}"


@pytest.mark.parametrize("key", [k[0] for k in KEYS])
def test_misspelled_key_names_file_and_suggests_the_key(tmp_path, key):
    *sections, name = key.split(".")
    typo = name + name[-1]  # "epochs" -> "epochss"
    path = _write(tmp_path, _nested(".".join(sections + [typo]), 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: unknown key {'.'.join(sections + [typo])!r}"), message
    assert f"did you mean {key!r}" in message and "allowed keys in" in message


@pytest.mark.parametrize("key", ["train.lr", "train.weight_decay", "model.dropout", "model.ssm.dt_min"])
@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "'inf'", "'nan'"])
def test_non_finite_numbers_are_refused(tmp_path, key, value):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(_nested(key, "@")).replace("'@'", value))
    with pytest.raises(ConfigError, match=rf"^{path}: {key}: expected a finite number"):
        load_config(path)


@pytest.mark.parametrize("text, line, words", [
    ("train:\n  lr: 0.1\n  epochs: [1,\nmodel: {}\n", 5, ["expected ',' or ']'", "starts on line 3"]),
    ("train:\n\tlr: 0.1\n", 2, ["'\\t'"]),
    ("train:\n  lr: 0.1\n epochs: 3\n", 3, ["expected <block end>"]),
    ("model:\n  name: 'qlam\n", 3, ["end of stream"]),
    ("train:\n  lr: 1\n  lr: 2\n", 3, ["key 'lr' appears twice", "first on line 2"]),
    ("train: {lr: 1}\ntrain: {epochs: 2}\n", 2, ["key 'train' appears twice"]),
])
def test_yaml_errors_give_file_and_line(tmp_path, capsys, text, line, words):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}:") and "not valid YAML" in message, message
    for word in words:
        assert word in message, (word, message)
    assert train_main([str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{line}:" in err and "Traceback" not in err


def test_other_file_faults(tmp_path):
    cases = {"list.yaml": "- 1\n- 2\n", "scalar.yaml": "42\n"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError, match=rf"^{tmp_path / name}: the config: expected a mapping of keys"):
            load_config(tmp_path / name)
    (tmp_path / "binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'binary.yaml'}: cannot read the config file"):
        load_config(tmp_path / "binary.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_config(tmp_path / "empty.yaml").train.epochs == 10  # an empty file is the defaults, not an error


def test_override_errors_name_the_override_not_the_file(tmp_path):
    path = _write(tmp_path, {"train": {"epochs": 2}})
    with pytest.raises(ConfigError, match=rf"^{path} with the command-line overrides train.lr=fast: train.lr: "
                                          r"expected a number"):
        load_config(path, ["train.lr=fast"])
    # A cross-key check that an override settles is not held against the file alone.
    bad = _write(tmp_path, {"model": {"name": "transformer", "d_model": 30}})
    assert load_config(bad, ["model.d_model=32"]).model.d_model == 32
    with pytest.raises(ConfigError, match=rf"^{bad}: model.transformer.n_heads=4 must divide model.d_model=30"):
        load_config(bad)
