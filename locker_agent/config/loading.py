"""Reading the file: TOML, validation, environment overrides, and every error told plainly."""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from locker_agent.config.agent import CONFIG_PATH_ENV, DEFAULT_CONFIG_PATH, ENV_PREFIX, AgentConfig
from locker_agent.config.problems import UNSET, ConfigError, Problems, describe


def default_config_path() -> Path:
    """``$LOCKER_AGENT_CONFIG`` if set, else the packaged location under /etc."""
    return Path(os.environ.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH)


def load_config(path: str | Path) -> AgentConfig:
    """Read, parse and validate the config file, applying environment overrides.

    Raises :class:`ConfigError` if the file is missing or unreadable, is not valid TOML,
    or does not validate; the error lists every problem found.
    """
    path = Path(path)
    data = _read_toml(path)
    try:
        overrides = environment_overrides(os.environ)
    except ValueError as exc:  # a variable for a table or a list that is not valid JSON
        raise ConfigError(path, [f"environment: {exc}"]) from None
    try:
        return AgentConfig(**_laid_over(data, overrides))
    except ValidationError as exc:
        # ``from None``: the chained pydantic error would carry raw inputs (passwords) into logs.
        raise ConfigError(path, _describe_errors(exc)) from None


NULL = "null"
"""An environment variable set to this unsets the key (an optional one becomes None)."""


def environment_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``LOCKER_AGENT_*`` variables as nested tables: ``LOCKER_AGENT_MQTT__PORT=1884`` is
    ``{"mqtt": {"port": "1884"}}``.

    Names are case-insensitive; only those naming a top-level key count (``$LOCKER_AGENT_
    CONFIG`` names the file). ``null`` is None; a value for a table or a list is JSON; any
    other is text, converted by validation like the file's. Done here rather than with
    pydantic-settings, which cost the daemon 6.4 MB of RSS and 35 ms of start-up for this
    (docs/benchmarks.md, issue 19).
    """
    overrides: dict[str, Any] = {}
    for name, text in sorted(environ.items()):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper == CONFIG_PATH_ENV:
            continue
        keys = upper[len(ENV_PREFIX):].lower().split("__")
        if keys[0] not in AgentConfig.model_fields or not all(keys):
            continue
        annotation = _annotation_at(keys)
        value: Any = None if text == NULL else text
        if value is not None and _is_complex(annotation):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError(
                    f"{name} must be JSON (a table or a list), got {text[:40]!r}") from None
        table = overrides
        for key in keys[:-1]:
            inner = table.get(key)
            if not isinstance(inner, dict):
                inner = table[key] = {}
            table = inner
        existing = table.get(keys[-1])
        table[keys[-1]] = (_laid_over(value, existing) if isinstance(value, dict)
                           and isinstance(existing, dict) else value)
    return overrides


def _laid_over(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` on top, tables merged key by key (lists and values replaced)."""
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, dict):
            merged[key] = _laid_over(below, value)
        else:
            merged[key] = value
    return merged


def _annotation_at(keys: list[str]) -> object:
    """The type of the key at ``keys`` (None where no model declares it)."""
    model: type[BaseModel] | None = AgentConfig
    annotation: object = None
    for key in keys:
        if model is None:
            return None
        field = model.model_fields.get(key)
        if field is None:
            return None
        annotation = field.annotation
        model = _model_in(annotation)
    return annotation


def _is_complex(annotation: object) -> bool:
    """A table or a list: what an environment variable gives as JSON."""
    if annotation is None:
        return False
    origin = get_origin(annotation)
    if origin is None:
        return isinstance(annotation, type) and (
            issubclass(annotation, BaseModel | dict | list | tuple | set | frozenset))
    if origin in (list, dict, tuple, set, frozenset):
        return True
    return any(_is_complex(arg) for arg in get_args(annotation) if arg is not type(None))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(path, ["file not found"]) from None
    except IsADirectoryError:
        raise ConfigError(path, ["is a directory, not a config file"]) from None
    except OSError as exc:
        raise ConfigError(path, [f"cannot read: {exc.strerror or exc}"]) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [f"not UTF-8 text (bad byte at offset {exc.start})"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [_describe_toml_error(exc)]) from None


def _describe_toml_error(exc: tomllib.TOMLDecodeError) -> str:
    # Python 3.11's tomllib puts the position only in the message: "... (at line 3, column 7)".
    match = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", str(exc), re.DOTALL)
    if match is None:
        return f"TOML syntax error: {exc}"
    return f"line {match[2]}, column {match[3]}: TOML syntax error: {match[1]}"


def _describe_errors(exc: ValidationError) -> list[str]:
    env_keys = _env_keys()
    lines = []
    for error in exc.errors():
        context = error.get("ctx", {}).get("error")
        if isinstance(context, Problems):
            found = [(error["loc"] + p.loc, p.value, p.message) for p in context.problems]
        else:
            value = UNSET if error["type"] in ("missing", "extra_forbidden") else error["input"]
            found = [(error["loc"], value, _human_message(error))]
        for loc, value, message in found:
            line = describe(loc, value, message)
            env_name = _env_source(loc, env_keys)
            lines.append(f"{line} (from environment {env_name})" if env_name else line)
    return lines


def _human_message(error: ErrorDetails) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return _unknown_key_message(error["loc"])
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "must be a table"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    # "Input should be less than or equal to 2000" -> "must be less than or equal to 2000"
    return re.sub(r"^\w+ should ", "must ", error["msg"])


def _unknown_key_message(loc: tuple[str | int, ...]) -> str:
    key = loc[-1]
    known = _known_keys(loc[:-1])
    close = difflib.get_close_matches(str(key), known, n=1) if known else []
    return f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"


def _known_keys(loc: tuple[str | int, ...]) -> list[str]:
    """The keys allowed in the table at ``loc``, for suggesting a fix to a typo."""
    model: type[BaseModel] | None = AgentConfig
    for part in loc:
        if model is None:
            return []
        if isinstance(part, str):
            field = model.model_fields.get(part)
            model = _model_in(field.annotation) if field else None
    return list(model.model_fields) if model else []


def _model_in(annotation: object) -> type[BaseModel] | None:
    if get_origin(annotation) is None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        return None
    for arg in get_args(annotation):
        model = _model_in(arg)
        if model is not None:
            return model
    return None


def _env_keys() -> dict[tuple[str, ...], str]:
    """Key paths set by ``LOCKER_AGENT_*`` variables, mapped to the variable's name."""
    keys = {}
    for name in os.environ:
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper != CONFIG_PATH_ENV:
            keys[tuple(upper[len(ENV_PREFIX) :].lower().split("__"))] = name
    return keys


def _env_source(loc: tuple[str | int, ...], env_keys: dict[tuple[str, ...], str]) -> str | None:
    for key, name in env_keys.items():
        if tuple(str(part).lower() for part in loc[: len(key)]) == key:
            return name
    return None
