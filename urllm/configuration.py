"""Typed configuration: dataclasses loaded from YAML with dotted ``key=value`` overrides.

Precedence is dataclass defaults < YAML file < command-line overrides. Unknown keys and values of the
wrong type raise :class:`ConfigError` naming the dotted key (and the file). Fields whose metadata has
``path=True`` are resolved relative to the directory of the config file that set them.

Two more marks decide what a change of a field invalidates (declared once, in the dataclass):

- ``runtime=True``: how the work runs, not what it produces (threads, progress bars, logging and
  checkpoint cadence, batch sizes of pure inference, the device, cache locations). Dropped from every
  fingerprint and checkpoint signature (:func:`fingerprint_dict`, :func:`signature_dict`), so changing
  one never re-runs or deletes anything.
- ``extends=True``: a stopping rule (``epochs``, ``patience``) of a trainer that continues from its
  checkpoint. Part of the pipeline fingerprint (downstream results change) but not of checkpoint
  signatures, and a stage whose fingerprint changed only in such fields keeps its folder: the trainer
  extends the run instead of starting anew.

Each stage owns its config dataclass (``urllm/<stage>/config.py``); :mod:`urllm.config` composes them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


def opt(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    path: bool = False,
    factory: Any = None,
    runtime: bool = False,
    extends: bool = False,
):
    """A dataclass field with a help text; ``path=True`` marks a file-system path to resolve,
    ``runtime``/``extends`` what a change invalidates (see the module docstring)."""
    if runtime and extends:
        raise ValueError("a field is either runtime or extends, not both")
    meta = {"help": help, "path": path, "runtime": runtime, "extends": extends}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, base_dir: Path | None) -> Any:
    """Check ``value`` against the annotation ``tp`` and build nested dataclasses."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, base_dir)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, base_dir=base_dir, prefix=key + ".")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{key}[{i}]", base_dir) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        k_tp, v_tp = args if args else (Any, Any)
        return {
            _coerce(k, k_tp, f"{key}.{k}", base_dir): _coerce(v, v_tp, f"{key}.{k}", base_dir)
            for k, v in value.items()
        }
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported config type {_type_name(tp)}")


def from_dict(cls: type[T], data: dict[str, Any], *, base_dir: Path | None = None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a (nested) mapping; unknown keys and bad types are errors."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]!s} (known keys of {prefix or 'the top level'}: "
            f"{', '.join(sorted(known))})"
        )
    kwargs = {}
    for name, value in data.items():
        f = known[name]
        key = prefix + name
        value = _coerce(value, hints[name], key, base_dir)
        if f.metadata.get("path") and isinstance(value, str) and value and base_dir is not None:
            value = resolve_path(value, base_dir)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {exc}") from None


def resolve_path(value: str, base_dir: Path) -> str:
    """Expand ``~`` and make a relative path relative to ``base_dir``."""
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base_dir / p).resolve())


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into a nested dict; values are parsed as YAML scalars/lists."""
    nested: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override {pair!r} is not of the form key=value")
        key, raw = pair.split("=", 1)
        if not key:
            raise ConfigError(f"override {pair!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {key}: cannot parse value {raw!r}: {exc}") from None
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key}: {part} is not a section")
        node[parts[-1]] = value
    return nested


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``top`` over ``base`` (mappings merge, everything else is replaced)."""
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def absolutize_path_overrides(cls: type, overrides: dict[str, Any], cwd: Path) -> dict[str, Any]:
    """Make relative path values given on the command line relative to the working directory."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    out = dict(overrides)
    for name, value in overrides.items():
        f = known.get(name)
        if f is None:
            continue
        if isinstance(value, dict) and dataclasses.is_dataclass(hints[name]):
            out[name] = absolutize_path_overrides(hints[name], value, cwd)
        elif f.metadata.get("path") and isinstance(value, str) and value:
            out[name] = resolve_path(value, cwd)
    return out


def to_dict(obj: Any) -> Any:
    """A dataclass config as plain YAML-able data."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _without(obj: Any, marks: tuple[str, ...]) -> Any:
    if dataclasses.is_dataclass(obj):
        return {
            f.name: _without(getattr(obj, f.name), marks)
            for f in dataclasses.fields(obj)
            if not any(f.metadata.get(m) for m in marks)
        }
    if isinstance(obj, (list, tuple)):
        return [_without(v, marks) for v in obj]
    if isinstance(obj, dict):
        return {k: _without(v, marks) for k, v in obj.items()}
    return obj


def fingerprint_dict(obj: Any) -> Any:
    """:func:`to_dict` without the ``runtime`` fields: what a stage's results depend on."""
    return _without(obj, ("runtime",))


def signature_dict(obj: Any) -> Any:
    """:func:`to_dict` without ``runtime`` and ``extends`` fields: what a checkpoint must match to be
    resumed or extended."""
    return _without(obj, ("runtime", "extends"))


def marked_keys(cls: type, mark: str, prefix: str = "") -> list[str]:
    """Dotted keys of the fields of ``cls`` (nested sections included) carrying ``mark``."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.metadata.get(mark):
            out.append(prefix + f.name)
        elif dataclasses.is_dataclass(hints[f.name]):
            out += marked_keys(hints[f.name], mark, prefix + f.name + ".")
    return out


def dump_yaml(obj: Any, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(to_dict(obj), sort_keys=False))
