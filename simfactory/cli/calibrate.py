"""`simfactory calibrate ...`: measure (run), fit, import, and check against a live endpoint (serve, validate).
Thin commands over simfactory.calibration; `run` and `fit` live in calibrate_run.py (main.py adds them to the
group this module makes)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from simfactory.cli.common import err, input_errors, known_deployment, out, print_table
from simfactory.config.limits import MAX_SEED, MAX_SEND_RATE_PER_S, MAX_TOKENS, MIN_SEND_RATE_PER_S
from simfactory.errors import InputError

SkuOpt = Annotated[str, typer.Option(help="SKU id of the GPUs behind the endpoint (hardware_profiles/).")]
ModelOpt = Annotated[str, typer.Option(help="Model id (hardware_profiles/models.yaml).")]
# the deployment that served the measured load (serve and validate describe it the same way)
EngineOpt = Annotated[str, typer.Option(help="Engine that served the requests (profile lookup).")]
DtypeOpt = Annotated[str, typer.Option(help="Weights dtype of the served model.")]
TpOpt = Annotated[int, typer.Option(help="Tensor-parallel GPUs per replica.")]
ReplicasOpt = Annotated[int, typer.Option(help="Replicas that served the load.")]
MaxSeqsOpt = Annotated[Optional[int], typer.Option(help="The server's max_num_seqs, if not the engine default.")]
FrontEndOpt = Annotated[Optional[float], typer.Option(help="Seconds the server's front end adds to each request "
                                                           "before its engine (HTTP, tokenizer, Triton's ensemble): "
                                                           "simulated as a deployment's front_end_s, not fitted; left "
                                                           "out: the engine preset's (vLLM V1 8 ms, SGLang 12 ms, "
                                                           "else 0).")]


def _check_known(sku: str, model: str, engine: str) -> None:
    """--sku, --model and --engine name what the simulator knows (here or in ./hardware_profiles, as resolve_block
    looks), refused in one line before a server is contacted or a table is read."""
    known_deployment(sku, model, engine, Path.cwd() / "calibrate.yaml")


def _deployment(sku: str, model: str, engine: str, dtype: str, tp: int, replicas: int,
                max_num_seqs: Optional[int], profiles_dir: Optional[Path] = None, front_end_s: Optional[float] = None) -> Any:
    from simfactory.calibration.validate import Deployment

    _check_known(sku, model, engine)
    return Deployment(sku=sku, model=model, engine=engine, dtype=dtype, tp=tp, replicas=replicas,
                      max_num_seqs=max_num_seqs, profiles_dir=profiles_dir, front_end_s=front_end_s)


def _progress(k: int, n: int, label: str, rows: Any) -> None:
    failed = int((~rows["ok"].astype(bool)).sum()) if len(rows) else 0
    out.print(f"  block {k}/{n} ({label}): {len(rows)} requests, {failed} failed", highlight=False)


def _load_tokenizer(name: str) -> Any:
    """A Hugging Face tokenizer for exact prompt lengths (local folders and cached names; no download is forced)."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise InputError("--tokenizer", "tokenizer", "needs transformers: pip install transformers") from None
    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as exc:  # noqa: BLE001 (transformers raises OSError, ValueError, HF hub errors, ...)
        raise InputError("--tokenizer", "tokenizer", f"cannot load {name!r}: {' '.join(str(exc).split())[:200]}") from None


