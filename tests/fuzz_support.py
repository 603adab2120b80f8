"""Support for tests/test_fuzz_extremes.py: numeric extremes, the numeric fields of every input document (found by
walking the document beside its JSON Schema, not listed by hand), an isolated CLI runner with a time and memory
limit, and the checks every run must pass (exit 0 or 2, never a traceback, no NaN / negative / int64-min output).

The runner: starting `python -m simfactory` costs 2-4 s (imports), far more than a short run. So by default one
helper process imports simfactory once and forks a child per command (a fork server, like multiprocessing's):
each child gets its own process group, `setrlimit(RLIMIT_AS)` (and RLIMIT_FSIZE), a working directory,
stdout/stderr files and a wall-clock limit, exactly what `subprocess.run(..., preexec_fn=setrlimit, timeout=...)`
would give, at a tenth of the cost. SIMFACTORY_FUZZ_RUNNER=subprocess runs `python -m simfactory` per command
instead (slower; the same checks). Every process gets HOME, TMPDIR and the matplotlib / XDG cache folders inside
a temporary folder.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import re
import resource
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
FILE_LIMIT_BYTES = 512 * 2**20  # RLIMIT_FSIZE: an output file past this kills the command (SIGXFSZ), not the disk
INT64_MIN = -(2**63)

# ---------------------------------------------------------------------------------------------- the extremes

# (label, value): what a YAML or JSON field can hold that a careless range check lets through
EXTREMES: list[tuple[str, Any]] = [
    ("0", 0),
    ("-0.0", -0.0),
    ("-1", -1),
    ("1", 1),
    ("0.5", 0.5),
    ("1e-300", 1e-300),
    ("5e-324", 5e-324),  # the smallest subnormal
    ("1e-9", 1e-9),  # a tiny resolution / sojourn that still looks plausible
    ("1e-6", 1e-6),
    ("1e9", 1e9),
    ("1e18", 1e18),
    ("1e300", 1e300),
    ("max-float", sys.float_info.max),
    ("2**31", 2**31),
    ("2**53+1", 2**53 + 1),
    ("2**63-1", 2**63 - 1),
    ("2**63", 2**63),
    ("2**64", 2**64),
    ("-2**63", -(2**63)),
    ("nan", math.nan),
    ("inf", math.inf),
    ("-inf", -math.inf),
]

# the same for a text column of a CSV trace (or a JSON number written as text)
TEXT_EXTREMES: list[str] = [
    "0", "-0", "-0.0", "-1", "1e-300", "5e-324", "1e300", "1.7976931348623157e308", "1e999", "-1e999",
    "2147483648", "9007199254740993", "9223372036854775807", "9223372036854775808", "18446744073709551616",
    "-9223372036854775808", "nan", "NaN", "inf", "-inf", "Infinity", "1e18", "1e9", "0.5", "1_000", "0x10", " 7 ",
]

# ----------------------------------------------------------------------------- numeric fields via the schema


def _deref(s: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while isinstance(s, dict) and "$ref" in s:
        target = defs[s["$ref"].rsplit("/", 1)[-1]]
        s = {**target, **{k: v for k, v in s.items() if k != "$ref"}}
    return s


def _variants(s: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    s = _deref(s, defs)
    alts = s.get("anyOf") or s.get("oneOf") or s.get("allOf")
    if not alts:
        return [s]
    out: list[dict[str, Any]] = []
    for a in alts:
        out += _variants(a, defs)
    return out


def _is_numeric(s: dict[str, Any], defs: dict[str, Any]) -> bool:
    return any(v.get("type") in ("number", "integer") for v in _variants(s, defs))


def _accepts(variant: dict[str, Any], value: Any) -> bool:
    t = variant.get("type")
    if isinstance(value, dict):
        if t not in (None, "object"):
            return False
        props = variant.get("properties", {})
        if variant.get("additionalProperties") is False and not set(value) <= set(props):
            return False
        for k, p in props.items():  # discriminators: a const (or a one-value enum) must match
            const = p.get("const", p["enum"][0] if len(p.get("enum", [])) == 1 else None)
            if const is not None and k in value and value[k] != const:
                return False
        return True
    if isinstance(value, list):
        return t in (None, "array")
    return True


def numeric_fields(doc: Any, root_schema: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """Every path of `doc` that holds, or may hold, a number: present numbers, and the numeric properties an
    object of the document leaves at their defaults. Each with the schema name of its field ("Pool.count")."""
    defs = root_schema.get("$defs", {})
    found: list[tuple[tuple[Any, ...], str]] = []

    def visit(value: Any, s: dict[str, Any], path: tuple[Any, ...]) -> None:
        fitting = [v for v in _variants(s, defs) if _accepts(v, value)]
        if not fitting:
            return
        v = max(fitting, key=lambda x: len(x.get("properties", {})))
        if isinstance(value, dict):
            props = v.get("properties", {})
            owner = v.get("title", "?")
            for name, ps in props.items():
                if _is_numeric(ps, defs) and not (name in value and isinstance(value[name], bool)):
                    found.append((path + (name,), f"{owner}.{name}"))
                if name in value and isinstance(value[name], (dict, list)):
                    visit(value[name], ps, path + (name,))
            extra = v.get("additionalProperties")
            if isinstance(extra, dict):
                for k, item in value.items():
                    if k in props:
                        continue
                    if isinstance(item, (int, float)) and not isinstance(item, bool) and _is_numeric(extra, defs):
                        found.append((path + (k,), f"{owner}.<{k}>"))
                    elif isinstance(item, (dict, list)):
                        visit(item, extra, path + (k,))
        elif isinstance(value, list):
            items = v.get("items")
            if not isinstance(items, dict):
                return
            for i, item in enumerate(value):
                if isinstance(item, (int, float)) and not isinstance(item, bool) and _is_numeric(items, defs):
                    found.append((path + (i,), f"{v.get('title', '?')}[]"))
                elif isinstance(item, (dict, list)):
                    visit(item, items, path + (i,))

    visit(doc, root_schema, ())
    seen: set[tuple[Any, ...]] = set()
    unique = []
    for p, name in found:
        if p not in seen:
            seen.add(p)
            unique.append((p, name))
    return unique


def schema_numeric_fields(root_schema: dict[str, Any]) -> set[str]:
    """"Def.prop" for every numeric property the schema defines (to report what the documents leave uncovered)."""
    defs = root_schema.get("$defs", {})
    names = set()
    for title, d in [(root_schema.get("title", "?"), root_schema)] + [(d.get("title", k), d) for k, d in defs.items()]:
        for name, ps in d.get("properties", {}).items():
            if _is_numeric(ps, defs):
                names.add(f"{title}.{name}")
    return names


def set_path(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A deep copy of doc with path set to value (a missing last key is added)."""
    doc = copy.deepcopy(doc)
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return doc


