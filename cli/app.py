"""The `assoc` command: a Typer app whose commands live in small modules beside this one.

Errors a user can act on (assoc.runtime.errors.AssocError) print one line on stderr (assoc.cli.errors adds
which flag helps) and exit 2.
Training, export and evaluation import torch lazily, inside their commands, so searching never loads it.
"""

from __future__ import annotations

import sys
import warnings

import click
import typer
from typer.core import TyperGroup

from ..runtime.errors import AssocError
from .errors import EXIT_ERROR, EXIT_INTERRUPTED, one_line
from .names import shown


class _Group(TyperGroup):
    def invoke(self, ctx: click.Context):  # noqa: ANN201 - click's signature
        try:
            return super().invoke(ctx)
        except AssocError as exc:
            sys.stderr.write(f"assoc: error: {one_line(exc)}\n")
            raise typer.Exit(EXIT_ERROR) from None
        except KeyboardInterrupt:
            sys.stderr.write("assoc: interrupted\n")
            raise typer.Exit(EXIT_INTERRUPTED) from None


app = typer.Typer(
    cls=_Group,
    name="assoc",
    help="Search your photos with words, and see where in each photo the words land.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from . import check_cmd, index_cmd, info_cmd, localize_cmd, model_cmds, query_cmd, serve_cmd, vocab_cmd

    for module in (index_cmd, query_cmd, localize_cmd, info_cmd, check_cmd, serve_cmd, model_cmds, vocab_cmd):
        module.register(app)


_register()


def main() -> None:
    warnings.showwarning = _warning_line
    app()


def _warning_line(message: Warning | str, *_: object, **__: object) -> None:
    """A warning that reaches the user (from a library, say) is one line, without the source file and
    line it was issued from."""
    sys.stderr.write(f"assoc: warning: {shown(' '.join(str(message).split()))}\n")