def _rates(text: str) -> list[float]:
    """--rates: distinct positive request rates, comma-separated (blocks are told apart by rate)."""
    try:
        values = [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise InputError("--rates", "rates", f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise InputError("--rates", "rates", "rates must be positive")
    for r in values:
        _check_send_rate("--rates", r)
    if len(set(values)) != len(values):
        raise InputError("--rates", "rates", f"each rate once: {text!r} repeats one (blocks are told apart by rate)")
    return values


def _check_send_rate(flag: str, rate: float) -> None:
    """A send rate the client can keep: finite, between MIN_SEND_RATE_PER_S and MAX_SEND_RATE_PER_S."""
    if not (MIN_SEND_RATE_PER_S <= rate <= MAX_SEND_RATE_PER_S):
        raise InputError(flag, flag[2:].replace("-", "_"), f"rates must be positive, between {MIN_SEND_RATE_PER_S:g} "
                                                           f"and {MAX_SEND_RATE_PER_S:g} req/s, got {rate:g}")


def _trace_schedule(trace: Path, trace_format: str) -> list[Any]:
    """The send times and lengths of a timestamped trace, to replay against the endpoint."""
    from simfactory.calibration.client import PlannedRequest
    from simfactory.traces.parse import parse_trace

    t = parse_trace(trace, trace_format)  # type: ignore[arg-type]
    if t.arrival_s is None:
        raise InputError(str(trace), "", f"the {trace_format} format has no send times to replay")
    return [PlannedRequest(float(a), int(i), int(o)) for a, i, o in zip(t.arrival_s, t.input_tokens, t.output_tokens)]


def _lengths(text: str) -> list[int]:
    """--input-tokens: one or more distinct positive token counts, comma-separated."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 or v > 10_000_000 for v in values) or len(set(values)) != len(values):
        raise InputError("--input-tokens", "input_tokens", f"expected distinct positive token counts, "
                                                           f"comma-separated, got {text!r}")
    return values


def _endpoint(url: str, model: str, endpoint: str, api_key: Optional[str], headers: list[str], timeout: float,
              ignore_eos: bool) -> Any:
    """The endpoint the flags describe; a URL that is not http(s)://host[:port][/v1], an unknown --endpoint or a
    header without 'Name: value' is an input error naming the flag."""
    import httpx

    from simfactory.calibration.client import Endpoint

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise InputError("--url", "url", f"not a URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InputError("--url", "url", f"expected http(s)://host[:port] (optionally ending in /v1), got {url!r}")
    if parsed.path.rstrip("/") not in ("", "/v1"):
        raise InputError("--url", "url", f"give the server's base URL (http://host:port or http://host:port/v1), "
                                         f"not a path ({parsed.path!r}); --endpoint picks completions or chat")
    if endpoint not in ("completions", "chat"):
        raise InputError("--endpoint", "endpoint", f"completions or chat, not {endpoint!r}")
    pairs = []
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
            raise InputError("--header", "header", f"expected 'Name: value', got {h!r}")
        pairs.append((name.strip(), value.strip()))
    return Endpoint(url=url, model=model, chat=endpoint == "chat", api_key=api_key, timeout_s=timeout,
                    ignore_eos=ignore_eos, headers=tuple(pairs))


def _ramp(strategy: Optional[str], start_rps: Optional[float], end_rps: Optional[float]) -> Any:
    """The ramp the three --ramp-up flags describe (None without a strategy); each missing or impossible part is an
    input error naming its flag."""
    from simfactory.calibration.client import Ramp

    if strategy is None:
        if start_rps is not None or end_rps is not None:
            raise InputError("--ramp-up-strategy", "ramp_up_strategy", "--ramp-up-start-rps and --ramp-up-end-rps "
                                                                       "need a strategy (linear or exponential)")
        return None
    if strategy not in ("linear", "exponential"):
        raise InputError("--ramp-up-strategy", "ramp_up_strategy", f"linear or exponential, not {strategy!r}")
    if start_rps is None or end_rps is None:
        flag = "--ramp-up-start-rps" if start_rps is None else "--ramp-up-end-rps"
        raise InputError(flag, flag[2:].replace("-", "_"), f"a {strategy} ramp needs both its start and end rate")
    if end_rps <= 0 or (strategy == "exponential" and start_rps <= 0):
        flag = "--ramp-up-end-rps" if end_rps <= 0 else "--ramp-up-start-rps"
        raise InputError(flag, flag[2:].replace("-", "_"), "must be > 0" + (" for an exponential ramp"
                                                                           if flag.endswith("start-rps") else ""))
    _check_send_rate("--ramp-up-start-rps", start_rps)  # a ramp from 0 would send its first request never
    _check_send_rate("--ramp-up-end-rps", end_rps)
    return Ramp(strategy, start_rps, end_rps)


def _metadata(items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError("--metadata", "metadata", f"expected KEY=VALUE, got {item!r}")
        pairs[key.strip()] = value
    return {"metadata": pairs} if pairs else {}


RUN_OPTIONS = ("rates", "requests", "input_tokens", "output_tokens", "concurrency", "burstiness", "range_ratio",
               "ramp_up_strategy", "ramp_up_start_rps", "ramp_up_end_rps", "repeats", "warmup", "max_duration",
               "seed", "engine", "dtype", "tp", "replicas", "max_num_seqs", "sku", "model")


def _run_options(values: dict[str, Any]) -> dict[str, Any]:
    """What the run was asked to do, for summary.json: the load flags, the deployment, the tool's version and when
    it started (UTC)."""
    from datetime import datetime, timezone

    from simfactory import __version__

    return {"run": {"simfactory_version": __version__,
                    "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "options": {k: values[k] for k in RUN_OPTIONS}}}


def _write_measurement(folder: Path, measured: Any, session: Any, ep: Any, goodput: dict[str, float],
                       run_meta: dict[str, Any]) -> None:
    """requests.csv, the raw per-request records (requests.jsonl: status, error, chunk times), summary.json (the
    serving summary, the endpoint without its key, the notes, the run's options and metadata) and, with repeats,
    repeats.csv (each block's figures: mean and 95% CI over the repeats)."""
    import json

    from simfactory.calibration.repeats import repeat_stats
    from simfactory.calibration.serving_summary import serving_summary
    from simfactory.outputs import json_finite

    measured.to_csv(folder / "requests.csv", index=False)
    with open(folder / "requests.jsonl", "w", encoding="utf-8") as f:
        for rec in session.raw:
            f.write(json.dumps(rec) + "\n")
    meta = {"endpoint": ep.request_url, "served_model": ep.model, "ignore_eos_sent": session.ignore_eos,
            "headers": sorted(name for name, _ in ep.headers), "notes": session.notes, **run_meta,
            "summary": serving_summary(measured, session.raw, goodput)}
    if "repeat" in measured and measured["repeat"].nunique() > 1:
        stats = repeat_stats(measured)
        stats.to_csv(folder / "repeats.csv", index=False)
        meta["repeats"] = stats.to_dict(orient="records")
    (folder / "summary.json").write_text(json.dumps(json_finite(meta), indent=2, allow_nan=False) + "\n")


def _report_failures(measured: Any, url: str) -> None:
    """The failed requests by cause, with hints; every request failed: exit 2 (there is nothing to compare)."""
    from simfactory.calibration.client import failure_causes

    failed = measured[~measured["ok"]]
    if len(failed) == len(measured):
        err.print(f"[red]error:[/red] {url}: every request failed:", highlight=False, soft_wrap=True)
        for cause in failure_causes(measured):
            err.print(f"  {cause}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    if len(failed):
        out.print(f"[yellow]{len(failed)} of {len(measured)} requests failed[/yellow]:", highlight=False)
        for cause in failure_causes(measured):
            out.print(f"  {cause}", highlight=False, soft_wrap=True)


def _print_summary(measured: Any, session: Any, out: Any, goodput: dict[str, float] | None = None) -> None:
    from rich.table import Table

    from simfactory.calibration.serving_summary import serving_summary, summary_rows

    t = Table(title="Serving benchmark result", show_header=False)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for label, value in summary_rows(serving_summary(measured, session.raw, goodput)):
        t.add_row(label, value)
    print_table(t)


def _print_repeats(measured: Any, out: Any) -> None:
    """Each block's figures over the repeats, mean +- 95% CI (ms for latencies), and the blocks too noisy to trust."""
    from rich.table import Table

    from simfactory.calibration.repeats import STABLE_HALF_WIDTH, repeat_stats, unstable_blocks

    stats = repeat_stats(measured)
    t = Table(title=f"over {int(stats['repeats'].max())} repeats: mean +- 95% CI")
    for col in ("block", "figure", "mean", "+-95% CI", "stable"):
        t.add_column(col, justify="right")
    for r in stats.itertuples(index=False):
        scale, unit = (1.0, "") if r.figure == "output_tokens_per_s" else (1e3, " ms")
        t.add_row(str(r.block), r.figure, f"{r.mean * scale:.4g}{unit}", f"{r.ci95 * scale:.2g}{unit}",
                  "n/a" if r.stable is None else ("yes" if r.stable else "NO"))
    print_table(t)
    for block, figures in unstable_blocks(stats).items():
        out.print(f"[yellow]unstable:[/yellow] block {block}: {', '.join(figures)} vary by more than "
                  f"+-{STABLE_HALF_WIDTH:.0%} between repeats; raise --requests or --repeats, or quiet the server, "
                  "before trusting a fit to it", highlight=False, soft_wrap=True)


def _print_comparison(table: Any, out: Any) -> None:
    from rich.table import Table

    from simfactory.calibration.validate import mape

    t = Table(title="predicted vs measured (error = predicted / measured - 1)")
    for col in ("rate (req/s)", "metric", "measured", "predicted", "error", "requests"):
        t.add_column(col, justify="right")
    for r in table.itertuples(index=False):
        t.add_row(str(r.rate_rps), r.metric, f"{r.measured:.4g}", f"{r.predicted:.4g}",
                  "n/a" if r.error != r.error else f"{r.error:+.1%}", str(r.requests))
    print_table(t)
    error = mape(table)
    if error == error:
        out.print(f"mean absolute error over {len(table)} comparisons: {error:.1%}", highlight=False)
    else:
        out.print("no comparison has a simulated value: the simulated requests did not complete (are they longer "
                  "than the deployment's KV cache holds?)", highlight=False)


def _validate_and_write(measured: Any, dep: Any, out_dir: Path, seed: int, out: Any, err: Any,
                        command: str, existing: bool) -> None:
    """Simulate the measured load, write validation.csv (into the folder `calibrate serve` just wrote when
    `existing`, else as a new output folder) and print the comparison."""
    from simfactory.calibration.validate import blocks_of, compare_blocks
    from simfactory.outputs import output_folder

    try:
        blocks = blocks_of(measured, dep, seed)
        table = compare_blocks(blocks)
    except ValueError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False)
        raise typer.Exit(1) from None
    if blocks:
        out.print(f"step time simulated: {blocks[0].scenario.deployments[0].step_time_source}", highlight=False,
                  soft_wrap=True)
    with output_folder(out_dir, command, existing=existing) as folder:
        if existing:
            folder.add(lambda tmp: table.to_csv(tmp / "validation.csv", index=False))
        else:
            folder.replace(lambda tmp: table.to_csv(tmp / "validation.csv", index=False))
    _print_comparison(table, out)
    out.print(f"wrote {out_dir / 'validation.csv'}", highlight=False)


# calibrate serve's options (aliases keep serve_cmd short)
RatesOpt = Annotated[Optional[str], typer.Option(help="Comma-separated Poisson rates (req/s), run one after another "
                                                 "[default: 1,2,4].")]
InputTokensOpt = Annotated[str, typer.Option(help="Prompt tokens per request; several (comma-separated) measure every "
                                             "rate at each length, blocks a fit can hold out.")]
IgnoreEosOpt = Annotated[bool, typer.Option(help="Send ignore_eos so answers run to max_tokens (vLLM, SGLang); a server "
                                            "that refuses it is asked again without it and the run says so.")]
ApiKeyOpt = Annotated[Optional[str], typer.Option(envvar="SIMFACTORY_API_KEY",
                                                  help="Bearer token (or set SIMFACTORY_API_KEY).")]
BurstinessOpt = Annotated[float, typer.Option(min=0.01, max=100.0, help="Gamma shape of the gaps between sends "
    "(vllm bench serve's): 1 Poisson, < 1 burstier.")]
MaxDurationOpt = Annotated[Optional[float], typer.Option(min=0.001, help="Seconds each block sends for at most "
    "(later planned requests are not sent, and the run says so).")]
TokenizerOpt = Annotated[Optional[str], typer.Option(help="A Hugging Face tokenizer (folder or name) for prompts of "
    "exactly --input-tokens tokens (needs transformers).")]
RangeRatioOpt = Annotated[float, typer.Option(min=0.0, max=0.99, help="Spread of prompt and answer lengths: each "
    "drawn uniformly in [L(1-r), L(1+r)] (vllm bench serve's "
    "--random-range-ratio); 0: every request exactly L.")]
RampUpStrategyOpt = Annotated[Optional[str], typer.Option(help="linear or exponential: instead of --rates, each "
    "block's rate climbs from --ramp-up-start-rps to "
    "--ramp-up-end-rps (vllm bench serve's ramp-up).")]
RampUpStartRpsOpt = Annotated[Optional[float], typer.Option(min=0.0, help="Rate of a ramp's first request (req/s).")]
RampUpEndRpsOpt = Annotated[Optional[float], typer.Option(min=0.0, help="Rate of a ramp's last request (req/s).")]
RepeatsOpt = Annotated[int, typer.Option(min=1, max=100, help="Run the whole design this many times (fresh draws, "
    "interleaved) and report each block's mean and 95% CI, flagging blocks wider "
    "than +-10%.")]
GoodputOpt = Annotated[Optional[list[str]], typer.Option(help="SLO limits for goodput, vllm bench serve's form: "
    "'ttft:300 tpot:50' (ms; names ttft, tpot, e2el).")]
MetadataOpt = Annotated[Optional[list[str]], typer.Option(help="KEY=VALUE saved in summary.json with the run "
    "(repeatable), as vllm bench serve --metadata.")]


def serve_cmd(
    url: Annotated[str, typer.Option(help="Base URL of an OpenAI-compatible server, e.g. http://localhost:8000.")],
    served_model: Annotated[str, typer.Option(help="The model name the server expects in requests.")],
    sku: SkuOpt,
    model: ModelOpt,
    rates: RatesOpt = None,
    requests: Annotated[int, typer.Option(min=1, max=1_000_000, help="Requests per rate.")] = 100,
    input_tokens: InputTokensOpt = "512",
    output_tokens: Annotated[int, typer.Option(min=1, help="Output tokens per request (ignore_eos).")] = 128,
    concurrency: Annotated[Optional[int], typer.Option(min=1, help="Cap on requests in flight (default: none).")] = None,
    chat: Annotated[bool, typer.Option(help="Use /v1/chat/completions instead of /v1/completions (= --endpoint chat).")] = False,
    endpoint: Annotated[str, typer.Option(help="completions (/v1/completions) or chat (/v1/chat/completions).")] = "completions",
    ignore_eos: IgnoreEosOpt = True,
    api_key: ApiKeyOpt = None,
    header: Annotated[Optional[list[str]], typer.Option(help="Extra request header 'Name: value' (repeatable).")] = None,
    timeout: Annotated[float, typer.Option(min=0.1, max=86400, help="Seconds one request may take.")] = 600.0,
    warmup: Annotated[int, typer.Option(min=0, max=1000, help="Requests sent first, one at a time, and not recorded.")] = 2,
    burstiness: BurstinessOpt = 1.0,
    max_duration: MaxDurationOpt = None,
    tokenizer: TokenizerOpt = None,
    range_ratio: RangeRatioOpt = 0.0,
    ramp_up_strategy: RampUpStrategyOpt = None,
    ramp_up_start_rps: RampUpStartRpsOpt = None,
    ramp_up_end_rps: RampUpEndRpsOpt = None,
    repeats: RepeatsOpt = 1,
    goodput: GoodputOpt = None,
    metadata: MetadataOpt = None,
    trace: Annotated[Optional[Path], typer.Option(help="Replay this trace's send times and lengths instead.")] = None,
    trace_format: Annotated[str, typer.Option(help="Format of --trace (see `simfactory trace stats`).")] = "mooncake",
    engine: EngineOpt = "vllm",
    dtype: DtypeOpt = "bf16",
    tp: TpOpt = 1,
    replicas: ReplicasOpt = 1,
    max_num_seqs: MaxSeqsOpt = None,
    front_end_s: FrontEndOpt = None,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Seed of the Poisson schedules and the simulation.")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Where requests.csv and validation.csv go.")] = Path("runs/calibrate-serve"),
) -> None:
    """Drive a live endpoint at several rates, then simulate the same load and print predicted vs measured.

    Writes OUT/requests.csv (one row per request: TTFT, TPOT, E2E, ok/error) and OUT/validation.csv.

    Example: simfactory calibrate serve --url http://localhost:8000 --served-model meta-llama/Llama-3.1-8B-Instruct --sku h100-sxm --model llama-3.1-8b
    """
    from simfactory.calibration.client import Load, Session, measure_endpoint
    from simfactory.calibration.measurements import check_requests
    from simfactory.calibration.serving_summary import parse_goodput
    from simfactory.outputs import check_output_dir, output_folder

    with input_errors():
        check_output_dir(out_dir, "--out", "calibrate serve")  # before measuring: a refused folder should not cost the measurement
        ep = _endpoint(url, served_model, "chat" if chat else endpoint, api_key, header or [], timeout, ignore_eos)
        if tokenizer is not None:
            ep = dataclasses.replace(ep, tokenizer=_load_tokenizer(tokenizer))
        rate_list, lengths = _rates(rates or "1,2,4"), _lengths(input_tokens)
        schedule = _trace_schedule(trace, trace_format) if trace is not None else None
        dep = _deployment(sku, model, engine, dtype, tp, replicas, max_num_seqs, front_end_s=front_end_s)
        load = Load(burstiness, range_ratio, _ramp(ramp_up_strategy, ramp_up_start_rps, ramp_up_end_rps), repeats)
        limits = parse_goodput(goodput or [])
        run_meta = {**_metadata(metadata or []), **_run_options(locals())}
    n_requests = repeats * (len(schedule) if schedule else requests * len(lengths) * (1 if load.ramp else len(rate_list)))
    out.print(f"sending {warmup} warm-up and {n_requests} measured requests to {ep.request_url} ...", highlight=False)
    session = Session(ep.ignore_eos)
    if load.ramp is not None and rates is not None:
        session.note("--rates is not used with a ramp (each block's rate climbs from the ramp's start to its end)")
    measured = measure_endpoint(ep, rate_list, requests, lengths, output_tokens, seed, concurrency, schedule,
                                session=session, warmup=warmup, load=load, max_duration_s=max_duration,
                                on_block=_progress)
    with input_errors(), output_folder(out_dir, "calibrate serve") as folder:  # saved before it is checked
        folder.replace(lambda tmp: _write_measurement(tmp, measured, session, ep, limits, run_meta))
    for note in session.notes:
        out.print(f"note: {note}", highlight=False, soft_wrap=True)
    with input_errors():
        measured = check_requests(measured, str(out_dir / "requests.csv"))
    _report_failures(measured, ep.request_url)
    _print_summary(measured, session, out, limits)
    if repeats > 1:
        _print_repeats(measured, out)
    with input_errors():
        _validate_and_write(measured, dep, out_dir, seed, out, err, "calibrate serve", existing=True)


def import_cmd(
    file: Annotated[Path, typer.Argument(help="A results file from vllm bench serve, aiperf/genai-perf or guidellm.")],
    format: Annotated[str, typer.Option("--format", help="vllm-bench, aiperf, genai-perf or guidellm.")],
    out_file: Annotated[Path, typer.Option("--out", help="Request table to write (CSV or .parquet).")] = Path("requests.csv"),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out file.")] = False,
) -> None:
    """Turn serving-benchmark results you already have into simfactory's request table.

    Example: simfactory calibrate import results.json --format vllm-bench --out requests.csv
    """
    from simfactory.calibration.importers import import_results
    from simfactory.outputs import check_output_file, write_output_file

    with input_errors():
        if out_file.is_dir() or out_file.suffix.lower() not in (".csv", ".parquet"):
            raise InputError(str(out_file), "--out", "the request table is one .csv or .parquet file")
        check_output_file(out_file, "--out", force)  # a table carries no mark of who wrote it: --force replaces
        table = import_results(file, format)
        if out_file.suffix.lower() == ".parquet":
            write_output_file(out_file, lambda p: table.to_parquet(p, index=False), "--out", force)
        else:
            write_output_file(out_file, lambda p: table.to_csv(p, index=False), "--out", force)
    ok = int(table["ok"].sum())
    out.print(f"[green]imported[/green] {len(table)} requests ({ok} ok, {len(table) - ok} failed) from {file} -> "
              f"{out_file}", highlight=False)


def _levels(text: str | None) -> list[int] | None:
    """--concurrency as whole numbers >= 1 (comma-separated), or None when not given."""
    if text is None:
        return None
    try:
        levels = [int(x) for x in text.split(",")]
    except ValueError:
        levels = []
    if not levels or any(not 1 <= c <= MAX_TOKENS for c in levels):
        raise InputError("--concurrency", "", f"expected whole numbers from 1 to {MAX_TOKENS:,} separated by commas, "
                                              f"got {text!r}")
    return levels


def sweep_cmd(
    files: Annotated[list[Path], typer.Argument(help="One results file per concurrency level, in the --format "
                                                     "`calibrate import` reads.")],
    format: Annotated[str, typer.Option("--format", help="vllm-bench, aiperf, genai-perf or guidellm.")],
    concurrency: Annotated[Optional[str], typer.Option(help="Each file's concurrency, comma-separated in file "
                                                           "order (vllm-bench files carry their own).")] = None,
    out_file: Annotated[Path, typer.Option("--out", help="Sweep table to write (CSV).")] = Path("sweep.csv"),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out file.")] = False,
) -> None:
    """Summarise a benchmark's runs at several concurrency levels into the sweep table `calibrate fit` reads.

    Example: simfactory calibrate sweep c1.json c8.json c32.json --format vllm-bench --out sweep.csv
    """
    from simfactory.calibration.sweep_table import sweep_from_results
    from simfactory.outputs import check_output_file, write_output_file

    with input_errors():
        if out_file.is_dir() or out_file.suffix.lower() != ".csv":
            raise InputError(str(out_file), "--out", "the sweep table is one .csv file")
        check_output_file(out_file, "--out", force)  # a table carries no mark of who wrote it: --force replaces
        table, notes = sweep_from_results(files, format, _levels(concurrency))
        write_output_file(out_file, lambda p: table.to_csv(p, index=False), "--out", force)
    for note in notes:
        out.print(f"note: {note}", highlight=False, soft_wrap=True)
    out.print(f"[green]wrote[/green] {len(table)} levels to {out_file}; fit them with `simfactory calibrate fit "
              f"{out_file} --sku ... --model ... --engine ... --dtype ... --tp ...`", highlight=False)


def validate_cmd(
    requests_file: Annotated[Path, typer.Argument(help="Request table (from `calibrate serve` or `calibrate import`).")],
    sku: SkuOpt,
    model: ModelOpt,
    engine: EngineOpt = "vllm",
    dtype: DtypeOpt = "bf16",
    tp: TpOpt = 1,
    replicas: ReplicasOpt = 1,
    max_num_seqs: MaxSeqsOpt = None,
    front_end_s: FrontEndOpt = None,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Simulation seed.")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Where validation.csv goes.")] = Path("runs/calibrate-validate"),
    profiles_dir: Annotated[Optional[Path], typer.Option(help="Measured profiles to use (the folder `calibrate fit "
                                                              "--profiles-dir` wrote; default: ./hardware_profiles).")] = None,
) -> None:
    """Simulate the load a request table records and print predicted vs measured latency and throughput.

    Example: simfactory calibrate validate requests.csv --sku h100-sxm --model llama-3.1-8b
    """
    from simfactory.calibration.measurements import check_requests, read_table

    with input_errors():
        measured = check_requests(read_table(requests_file), str(requests_file))
        if not measured["ok"].any():
            raise InputError(str(requests_file), "ok", "no successful request to compare (every row has ok false)")
        dep = _deployment(sku, model, engine, dtype, tp, replicas, max_num_seqs, profiles_dir, front_end_s)
        _validate_and_write(measured, dep, out_dir, seed, out, err, "calibrate validate", existing=False)


def register(app: typer.Typer) -> typer.Typer:
    """Add the `calibrate` group (serve, import, validate) to the top-level app; returns the group so that main.py
    can add `run` and `fit` from calibrate_run.py to it."""
    calibrate_app = typer.Typer(
        help="Calibrate hardware profiles: time engine steps on a GPU and fit them (run, fit), import serving "
             "benchmarks (import, sweep), and compare the simulator with a live endpoint (serve, validate).\n\n"
             "Example: simfactory calibrate run --backend vllm --model llama-3.1-8b",
        no_args_is_help=True,
    )
    calibrate_app.command("serve")(serve_cmd)
    calibrate_app.command("import")(import_cmd)
    calibrate_app.command("sweep")(sweep_cmd)
    calibrate_app.command("validate")(validate_cmd)
    app.add_typer(calibrate_app, name="calibrate")
    return calibrate_app
