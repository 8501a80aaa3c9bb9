"""Recipe configs: frozen dataclasses filled from YAML and ``key=value`` overrides.

One place checks every key and value: an unknown key is an error that lists
the valid ones, a value of the wrong type is an error that names the
expected type.  Nothing is swallowed by ``**kwargs``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError

__all__ = ["load_config", "config_to_dict", "config_from_dict", "parse_overrides"]

C = TypeVar("C")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(name: str, value: Any, expected: Any) -> Any:
    """``value`` as ``expected`` (int, float, bool, str, or ``X | None``), or ConfigError."""
    args = typing.get_args(expected)
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (expected,) = [a for a in args if a is not type(None)]
    if expected is bool:
        if isinstance(value, bool):
            return value
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif expected is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # `tasks=15` on the command line arrives as a YAML number
    else:  # pragma: no cover - configs only use the types above
        raise TypeError(f"unsupported config type {expected} for {name}")
    raise ConfigError(f"{name} must be {expected.__name__}, got {value!r}")


def config_from_dict(cls: type[C], values: dict[str, Any], *, source: str = "config") -> C:
    """Build ``cls`` from ``values``; unknown keys and wrong types raise ConfigError."""
    types_ = _field_types(cls)
    unknown = sorted(set(values) - set(types_))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)}",
            hint=f"valid keys: {', '.join(types_)}",
        )
    kwargs = {k: _coerce(k, v, types_[k]) for k, v in values.items()}
    try:
        config = cls(**kwargs)
        validate = getattr(config, "validate", None)
        if validate is not None:
            validate()
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from None
    return config


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["lr=0.001", "cell=gru"]`` -> ``{"lr": 0.001, "cell": "gru"}`` (values parsed as YAML scalars)."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value", hint="for example: epochs=10 cell=gru")
        try:
            out[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            out[key.strip()] = text
    return out


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None) -> C:
    """Defaults of ``cls``, then the YAML file, then ``key=value`` overrides."""
    values: dict[str, Any] = {}
    source = "config"
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            raise ConfigError(f"cannot read config {path}: {str(err).splitlines()[0]}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of key: value at the top level")
        values.update(loaded or {})
    values.update(parse_overrides(overrides or []))
    return config_from_dict(cls, values, source=source)


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
