"""How a configuration problem is told: the file, the key, the value shown safely, the reason."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import BaseModel, SecretStr

_MAX_VALUE_CHARS = 60
_SECRET_KEYS = frozenset({"password"})


class ConfigError(Exception):
    """The configuration cannot be used; one entry in ``problems`` per thing to fix.

    ``str()`` gives one line per problem, each prefixed by the file, e.g.
    ``config/simulated.toml: compartments[3].size = 'XXL': must be one of S, M, L, XL``.
    """

    def __init__(self, path: str | Path, problems: list[str]) -> None:
        super().__init__(path, problems)
        self.path = Path(path)
        self.problems = problems

    def __str__(self) -> str:
        return "\n".join(f"{self.path}: {problem}" for problem in self.problems)


UNSET: Final = object()


@dataclass(frozen=True)
class Problem:
    loc: tuple[str | int, ...]
    message: str
    value: object = UNSET


class Problems(ValueError):
    """Problems a cross-field check found, each at its own location below the checked field.

    Pydantic attaches a validator's error to the field being validated (``compartments``);
    :func:`_describe_errors` unpacks these so messages name ``compartments[3].size``.
    """

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(describe(p.loc, p.value, p.message) for p in problems))
        self.problems = problems


def describe(loc: tuple[str | int, ...], value: object, message: str) -> str:
    where = _format_loc(loc)
    secret = any(part in _SECRET_KEYS for part in loc if isinstance(part, str))
    if value is UNSET or secret or not _is_plain(value):
        return f"{where}: {message}"
    shown = _toml_repr(value)
    if len(shown) > _MAX_VALUE_CHARS:
        shown = shown[: _MAX_VALUE_CHARS - 3] + "..."
    return f"{where} = {shown}: {message}"


def _toml_repr(value: object) -> str:
    """Show a value as it would be written in the file: ``true``, not ``True``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_repr(item) for item in value) + "]"
    return repr(str(value) if isinstance(value, Path) else value)


def _format_loc(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


def _is_plain(value: object) -> bool:
    """Worth showing: scalars and lists of them, not whole tables (which may hold secrets)."""
    if isinstance(value, dict | BaseModel | SecretStr):
        return False
    if isinstance(value, list | tuple):
        return all(_is_plain(item) for item in value)
    return True
