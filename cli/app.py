"""The `assoc` command: a Typer app whose commands live in small modules beside this one.

Every error a user can act on is one line on stderr and exit code 2, handled here only (_one_line_errors):
assoc.runtime.errors.AssocError (assoc.cli.errors adds which flag helps), a bad flag or argument (the
usage error click would draw as a box: here one line pointing to the command's --help), and stdout that
cannot be written (assoc.cli.common.guard_stdout; a reader that went away, `| head`, ends quietly).
Training, export and evaluation import torch lazily, inside their commands, so searching never loads it.

A cold start costs only what the command runs: the root knows every command's name (COMMANDS) and imports
a command's module when that command is looked up (_Commands), so `assoc query --json` loads neither rich
nor Pillow nor the other commands, while `assoc --help` still lists them all; option values are converted
without pydantic where that is plainly what Typer would do (assoc.cli.fast_params); and a command that
only reads ends without Python's own shutdown (assoc.cli.quick_exit). bench/cold_query.py times it.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import warnings
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

try:  # Typer 0.2x carries its own copy of click (and no longer needs click itself)
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older Typer runs on click
    from click.exceptions import UsageError

from ..runtime.errors import AssocError
from ..runtime.imaging import quiet_pillow_warnings
from . import quick_exit
from .common import guard_stdout
from .errors import EXIT_ERROR, EXIT_INTERRUPTED, one_line, usage_line
from .fast_params import ConvertedHelp, convert_without_pydantic
from .names import shown

# Every command, in the order `assoc --help` lists them, and the module beside this one that registers
# it (module.register(app)); only the module of the command being run is imported.
COMMANDS = {
    "index": "index_cmd",
    "query": "query_cmd",
    "localize": "localize_cmd",
    "duplicates": "duplicates_cmd",
    "info": "info_cmd",
    "standby": "standby_cmd",
    "check": "check_cmd",
    "serve": "serve_cmd",
    "train": "model_cmds",
    "export": "model_cmds",
    "eval": "model_cmds",
    "pointing": "model_cmds",
    "vocab": "vocab_cmd",
    "ranking": "ranking_cmd",
}
# A short command that only reads (quick_exit.QUICK_EXIT), set up before its module and numpy load
# (before_loading): numpy's BLAS (OpenBLAS) runs its few small products (a query's vectors, one photo's
# maps) on one thread and starts no pool, whose threads spin after numpy loads (~30 ms of CPU taken
# from a cold `assoc query` on two busy cores), unless the environment says otherwise; and in the
# installed command, which ends without collecting anything (quick_exit), the cyclic garbage collector
# runs only after GC_THRESHOLD new objects, not 700: a cold query's ~80 collections took ~17 ms there.
GC_THRESHOLD = 100_000


@contextmanager
def _one_line_errors() -> Iterator[None]:
    try:
        yield
    except UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `assoc`: click has printed the help
            raise
        sys.stderr.write(f"assoc: error: {usage_line(exc)}\n")
        raise typer.Exit(EXIT_ERROR) from None
    except AssocError as exc:
        sys.stderr.write(f"assoc: error: {one_line(exc)}\n")
        raise typer.Exit(EXIT_ERROR) from None
    except KeyboardInterrupt:
        sys.stderr.write("assoc: interrupted\n")
        raise typer.Exit(EXIT_INTERRUPTED) from None


class _Commands(MutableMapping[str, Any]):
    """The root's commands by name, every name known from COMMANDS; a command's module is imported (and
    its commands built) the first time one of them is looked up, so `assoc query` imports query_cmd and
    none of the others, while listing the names (suggestions for a typo) imports nothing."""

    def __init__(self, loaded: MutableMapping[str, Any]) -> None:
        self._loaded = dict(loaded)

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded and name in COMMANDS:
            before_loading(name)
            _load(COMMANDS[name], self._loaded)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*COMMANDS, *self._loaded]))

    def __len__(self) -> int:
        return len(set(COMMANDS) | set(self._loaded))


def before_loading(name: str) -> None:
    """What is set for a short command before its module loads (see GC_THRESHOLD)."""
    if name not in quick_exit.QUICK_EXIT:
        return
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if quick_exit.is_the_command():
        gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


def _load(module_name: str, into: MutableMapping[str, Any]) -> None:
    """Import one command module and build the click commands it registers."""
    from typer.main import get_command_from_info

    module = importlib.import_module(f"{__package__}.{module_name}")
    registry = typer.Typer()
    module.register(registry)
    for info in registry.registered_commands:
        if info.cls in (None, TyperCommand):
            info.cls = _Command
        command = get_command_from_info(
            info, pretty_exceptions_short=app.pretty_exceptions_short, rich_markup_mode=app.rich_markup_mode
        )
        convert_without_pydantic(command)
        into[command.name] = command


class _Command(ConvertedHelp, TyperCommand):
    """A command of the root (see assoc.cli.fast_params)."""


class _Group(ConvertedHelp, TyperGroup):
    """The root command; parsing (the root's own flags, --help) and running a command both report here.
    Its commands are loaded on demand (_Commands)."""

    def __init__(self, *args: Any, commands: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, commands=_Commands(dict(commands or {})), **kwargs)
        convert_without_pydantic(self)

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return list(self.commands)  # the names only: each is loaded when its help is asked for

    def resolve_command(self, ctx: typer.Context, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        quick_exit.note_command(name)
        return name, command, rest

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        with _one_line_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: typer.Context) -> Any:
        with _one_line_errors():
            return super().invoke(ctx)


app = typer.Typer(
    cls=_Group,
    name="assoc",
    help="Search your photos with words, and see where in each photo the words land.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"assoc {version('assoc')}")
        except PackageNotFoundError:  # running from a source tree that was never installed
            typer.echo("assoc (not installed)")
        raise typer.Exit()


@app.callback()
def main_options(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Search your photos with words, and see where in each photo the words land."""


def main() -> None:
    warnings.showwarning = _warning_line
    quiet_pillow_warnings()
    guard_stdout()
    try:
        app(prog_name="assoc")
    except SystemExit as done:
        if quick_exit.will_leave_now():
            quick_exit.leave_now(done.code)
        raise


def _warning_line(message: Warning | str, *_: object, **__: object) -> None:
    """A warning that reaches the user (from a library, say) is one line, without the source file and
    line it was issued from."""
    sys.stderr.write(f"assoc: warning: {shown(' '.join(str(message).split()))}\n")
