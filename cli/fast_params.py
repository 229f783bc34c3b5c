"""Converting option values without pydantic, where that is plainly the same.

Typer 0.2x converts every parameter's value with a pydantic TypeAdapter made on first use, defaults
included: importing pydantic and building the adapters of `assoc query`'s 16 parameters was ~90 ms of a
cold query on two busy cores, more than the search. For the plain types assoc's options use (str, bool,
int, float, Path, an Enum; optional or not; one value each, or a list of str or Path) a value that is
plainly valid is converted here, through Typer's own path and choice helpers. Anything else goes to
Typer's own conversion, made then: a value these rules are not sure of ("1_000", "", a number out of
range), another type, a parser, a clamp. So what is accepted, what it becomes, and every error message
stay Typer's. A Typer without these hooks (another version) is left as it is.
"""

from __future__ import annotations

import re
import typing
from enum import Enum
from pathlib import Path
from typing import Any

_UNSURE = object()  # the fast conversion does not decide: Typer's own does
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def convert_without_pydantic(command: Any) -> None:
    """Give each of command's plain parameters the fast conversion (see the module docstring)."""
    for param in getattr(command, "params", ()):
        convert_param(param)


def convert_param(param: Any) -> None:
    """Give one parameter the fast conversion, where its type is plain and it has no conversion yet."""
    try:
        from typer._coercion import build_runtime_param
        from typer._param_types import coerce_cli_choice, coerce_cli_path
    except ImportError:  # pragma: no cover - another Typer: its own conversion throughout
        return
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None or getattr(param, "_runtime_param", False) is not None:
        return
    convert = _converter(descriptor, param, (coerce_cli_choice, coerce_cli_path))
    if convert is not None:
        param._runtime_param = _Conversion(convert, descriptor, build_runtime_param)


class ConvertedHelp:
    """For a click command class (before it among the bases): the --help option, which click makes
    when a command is first parsed, converts without pydantic too."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            convert_param(option)
        return option


class _Conversion:
    """What Typer's parameter asks of its runtime conversion (coerce), fast where it is sure."""

    def __init__(self, convert: Any, descriptor: Any, build: Any) -> None:
        self._convert = convert
        self._descriptor = descriptor
        self._build = build
        self._typer: Any = None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        if value is None:  # as Typer's: a missing single value stays None, a missing list is ()
            return () if param.multiple or param.nargs == -1 else None
        converted = self._convert(value, param, ctx)
        if converted is not _UNSURE:
            return converted
        if self._typer is None:
            self._typer = self._build(self._descriptor)
        return self._typer.coerce(value, param=param, ctx=ctx)


def _converter(descriptor: Any, param: Any, helpers: tuple[Any, Any]) -> Any:
    """The fast conversion for one parameter, or None where Typer's own is the only one."""
    info = descriptor.parameter_info
    if descriptor.is_file or info.parser is not None or info.clamp:
        return None
    if param.multiple or param.nargs == -1:  # a list of values (Typer gives a list)
        element = typing.get_args(descriptor.annotation) if descriptor.is_list and not descriptor.is_tuple else ()
        one = _plain(element[0], info, helpers) if len(element) == 1 and element[0] in (str, Path) else None
        if one is None:
            return None

        def each(value: Any, param: Any, ctx: Any) -> Any:
            if not isinstance(value, list | tuple):
                return _UNSURE
            out = [one(item, param, ctx) for item in value]
            return _UNSURE if any(item is _UNSURE for item in out) else out

        return each
    if param.nargs != 1:
        return None
    return _plain(descriptor.annotation, info, helpers)


def _plain(annotation: Any, info: Any, helpers: tuple[Any, Any]) -> Any:
    """The fast conversion of one value of a plain type, or None."""
    coerce_choice, coerce_path = helpers
    if annotation in (str, bool):
        return lambda value, param, ctx: value if type(value) is annotation else _UNSURE
    if annotation is int:
        return _number(int, _INT, info.min, info.max)
    if annotation is float:
        return _number(float, _FLOAT, info.min, info.max)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        choices = list(annotation)

        def choice(value: Any, param: Any, ctx: Any) -> Any:
            if not isinstance(value, str | annotation):
                return _UNSURE
            try:
                return coerce_choice(value, choices=choices, case_sensitive=info.case_sensitive, ctx=ctx)
            except ValueError:
                return _UNSURE  # Typer's own conversion words the error

        return choice
    if isinstance(annotation, type) and issubclass(annotation, Path):
        path_type = info.path_type or annotation

        def path(value: Any, param: Any, ctx: Any) -> Any:
            if type(value) is str and value:
                value = path_type(value)  # what pydantic makes of a str for a Path
            if not isinstance(value, path_type):
                return _UNSURE
            return coerce_path(value, info, path_type=path_type, param=param, ctx=ctx)  # Typer's checks, errors

        return path
    return None


def _number(kind: type, pattern: re.Pattern[str], low: float | None, high: float | None) -> Any:
    def number(value: Any, param: Any, ctx: Any) -> Any:
        if type(value) is kind:
            number = value
        elif type(value) is str and pattern.fullmatch(value):
            number = kind(value)
        else:
            return _UNSURE
        if (low is not None and number < low) or (high is not None and number > high):
            return _UNSURE  # out of range: Typer's own conversion says so
        return number

    return number
