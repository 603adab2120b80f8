"""Reference documentation generated from the code: one Markdown page per input-file kind (from the pydantic
models' JSON Schemas: every field, its type, default, bounds and description) and one page for the CLI (from the
command objects Typer builds: every command's help, usage and parameters)."""

from __future__ import annotations

import inspect
import re
from enum import Enum
from pathlib import PurePath
from typing import Any, get_args

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


# --- the CLI page: built from the click command tree Typer makes, never from --help's terminal rendering ---------

_CODE_SPAN = re.compile(r"(`[^`]*`)")
_MD_SPECIAL = re.compile(r"([\\*_\[\]])")


def _md(text: str, *, cell: bool = False) -> str:
    """Help text as Markdown that shows as typed: `code spans` kept, Markdown punctuation escaped and `<`/`>`
    written as entities (so `runs/<scenario name>` is not swallowed as an HTML tag); in a table cell also line
    breaks, and `|` outside code spans (the tables extension leaves a pipe inside a code span alone)."""
    parts = _CODE_SPAN.split(" ".join(text.split()) if cell else text)
    for i in range(0, len(parts), 2):  # the even parts lie outside code spans
        part = _MD_SPECIAL.sub(r"\\\1", parts[i]).replace("<", "&lt;").replace(">", "&gt;")
        parts[i] = part.replace("|", "\\|") if cell else part
    return "".join(parts)


def _code(text: str) -> str:
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _help_markdown(help_text: str) -> list[str]:
    """A command's help as Markdown paragraphs; an `Example: simfactory ...` paragraph becomes a fenced bash
    block (with any further `simfactory` lines in it), and the lines after it that are not commands (a note such
    as `(a grid: ...)`) a paragraph below it."""
    lines: list[str] = []
    for para in inspect.cleandoc(help_text.split("\f")[0]).split("\n\n"):
        rows = [r.strip() for r in para.strip().splitlines() if r.strip() and r.strip() != "\b"]
        label, _, first = rows[0].partition(":") if rows else ("", "", "")
        if label in ("Example", "Examples") and first.strip():
            commands = [first.strip()] + [r for r in rows[1:] if r.startswith("simfactory ")]
            notes = [r for r in rows[1:] if not r.startswith("simfactory ")]
            lines += [f"{label}:", "", "```bash", *commands, "```", ""]
            lines += [_md(" ".join(notes)), ""] if notes else []
        elif rows:
            lines += [_md(" ".join(rows)), ""]
    return lines


def _number_range(p: Any) -> str:
    low = getattr(p, "min", getattr(getattr(p, "type", None), "min", None))
    high = getattr(p, "max", getattr(getattr(p, "type", None), "max", None))
    if low is not None and high is not None:
        return f"{low} to {high}"
    return f">= {low}" if low is not None else f"<= {high}" if high is not None else ""


def _choice(value: Any) -> str:
    return str(value.value if isinstance(value, Enum) else value)


def _param_type(p: Any) -> str:
    """The value a parameter takes: its choices, or its type (with bounds); nothing for an on/off flag."""
    if getattr(p, "is_flag", False) or getattr(p, "count", False):
        return ""
    desc = getattr(p, "type_descriptor", None)  # typer >= 0.29 describes types itself; older typer uses click's
    choices = desc.choices if desc is not None else getattr(getattr(p, "type", None), "choices", None)
    if choices:
        return ", ".join(_code(_choice(c)) for c in choices)
    if desc is not None:
        element = get_args(desc.annotation)[0] if desc.is_list and get_args(desc.annotation) else desc.annotation
        name = "path" if isinstance(element, type) and issubclass(element, PurePath) else \
            getattr(element, "__name__", str(element))
    else:
        name = p.type.name.lower().replace(" range", "")
        name = {"text": "str", "integer": "int", "boolean": "bool"}.get(name, name)
    bounds = _number_range(p)
    if p.nargs == -1:  # a variadic argument
        name += " (one or more)" if p.required else " (zero or more)"
    elif p.multiple:
        name += " (repeatable)"
    return _md(f"{name}, {bounds}" if bounds else name, cell=True)


def _param_default(p: Any, ctx: Any) -> str:
    if p.required:
        return "**required**"
    show = getattr(p, "show_default", True)
    if isinstance(show, str):
        return _md(show, cell=True)
    value = p.get_default(ctx, call=False)
    if show is False or value is None or value == () or value == []:
        return ""
    if callable(value):
        return "(dynamic)"
    if getattr(p, "is_flag", False):
        if p.secondary_opts:  # --plots / --no-plots: name the side that is on
            return _code((p.opts if value else p.secondary_opts)[0])
        return "on" if value else ""  # a plain flag is off unless given
    values = value if isinstance(value, (list, tuple)) else [value]
    return ", ".join(_code(_choice(v)) for v in values)


