"""Typed configs: dataclasses read from YAML, checked key by key, and written back.

A config class is a dataclass whose fields carry `metadata={"help": ...}` (shown by every script's `--help`)
and whose `__post_init__` checks its own values. A class may list settings that no longer exist in
`REMOVED_SETTINGS` (name -> "was removed: why" or "has moved to ..."): an old config that still sets one is
refused with that sentence instead of a generic "unknown key".
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from pipelines.errors import UserError


def require_positive(key: str, value: int | float) -> None:
    if value <= 0:
        raise UserError(f"{key} must be a positive number, got {value}")


def is_config_class(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def section_type(tp: Any) -> type | None:
    """The config class of a field typed `Section` or `Section | None`, else None."""
    if is_config_class(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        classes = [a for a in typing.get_args(tp) if is_config_class(a)]
        return classes[0] if len(classes) == 1 else None
    return None


def valid_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key a config of class cls accepts."""
    keys = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        name = prefix + field.name
        keys.append(name)
        section = section_type(hints[field.name])
        if section is not None:
            keys.extend(valid_keys(section, name + "."))
    return keys


def removed_settings(cls: type, prefix: str = "") -> dict[str, str]:
    """Dotted key -> reason, for the settings that cls (and its sections) no longer have."""
    removed = {prefix + key: reason for key, reason in getattr(cls, "REMOVED_SETTINGS", {}).items()}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        section = section_type(hints[field.name])
        if section is not None:
            removed.update(removed_settings(section, prefix + field.name + "."))
    return removed


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}.get(
        tp, str(tp)
    )


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Return value as type tp, or raise UserError naming the key, the value and what was expected."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except UserError:
                continue
        raise UserError(f"{key} must be {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise UserError(f"{key} must be one of {', '.join(map(str, allowed))}; got {value!r}")
        return value
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{key} must be {_type_name(tp)}, got {value!r}")
        (item_type,) = typing.get_args(tp)
        return [_coerce(f"{key}[{i}]", v, item_type) for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise UserError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise UserError(f"{key} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise UserError(f"{key} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise UserError(f"{key} must be a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise UserError(f"{key} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"{key} must be a string, got {value!r}")
    raise TypeError(f"unsupported config type {tp} for {key}")


def unknown_key_message(cls: type, full: str, source: str, prefix: str = "") -> str:
    """Why `full` is refused: a removed setting's reason, or the nearest valid key."""
    removed = removed_settings(cls, prefix)
    if full in removed:
        return f"setting '{full}' in {source} {removed[full]}"
    candidates = valid_keys(cls, prefix)
    near = difflib.get_close_matches(full, candidates, n=1, cutoff=0.5)
    hint = f"; did you mean '{near[0]}'?" if near else f"; valid keys: {', '.join(sorted(candidates))}"
    return f"unknown key '{full}' in {source}{hint}"


def build(cls: type, values: dict[str, Any], prefix: str = "", source: str = "config") -> Any:
    """Build dataclass cls from a nested dict; unknown or removed keys and bad values raise UserError."""
    if not isinstance(values, dict):
        raise UserError(f"{prefix.rstrip('.') or 'the config'} in {source} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        full = prefix + str(key)
        if key not in names:
            raise UserError(unknown_key_message(cls, full, source, prefix))
        section = section_type(hints[key])
        if section is not None and not (value is None and section is not hints[key]):
            kwargs[key] = build(section, value or {}, full + ".", source)
        else:
            kwargs[key] = _coerce(full, value, hints[key])
    return cls(**kwargs)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file; a missing file or bad YAML is one sentence naming the line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"config file {path} is not valid YAML{where}") from err
    if not isinstance(tree, dict):
        raise UserError(f"config file {path} must hold a mapping of settings, not {type(tree).__name__}")
    return tree


def load_config(cls: type, path: str | Path | None = None) -> Any:
    """The config of class cls from a YAML file (its defaults when path is None)."""
    if path is None:
        return cls()
    return build(cls, read_yaml(path), source=str(path))


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def dump_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
