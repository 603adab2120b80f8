"""`simfactory schema KIND`: the JSON Schema of an input file kind, for editors and validators."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from simfactory.cli.common import EXIT_INPUT_ERROR, err


def schema_cmd(
    kind: Annotated[str, typer.Argument(help="scenario | workload | profile | models | engines | price-book | measured-profile | growth")],
) -> None:
    """Print the JSON Schema of an input file kind (generated from the pydantic models).

    Example: simfactory schema scenario > scenario.schema.json
    """
    import json

    from simfactory.schemas import KINDS, schema

    if kind not in KINDS:
        err.print(f"[red]error:[/red] KIND: unknown kind {escape(kind)!r} (kinds: {', '.join(KINDS)})")
        raise typer.Exit(EXIT_INPUT_ERROR)
    print(json.dumps(schema(kind), indent=1))


def register(app: typer.Typer) -> None:
    """Add `schema` to the top-level app."""
    app.command("schema")(schema_cmd)