def get_path(doc: Any, path: tuple[Any, ...], default: Any = None) -> Any:
    node = doc
    for k in path:
        try:
            node = node[k]
        except (KeyError, IndexError, TypeError):
            return default
    return node


def dotted(path: tuple[Any, ...]) -> str:
    return ".".join(str(k) for k in path)


# ------------------------------------------------------------------------------------------------ the runner


@dataclass
class CliResult:
    argv: list[str]
    cwd: str
    rc: int | None  # None: killed for the time limit; negative: killed by that signal
    stdout: str
    stderr: str
    wall_s: float
    timed_out: bool = False
    max_rss_mb: float | None = None

    def describe(self) -> str:
        tail = (self.stderr or self.stdout)[-3000:]
        return (f"simfactory {' '.join(self.argv)}  (cwd {self.cwd})\n  rc={self.rc} timed_out={self.timed_out} "
                f"wall={self.wall_s:.1f}s rss={self.max_rss_mb}MB\n  --- output tail ---\n{tail}")


def child_env(home: Path) -> dict[str, str]:
    """The environment of every simfactory process: no real HOME, one BLAS thread, the repository importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIMFACTORY_", "PYTEST", "HYPOTHESIS"))}
    for d in ("home", "tmp", "mpl", "cache", "config"):
        (home / d).mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home / "home"), TMPDIR=str(home / "tmp"), MPLCONFIGDIR=str(home / "mpl"),
        XDG_CACHE_HOME=str(home / "cache"), XDG_CONFIG_HOME=str(home / "config"), MPLBACKEND="Agg",
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]),
        OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONIOENCODING="utf-8",
        COLUMNS="200", NO_COLOR="1", TERM="dumb", PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


class SandboxedCli:
    """Runs `simfactory ARGV` in a child process with a wall-clock limit and an address-space limit."""

    def __init__(self, scratch: Path, mode: str | None = None, mem_mb: int | None = None) -> None:
        self.scratch = scratch
        self.mode = mode or os.environ.get("SIMFACTORY_FUZZ_RUNNER", "fork")
        self.mem_bytes = (mem_mb or int(os.environ.get("SIMFACTORY_FUZZ_MEM_MB", "3072"))) * 2**20
        self.env = child_env(scratch / "env")
        self._server: subprocess.Popen[str] | None = None
        self._log: Any = None
        self._n = 0

    # -- the fork server (parent side)
    def _start(self) -> subprocess.Popen[str]:
        if self._server is None or self._server.poll() is not None:
            if self._log is None:
                self._log = open(self.scratch / "server.log", "a")
            self._server = subprocess.Popen(
                [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self._log, text=True, env=self.env, cwd=str(self.scratch),
                start_new_session=True,
            )
            line = self._readline(self._server, 120.0)
            if line.strip() != "ready":
                raise RuntimeError(f"fuzz fork server did not start: {line!r}; see {self.scratch / 'server.log'}")
        return self._server

    @staticmethod
    def _readline(proc: subprocess.Popen[str], timeout_s: float) -> str:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
        return proc.stdout.readline() if ready else ""

    def close(self) -> None:
        if self._server is not None and self._server.poll() is None:
            assert self._server.stdin is not None
            self._server.stdin.close()
            try:
                self._server.wait(10)
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.wait()
        self._server = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def run(self, argv: list[str], cwd: Path, timeout_s: float) -> CliResult:
        self._n += 1
        out, errf = cwd / f".fuzz-stdout-{self._n}", cwd / f".fuzz-stderr-{self._n}"
        if self.mode == "subprocess":
            res = self._run_subprocess(argv, cwd, timeout_s, out, errf)
        else:
            res = self._run_forked(argv, cwd, timeout_s, out, errf)
        for f in (out, errf):
            f.unlink(missing_ok=True)
        return res

    def _run_forked(self, argv: list[str], cwd: Path, timeout_s: float, out: Path, errf: Path) -> CliResult:
        server = self._start()
        req = {"argv": argv, "cwd": str(cwd), "stdout": str(out), "stderr": str(errf), "timeout_s": timeout_s,
               "mem_bytes": self.mem_bytes}
        assert server.stdin is not None
        server.stdin.write(json.dumps(req) + "\n")
        server.stdin.flush()
        line = self._readline(server, timeout_s + 60.0)
        if not line:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
            self._server = None
            raise RuntimeError(f"fuzz fork server stopped answering; see {self.scratch / 'server.log'}")
        resp = json.loads(line)
        return CliResult(argv, str(cwd), resp["rc"], _read(out), _read(errf), resp["wall_s"], resp["timed_out"],
                         resp["max_rss_mb"])

    def _run_subprocess(self, argv: list[str], cwd: Path, timeout_s: float, out: Path, errf: Path) -> CliResult:
        mem = self.mem_bytes

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
            resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT_BYTES, FILE_LIMIT_BYTES))

        started = time.monotonic()
        with open(out, "w") as fo, open(errf, "w") as fe:
            proc = subprocess.Popen([sys.executable, "-m", "simfactory", *argv], cwd=str(cwd), env=self.env,
                                    stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, preexec_fn=limit,
                                    start_new_session=True)
            timed_out = False
            try:
                rc: int | None = proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                timed_out, rc = True, None
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the whole group: a sweep's worker processes too
            except ProcessLookupError:
                pass
            proc.wait()
        return CliResult(argv, str(cwd), rc, _read(out), _read(errf), time.monotonic() - started, timed_out)


# -- the fork server (child side): `python tests/fuzz_support.py --serve`

PRELOAD = ["simfactory.api", "simfactory.sim.run", "simfactory.metrics.summary", "simfactory.report.writer",
           "simfactory.plan.sweep", "simfactory.plan.search", "simfactory.traces.parse", "simfactory.traces.stats",
           "pandas", "matplotlib.pyplot", "openpyxl", "pyarrow.parquet"]


def _serve() -> None:
    import importlib
    import traceback

    from simfactory.cli import app

    for mod in PRELOAD:
        try:
            importlib.import_module(mod)
        except Exception:  # noqa: BLE001 - a missing optional module only makes the children slower
            pass
    reply = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)  # nothing the server prints may reach the reply channel
    reply.write("ready\n")
    reply.flush()
    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: the equivalent of preexec_fn + `python -m simfactory ARGV`
            code = 1
            try:
                os.setpgid(0, 0)
                resource.setrlimit(resource.RLIMIT_AS, (req["mem_bytes"], req["mem_bytes"]))
                resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT_BYTES, FILE_LIMIT_BYTES))
                os.dup2(devnull, 0)
                os.dup2(os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
                os.dup2(os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
                os.chdir(req["cwd"])
                sys.argv = ["simfactory", *req["argv"]]
                try:
                    app(args=req["argv"], prog_name="simfactory")
                    code = 0
                except SystemExit as e:
                    if e.code is None:
                        code = 0
                    elif isinstance(e.code, int):
                        code = e.code
                    else:
                        print(e.code, file=sys.stderr)
                        code = 1
                except BaseException:  # noqa: BLE001 - what the interpreter would print
                    sys.excepthook(*sys.exc_info())
                    code = 1
            except BaseException:  # noqa: BLE001
                traceback.print_exc()
                code = 1
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code & 0xFF)
        deadline = started + req["timeout_s"]
        timed_out = False
        while True:
            wpid, status, usage = os.wait4(pid, os.WNOHANG)
            if wpid:
                break
            if time.monotonic() > deadline:
                timed_out = True
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                wpid, status, usage = os.wait4(pid, 0)
                break
            time.sleep(0.005)
        try:
            os.killpg(pid, signal.SIGKILL)  # leftovers of the child's group (a sweep's workers)
        except (ProcessLookupError, PermissionError):
            pass
        rc = None if timed_out else os.waitstatus_to_exitcode(status)
        reply.write(json.dumps({"rc": rc, "timed_out": timed_out, "wall_s": time.monotonic() - started,
                                "max_rss_mb": round(usage.ru_maxrss / 1024, 1)}) + "\n")
        reply.flush()


# ------------------------------------------------------------------------------------------------ the checks

NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
# numbers in outputs that may be negative: differences, deltas, log values, sentinels (-1 = none)
SIGNED_KEYS = re.compile(
    r"(delta|diff|change|saving|margin|headroom|slope|intercept|error|residual|npv|net_|gain|_vs_|relative|"
    r"optimism|bias|skew|log|^task_id$|^step$|^replica$|^request_id$|low_factor|high_factor|metric_at|offset|"
    r"value of latency)",
    re.IGNORECASE)
# rows of long tables (finance_cost_stack.csv) whose quantity is signed: the value of latency against its reference
# (negative when slower than the reference) and the total less it
SIGNED_ROW_LABELS = re.compile(r"value of latency", re.IGNORECASE)
# resilience windows: [replica (-1: none), start, end]; a forecast's evidence: the presets' lowest and highest bias
SIGNED_PATHS = re.compile(r"(windows\[\d+\]\[0\]$|optimism_range\[\d+\]$)")
# float rounding (a queue time of -7e-18 s) is not what this suite hunts; SIMFACTORY_FUZZ_NEG_TOL=0 reports it too
NEGATIVE_TOLERANCE = float(os.environ.get("SIMFACTORY_FUZZ_NEG_TOL", "1e-9"))
# per-request, per-task and timeline tables hold measured times and counts: Infinity is as wrong there as NaN;
# summaries may say Infinity (a cost per token when no token was served; regress compares such moves)
FINITE_TABLES = ("requests.csv", "tasks.csv", "timeline_replicas.csv", "timeline_system.csv")


def _walk(x: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _walk(v, f"{path}.{k}" if path else str(k))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, x


def _last_key(path: str) -> str:
    return re.split(r"[.\[]", path)[-1].rstrip("]")


def bad_number(path: str, v: Any) -> str | None:
    """Why this output number is wrong, or None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    if v <= INT64_MIN or (isinstance(v, int) and v >= 2**63):
        return f"int64 overflow ({v})"
    if v < -NEGATIVE_TOLERANCE and not SIGNED_KEYS.search(_last_key(path)) and not SIGNED_PATHS.search(path):
        return f"negative ({v})"
    return None


