"""mkdocs hook: write the reference pages from the pydantic models (via their JSON Schemas) and the CLI's command
tree (each command's help and parameters, as Markdown tables) before each build, so the reference can never drift
from the code."""

from __future__ import annotations

from pathlib import Path

from simfactory.reference import cli_reference, schema_reference

PAGES = {"scenario": "Scenario", "workload": "Workload", "profile": "Hardware profile", "price-book": "Price book",
         "growth": "Growth plan", "quality": "Quality table"}


def on_pre_build(config, **kwargs) -> None:  # type: ignore[no-untyped-def]
    out = Path(config["docs_dir"]) / "reference"
    out.mkdir(exist_ok=True)
    for kind, title in PAGES.items():
        (out / f"{kind}.md").write_text(schema_reference(kind, title))
    (out / "cli.md").write_text(cli_reference())
