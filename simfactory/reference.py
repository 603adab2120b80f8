"""Reference documentation generated from the code: one Markdown page per input-file kind (from the pydantic
models' JSON Schemas: every field, its type, default, bounds and description) and the CLI's --help texts."""

from __future__ import annotations

from typing import Any

from simfactory.schemas import schema


def _type(p: dict[str, Any]) -> str:
    if "$ref" in p:
        name = p["$ref"].split("/")[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in p:
        return " or ".join(_type(x) for x in p["anyOf"])
    if "oneOf" in p:
        return " or ".join(_type(x) for x in p["oneOf"])
    if "const" in p:
        return f"`{p['const']}`"
    if "enum" in p:
        return ", ".join(f"`{v}`" for v in p["enum"])
    t = p.get("type", "any")
    if t == "array":
        return f"list of {_type(p.get('items', {}))}"
    if t == "object" and "additionalProperties" in p and isinstance(p["additionalProperties"], dict):
        return f"map to {_type(p['additionalProperties'])}"
    return str(t)


def _bounds(p: dict[str, Any]) -> str:
    marks = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<", "minLength": "length >=",
             "maxLength": "length <=", "minItems": "items >=", "maxItems": "items <=", "pattern": "matches"}
    out = [f"{sym} {p[k]}" for k, sym in marks.items() if k in p]
    for alt in p.get("anyOf", []):
        out += [f"{sym} {alt[k]}" for k, sym in marks.items() if k in alt]
    return ", ".join(out)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _model_table(name: str, m: dict[str, Any]) -> list[str]:
    lines = [f"### {name}", ""]
    if m.get("description"):
        lines += [_cell(m["description"]), ""]
    props = m.get("properties", {})
    if not props:
        return lines + [f"Type: {_type(m)}", ""]
    required = set(m.get("required", []))
    lines += ["| field | type | required | default | bounds | description |", "|---|---|---|---|---|---|"]
    for field, p in props.items():
        default = f"`{p['default']}`" if "default" in p else ""
        lines.append(
            f"| `{field}` | {_cell(_type(p))} | {'yes' if field in required else ''} | {_cell(default)} | "
            f"{_cell(_bounds(p))} | {_cell(p.get('description', ''))} |"
        )
    return lines + [""]


def schema_reference(kind: str, title: str) -> str:
    s = schema(kind)
    lines = [f"# {title} reference", "",
             f"Generated from the pydantic models (`simfactory schema {kind}` prints the same as JSON Schema). "
             "Unknown fields are rejected.", ""]
    root = {k: v for k, v in s.items() if k != "$defs"}
    if root.get("properties"):
        lines += _model_table(s.get("title", title), root)
    elif "oneOf" in root or "anyOf" in root or "discriminator" in root:
        lines += [f"One of: {_type(root)} (chosen by `{root.get('discriminator', {}).get('propertyName', 'kind')}`).", ""]
    for name, m in sorted(s.get("$defs", {}).items()):
        lines += _model_table(name, m)
    return "\n".join(lines) + "\n"


def cli_reference() -> str:
    """Every command's --help, as the CLI prints it."""
    from typer.main import get_command
    from typer.testing import CliRunner

    from simfactory.cli.main import app

    runner = CliRunner()
    lines = ["# CLI reference", "", "Generated from the CLI itself (`simfactory COMMAND --help`).", ""]

    def walk(cmd: Any, path: list[str]) -> None:
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "110", "NO_COLOR": "1", "TERM": "dumb"})
        lines.extend([f"## `{' '.join(['simfactory', *path])}`", "", "```text", res.output.rstrip(), "```", ""])
        if hasattr(cmd, "list_commands"):  # a group (typer may vendor its own click)
            ctx = cmd.context_class(cmd)
            for name in sorted(cmd.list_commands(ctx)):
                sub = cmd.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    walk(sub, [*path, name])

    walk(get_command(app), [])
    return "\n".join(lines) + "\n"