def _argument_name(p: Any) -> str:
    """SCENARIO, SOURCES... (variadic), or the metavar the command gives it."""
    return p.metavar or (p.name.upper() + ("..." if p.nargs == -1 else ""))


def _param_name(p: Any) -> str:
    if p.param_type_name == "argument":
        return _code(_argument_name(p))
    return " / ".join(_code(o) for o in [*p.opts, *p.secondary_opts])


def _param_help(p: Any) -> str:
    text = _md(p.help or "", cell=True)
    envvar = p.envvar if isinstance(p.envvar, (list, tuple)) else [p.envvar] if p.envvar else []
    if envvar:
        text += f" Environment: {', '.join(_code(e) for e in envvar)}."
    return text.strip()


def _visible_params(cmd: Any, ctx: Any) -> list[Any]:
    """The parameters a reader can pass, arguments first as --help lists them: not hidden, and not the --help
    every command has."""
    help_option = cmd.get_help_option(ctx)
    params = [p for p in cmd.get_params(ctx) if p is not help_option and not getattr(p, "hidden", False)]
    return sorted(params, key=lambda p: p.param_type_name != "argument")


def _usage(cmd: Any, ctx: Any, path: list[str]) -> str:
    pieces = ["simfactory", *path, "[OPTIONS]"]
    for p in _visible_params(cmd, ctx):
        if p.param_type_name == "argument":
            pieces.append(_argument_name(p) if p.required else f"[{_argument_name(p)}]")
    if hasattr(cmd, "list_commands"):
        pieces.append("COMMAND [ARGS]...")
    return " ".join(pieces)


def _subcommands(cmd: Any, ctx: Any) -> list[tuple[str, Any]]:
    """A group's visible commands, in the order `--help` lists them (registration order, not sorted)."""
    if not hasattr(cmd, "list_commands"):  # a group (typer may vendor its own click, so no isinstance)
        return []
    subs = [(name, cmd.get_command(ctx, name)) for name in cmd.list_commands(ctx)]
    return [(name, sub) for name, sub in subs if sub is not None and not sub.hidden]


def _cli_commands() -> list[tuple[list[str], Any, Any]]:
    """Every command and subcommand of `simfactory` as (path, command, context), depth first, in the order
    `simfactory --help` and each group's --help list them; the root is path []."""
    from typer.main import get_command

    from simfactory.cli.main import app

    root = get_command(app)
    found: list[tuple[list[str], Any, Any]] = []

    def walk(cmd: Any, path: list[str], ctx: Any) -> None:
        found.append((path, cmd, ctx))
        for name, sub in _subcommands(cmd, ctx):
            walk(sub, [*path, name], sub.context_class(sub, info_name=name, parent=ctx))

    walk(root, [], root.context_class(root, info_name="simfactory"))
    return found


def _anchor(path: list[str]) -> str:
    return "-".join(["simfactory", *path])  # what the toc extension makes of the heading `simfactory a b`


def _command_section(path: list[str], cmd: Any, ctx: Any) -> list[str]:
    lines = [f"## {' '.join(['simfactory', *path])}", ""]
    deprecated = getattr(cmd, "deprecated", False)  # click 8.2 allows a message in place of True
    if deprecated:
        lines += [f"**Deprecated.** {_md(deprecated) if isinstance(deprecated, str) else ''}".rstrip(), ""]
    lines += _help_markdown(cmd.help or cmd.short_help or "")
    lines += [f"Usage: {_code(_usage(cmd, ctx, path))}", ""]
    params = _visible_params(cmd, ctx)
    if params:
        lines += ["| name | type | default | help |", "|---|---|---|---|"]
        lines += [f"| {_param_name(p)} | {_param_type(p)} | {_param_default(p, ctx)} | {_param_help(p)} |"
                  for p in params]
        lines.append("")
    subs = _subcommands(cmd, ctx)
    if subs:
        lines += ["| command | what it does |", "|---|---|"]
        for name, sub in subs:
            summary = inspect.cleandoc(sub.short_help or sub.help or "").split("\n\n")[0]
            lines.append(f"| [{' '.join([*path, name])}](#{_anchor([*path, name])}) | {_md(summary, cell=True)} |")
        lines.append("")
    return lines


def cli_reference() -> str:
    """The CLI reference page: for every command and subcommand, in --help's order, its help (examples as bash
    blocks), usage and a table of its parameters, read from the command objects Typer builds, so the page
    depends on no terminal (width, colours, box drawing) and cannot drift from the code."""
    lines = ["# CLI reference", "",
             "Generated from the CLI's own definitions: every command and subcommand in the order "
             "`simfactory --help` lists them. `simfactory COMMAND --help` prints the same in a terminal; every "
             "command also takes `--help`. Arguments are written in capitals, options with their dashes; an "
             "on/off flag has no type.", ""]
    for path, cmd, ctx in _cli_commands():
        lines += _command_section(path, cmd, ctx)
    return "\n".join(lines).rstrip("\n") + "\n"
