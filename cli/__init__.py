"""Command line: a thin Typer app over assoc.runtime (and, lazily, assoc.models / assoc.export)."""