def check_json_file(path: Path, allow_infinity: bool = True) -> list[str]:
    problems: list[str] = []
    tokens: list[str] = []

    def constant(tok: str) -> float:
        tokens.append(tok)
        return float(tok)

    try:
        doc = json.loads(path.read_text(encoding="utf-8"), parse_constant=constant)
    except (ValueError, UnicodeDecodeError) as exc:
        return [f"{path.name}: not valid JSON ({exc})"]
    for p, v in _walk(doc):
        why = bad_number(p, v)
        if why is None and isinstance(v, float) and math.isinf(v) and not allow_infinity:
            why = "Infinity"
        if why:
            problems.append(f"{path.name}: {p} = {v!r}: {why}")
    if "NaN" in tokens and not any("NaN" in p for p in problems):
        problems.append(f"{path.name}: a NaN token")
    return problems


def check_csv_file(path: Path, max_rows: int = 200_000) -> list[str]:
    """No 'nan' text ('inf' neither in FINITE_TABLES), no int64 overflow, no negative number outside the signed
    columns. pandas writes a missing value (NaN) as an empty cell, which is allowed: not every request has a
    first token."""
    finite = path.name in FINITE_TABLES
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.DictReader(fh)
        for n, row in enumerate(reader):
            if n >= max_rows:
                break
            # a long table names its quantity in a row's label (item: "value of latency ..."), not in a column
            signed_row = any(v and SIGNED_ROW_LABELS.search(str(v)) for v in row.values())
            for col, cell in row.items():
                if col is None or cell is None:
                    continue
                c = cell.strip()
                low = c.lower()
                why = None
                if low in ("nan", "-nan") or (finite and low in ("inf", "-inf", "+inf", "infinity", "-infinity")):
                    why = low
                elif NUMBER.match(c):
                    why = bad_number(col, float(c) if any(ch in c for ch in ".eE") else int(c))
                    if why and why.startswith("negative") and signed_row:
                        why = None
                if why and (col, why.split(" ")[0]) not in seen:
                    seen.add((col, why.split(" ")[0]))
                    problems.append(f"{path.name}: column {col!r} row {n}: {c}: {why}")
    return problems


def check_outputs(folder: Path, allow_infinity: bool = True) -> list[str]:
    """Every JSON and CSV file a command wrote under folder."""
    problems: list[str] = []
    if not folder.exists():
        return problems
    for f in sorted(folder.rglob("*")):
        if f.suffix == ".json" and f.is_file():
            problems += check_json_file(f, allow_infinity)
        elif f.suffix == ".csv" and f.is_file():
            problems += check_csv_file(f)
    return problems


def check_result(res: CliResult, out: Path | None = None, *, typer_usage_ok: bool = False,
                 exit_1_means: str | None = None) -> list[str]:
    """The contract of every command on any input: exit 0 (and sane outputs) or exit 2 with one `error:` line
    first, nothing written; never a traceback, a crash, a hang or running out of memory. `exit_1_means`: a
    command with a documented exit 1 (plan: no candidate met the SLOs) may exit 1 when its output says this;
    its outputs are checked as for exit 0."""
    text = res.stdout + res.stderr
    problems: list[str] = []
    if res.timed_out:
        return [f"hang: no exit within {res.wall_s:.0f} s"]
    if "Traceback (most recent call last)" in text or "Traceback" in text:
        kind = re.findall(r"^(\w+(?:\.\w+)*(?:Error|Exception|Exit|Interrupt|Warning)?):", res.stderr, re.MULTILINE)
        problems.append(f"traceback: {kind[-1] if kind else '?'}")
    if "MemoryError" in text or "bad_alloc" in text or "Cannot allocate memory" in text:
        problems.append("out of memory")
    if res.rc is not None and res.rc < 0:
        problems.append(f"killed by signal {-res.rc} ({signal.Signals(-res.rc).name})")
    elif res.rc == 1 and exit_1_means is not None:
        if exit_1_means not in text:
            problems.append(f"exit code 1 without {exit_1_means!r} in the output")
    elif res.rc not in (0, 2):
        problems.append(f"exit code {res.rc}")
    if res.rc == 2:
        first = next((ln for ln in res.stderr.splitlines() if ln.strip()), "")
        usage = typer_usage_ok and ("Usage:" in res.stderr or "Invalid value" in res.stderr)
        if not first.startswith("error: ") and not usage:
            problems.append(f"exit 2 without a leading `error: ` line (first stderr line: {first[:200]!r})")
        if out is not None and out.exists() and any(out.iterdir()):
            problems.append(f"exit 2 but {out.name}/ was written")
    if (res.rc == 0 or (res.rc == 1 and exit_1_means is not None)) and out is not None:
        problems += check_outputs(out)
    return problems


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    _serve()
