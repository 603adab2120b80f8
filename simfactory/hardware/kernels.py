"""Step time from kernel tables: operator timings NVIDIA measured on real GPUs, composed per model by its
aiconfigurator-core SDK (0.12.0, Apache-2.0) and resampled offline into hardware_profiles/kernels/<sku>.json.gz
by calibrate/kernels/derive.py. simfactory never imports the SDK: it reads the tables.

Why this shape. The SDK prices one engine step as a sum of kernel times in three parts (its "mixed step"):
the non-attention ops (GEMMs, norms, all-reduces) at the step's token count, decode attention at (batch, mean KV
length), and context attention of the prompts being prefilled. The tables keep those parts on fixed grids:

    linear(T), allreduce(T)   every token of the step, T = prefill tokens + decode sequences
    logits(m)                 the LM head over the m rows that sample (decode sequences, +1 for prefill chunks)
    decode_attn(B, s)         B decode sequences each reading s KV tokens (s = kv_tokens_read / B)
    ctx_attn(L)               one whole prompt of L tokens, attention only

and a step is

    step_s = overhead_s + linear(T) + allreduce(T) + logits(m) + decode_attn(B, s) + prefill_attn

each term linear between grid points (past the end: along the last segment for token counts and prompt
lengths, in proportion to batch and KV length for decode attention; held below the first KV length). The kernel
sum has no engine overhead (scheduling, input preparation, sampling, launch gaps): the caller passes `overhead_s`,
per engine and version. An engine that launches prefill forwards without CUDA graphs (SGLang before 0.5.10, its
DP-attention and speculative deployments after) cannot run such a step faster than the host launches its kernels:
a step with prompt tokens takes max(step_s, prefill_floor_s), the floor priced per layer (EagerPrefill).

Prefill attention from simfactory's load: a chunk of c tokens after p cached ones has c (p + (c + 1) / 2) query-key
pairs, like the queries of one whole prompt of L = 2p + c tokens. So the step's prompts are priced as prompts of
the same mean key length, L = 2 pairs / tokens - 1. ctx_attn(L) is one whole prompt alone in a step, and most of
it at short L is the fixed cost of the step's context-attention kernels (ctx_attn(1): ~1 ms for Llama-3.1-8B's 32
layers, ~31 us a layer), which an engine pays once per step however many prompts the launch packs. So a step pays
ctx_attn(1) once plus, per prompt, what a whole prompt costs above it, (tokens / L) (ctx_attn(L) - ctx_attn(1)):
exact for a single whole prompt (what the table holds). Charging every prompt its whole ctx_attn(L), as before,
priced 32 prompts of 128 tokens at 33 ms where the SDK's own batched composition (mixed_step_breakdown of 32
prompts) gives 3.6 ms (H100, Llama-3.1-8B FP8, trtllm 1.3.0rc20); this rule gives 2.4 ms. The SDK's batched
values lie within -52%..+32% of this rule's attention term (short prompts under, 2k-token prompts over), a few
percent of those steps; a table over (prompts, length) from the SDK would remove that residual.

Fast-forward. For a fixed batch B the step is affine in the KV tokens read between two KV-length grid points
(and B-interpolated rows keep the same grid), so `decode_affine` returns the stretch up to the next breakpoint:
the engine's O(1) stretch equals stepping every iteration (tests/test_kernel_step_time.py). A request crosses at
most ~27 breakpoints in its life.

Hot path: a row per decode batch size (fixed part + attention by KV length, with slopes) is built once and
cached; a decode-only step is a dict lookup, a bisect and a few float operations.
"""

from __future__ import annotations

import copy
import hashlib
import math
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simfactory.config.profile import BYTES_PER_PARAM, ModelArch
from simfactory.errors import InputError
from simfactory.hardware.collectives import Links, allreduce_s
from simfactory.hardware.kernel_file import FORMAT, FORMATS, unpack_record
from simfactory.hardware.step_time import ALLREDUCES_PER_LAYER, StepLoad, StepTimeModel, busiest_ranks
from simfactory.inputs import MiB, is_input_file, parse_json, read_input_bytes, shown_name
from simfactory.paths import PROFILES_DIR

MS = 1e-3  # the tables are in milliseconds
MAX_TABLE_FILE_BYTES = 64 * MiB  # shipped files are ~0.2-1 MB
MAX_TABLE_JSON_BYTES = 512 * MiB  # a gzip bomb stops here
GRIDS = ("batch", "kv_len", "tokens", "prompt_len")

# the SDK frameworks whose kernels the tables hold ("tensorrt-llm": TensorRT-LLM's package name for trtllm). An
# engine preset names the one it runs (engines.yaml, kernels.framework); callers map presets to these.
FRAMEWORKS = {"vllm": "vllm", "sglang": "sglang", "trtllm": "trtllm", "tensorrt-llm": "trtllm"}
# dtypes priced as another: FP16 and BF16 run at the same tensor-core rate on every SKU with tables
DTYPE_ALIAS = {"fp16": "bf16"}


@dataclass(frozen=True)
class KernelTables:
    """One SKU's file: header (source, versions, attribution), grids, and records indexed by their key."""

    path: Path
    sha256: str
    header: dict[str, Any]
    grids: dict[str, list[float]]
    models: dict[str, dict[str, Any]]
    # keyed (model, framework, tp, dp_attention, ep, dtype or kv_dtype): dense records have dp_attention = ep = 1
    linear: Mapping[tuple[str, str, int, int, int, str], dict[str, Any]] = field(repr=False)
    attention: Mapping[tuple[str, str, int, int, int, str], dict[str, Any]] = field(repr=False)

    @property
    def frameworks(self) -> dict[str, str]:
        return dict(self.header.get("frameworks", {}))

    def combinations(self) -> list[tuple[str, str, int, str, str]]:
        """(model, framework, tp, dtype, kv_dtype) that kernel_step_time covers with this file, tensor-parallel
        layouts (dp_attention = ep = 1) only; layouts() has them all."""
        return sorted((m, fw, tp, dt, kv) for m, fw, tp, dp, ep, dt, kv in self.layouts() if dp == ep == 1)

    def layouts(self) -> list[tuple[str, str, int, int, int, str, str]]:
        """(model, framework, tp, dp_attention, ep, dtype, kv_dtype) that kernel_step_time covers."""
        out = []
        for (model, fw, tp, dp, ep, dtype) in self.linear:
            for (m2, fw2, tp2, dp2, ep2, kv) in self.attention:
                if (m2, fw2, tp2, dp2, ep2) == (model, fw, tp, dp, ep):
                    out.append((model, fw, tp, dp, ep, dtype, kv))
        return sorted(out)


_cache: dict[tuple[str, int, int], KernelTables] = {}
RecordKey = tuple[str, str, int, int, int, str]


class Records(Mapping[RecordKey, dict[str, Any]]):
    """A file's records by key, each unpacked and checked the first time it is read: a run reads a few of a file's
    hundreds (kernel_file.py)."""

    def __init__(self, name: str, section: str, raw: dict[RecordKey, tuple[int, dict[str, Any]]],
                 check: Callable[[str, str, dict[str, Any]], None]) -> None:
        self._name, self._section, self._raw, self._check = name, section, raw, check
        self._done: dict[RecordKey, dict[str, Any]] = {}

    def __getitem__(self, key: RecordKey) -> dict[str, Any]:
        rec = self._done.get(key)
        if rec is None:
            i, raw = self._raw[key]
            rec = unpack_record(raw)
            self._check(self._name, f"{self._section}[{i}]", rec)
            self._done[key] = rec
        return rec

    def __contains__(self, key: object) -> bool:
        return key in self._raw

    def __iter__(self) -> Iterator[RecordKey]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def table_path(sku: str, profile_dirs: Sequence[Path] | None = None) -> Path | None:
    """hardware_profiles/kernels/<sku>.json.gz in the first profile folder that has it."""
    for d in profile_dirs if profile_dirs is not None else [PROFILES_DIR]:
        p = Path(d) / "kernels" / f"{sku}.json.gz"
        if is_input_file(p):  # a folder or FIFO there is refused by _read, never skipped for a shipped file
            return p
    return None


def load_kernel_tables(sku: str, profile_dirs: Sequence[Path] | None = None) -> KernelTables | None:
    """The SKU's kernel tables (None when no file exists), parsed once per process and file version."""
    path = table_path(sku, profile_dirs)
    if path is None:
        return None
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _cache:
        _cache[key] = _read(path)
    return _cache[key]


def _read(path: Path) -> KernelTables:
    name = shown_name(path)
    raw = read_input_bytes(path, "", MAX_TABLE_FILE_BYTES, "kernel table")
    sha = hashlib.sha256(raw).hexdigest()
    try:
        d = zlib.decompressobj(wbits=31)  # gzip
        text = d.decompress(raw, MAX_TABLE_JSON_BYTES)
        if d.unconsumed_tail:
            raise InputError(name, "", f"decompresses to more than {MAX_TABLE_JSON_BYTES // MiB} MiB")
    except zlib.error as exc:
        raise InputError(name, "", f"not a gzip file ({exc})") from None
    try:
        doc = parse_json(text, name, allow_nan=False)
    except ValueError as exc:
        raise InputError(name, "", f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") not in FORMATS:
        raise InputError(name, "format", f"expected {FORMAT!r}")
    grids = doc.get("grids")
    if not isinstance(grids, dict):
        raise InputError(name, "grids", "missing")
    for g in GRIDS:
        xs = grids.get(g)
        if (not isinstance(xs, list) or len(xs) < 2
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0
                           for x in xs)
                or any(b <= a for a, b in zip(xs, xs[1:]))):
            raise InputError(name, f"grids.{g}", "must be at least two increasing positive numbers")
    n_t, n_b, n_s, n_l = (len(grids[g]) for g in ("tokens", "batch", "kv_len", "prompt_len"))

    def check_linear(name: str, at: str, rec: dict[str, Any]) -> None:
        for col in ("linear_ms", "allreduce_ms", "logits_ms"):
            _check_curve(name, f"{at}.{col}", rec.get(col), n_t)
        # optional second curves: BF16 MoE on Triton fused_moe (EngineKernels.triton_bf16_moe), an older release's
        # MoE kernels (EngineKernels.older_moe)
        for col in ("linear_ms_triton_moe", "linear_ms_older_moe"):
            if col in rec:
                _check_curve(name, f"{at}.{col}", rec[col], n_t)

    def check_attention(name: str, at: str, rec: dict[str, Any]) -> None:
        table = _array(name, f"{at}.decode_attn_ms", rec.get("decode_attn_ms"), (n_b, n_s),
                       f"{n_b} rows (batch sizes) of {n_s} numbers (KV lengths)")
        if (np.diff(table, axis=1) < 0).any() or (np.diff(table, axis=0) < 0).any():
            raise InputError(name, f"{at}.decode_attn_ms", "must be non-decreasing in batch size and KV length")
        _check_curve(name, f"{at}.ctx_attn_ms", rec.get("ctx_attn_ms"), n_l)

    sections = {}
    for section, dtype_key, check in (("linear", "dtype", check_linear), ("attention", "kv_dtype", check_attention)):
        raw: dict[RecordKey, tuple[int, dict[str, Any]]] = {}
        for i, rec in enumerate(doc.get(section, [])):
            _check_record(name, f"{section}[{i}]", rec, ("model", "framework", "tp", dtype_key))
            raw[(rec["model"], rec["framework"], rec["tp"], rec.get("dp_attention", 1), rec.get("ep", 1),
                 rec[dtype_key])] = (i, rec)
        sections[section] = Records(name, section, raw, check)
    models = doc.get("models", {})
    header = {k: v for k, v in doc.items() if k not in ("grids", "models", "linear", "attention")}
    return KernelTables(path, sha, header, {g: [float(x) for x in grids[g]] for g in GRIDS}, models,
                        sections["linear"], sections["attention"])


def _check_record(name: str, at: str, rec: Any, keys: tuple[str, ...]) -> None:
    if not isinstance(rec, dict) or not all(k in rec for k in keys):
        raise InputError(name, at, f"a record needs {', '.join(keys)}")
    for key in ("tp", "dp_attention", "ep"):
        v = rec.get(key, 1)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise InputError(name, f"{at}.{key}", "must be a positive integer")
    if rec["tp"] % rec.get("dp_attention", 1) or rec["tp"] % rec.get("ep", 1):
        raise InputError(name, at, "dp_attention and ep must divide tp")


def _array(name: str, at: str, ys: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    """Finite non-negative numbers of this shape (one numpy pass: a file holds ~2M of them)."""
    try:
        arr = np.asarray(ys, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.shape != shape or not np.isfinite(arr).all() or (arr < 0).any():
        raise InputError(name, at, f"must be {what}, finite and non-negative")
    return arr


def _check_curve(name: str, at: str, ys: Any, n: int) -> None:
    """n finite, non-negative, non-decreasing values (derive.py forces monotone; a hand-edited file must too)."""
    arr = _array(name, at, ys, (n,), f"{n} numbers (one per grid point)")
    if (np.diff(arr) < 0).any():
        raise InputError(name, at, "must be non-decreasing along its grid")


def kernel_step_time(
    arch: ModelArch, model_id: str, sku: str, framework: str, engine_version: str | None, dtype: str,
    kv_dtype: str, tp: int, overhead_s: float, *, profile_dirs: Sequence[Path] | None = None,
    strict_version: bool = False, overhead_per_seq_s: float = 0.0, prefill_overhead_s: float = 0.0,
    linear_scale: float = 1.0, prefill_attn_scale: float = 1.0, dp_attention: int = 1, ep: int = 1,
    prefill_floor_s: float = 0.0, links: Links | None = None, kernel_scale: float = 1.0,
    allreduce_latency_s: float = 0.0, mixed_decode_attn_scale: float = 1.0, triton_moe: bool = False,
    absorbed: tuple[float, float, float] = (1.0, 0.0, 0.0), mla_kv_up_share: float = 0.0,
    dp_graph_padding: bool = False, older_moe: str | None = None,
) -> KernelStepTime | AttentionRanks | None:
    """The kernel-table step-time model of one deployment, or None when the tables do not cover it (no file for
    the SKU, a framework they do not hold, a model, dtype or TP the file lacks, a model of another shape).

    framework: vllm, sglang or trtllm (FRAMEWORKS). engine_version: for the label; the tables hold one version per
    framework (header `frameworks`): with strict_version another version gives None, else they stand for it.
    prefill_floor_s: the least a step with prompt tokens takes (an eager prefill's launch time, EagerPrefill).
    links: where they carry a measured all-reduce bandwidth for this TP (a dense layout), the step's all-reduces
    are priced from it instead of the tables' (measured_allreduce_ms).
    kernel_scale: a factor on every kernel time (EngineKernels.release_factor); the overheads are not scaled.
    allreduce_latency_s: the engine's one-token all-reduce (EngineKernels.allreduce_latency; dense TP): its
    allreduce_shortfall_s is added to every step with tokens. For pp == 1; overhead_s is the engine's own cost.
    triton_moe: the engine runs BF16 MoE layers on Triton fused_moe (EngineKernels.triton_bf16_moe): a record's
    linear_ms_triton_moe, where it has one, replaces its linear_ms.
    dp_graph_padding: with dp_attention > 1, each rank's decode batch is padded to a multiple of its attention TP size
    (tp / dp_attention) for the per-token work (EngineKernels.dp_attention_graph_padding).
    older_moe: the release whose measured MoE kernels the engine ran (EngineKernels.older_moe, on its SKUs): a record's
    linear_ms_older_moe, where it has one, replaces its linear_ms (and a Triton curve).
    """
    engine = framework
    framework = FRAMEWORKS.get(framework)
    if framework is None or tp < 1:
        return None
    tables = load_kernel_tables(sku, profile_dirs)
    if tables is None:
        return None
    version = tables.frameworks.get(framework)
    if version is None or (strict_version and engine_version is not None and engine_version != version):
        return None
    shape = tables.models.get(model_id)
    want = {"layers": arch.layers, "hidden": arch.hidden, "heads": arch.heads, "kv_heads": arch.kv_heads,
            "head_dim": arch.head_dim}
    if not isinstance(shape, dict) or any(shape.get(k) != v for k, v in want.items()):
        return None
    dtype, kv_dtype = DTYPE_ALIAS.get(dtype, dtype), DTYPE_ALIAS.get(kv_dtype, kv_dtype)
    lin = tables.linear.get((model_id, framework, tp, dp_attention, ep, dtype))
    att = tables.attention.get((model_id, framework, tp, dp_attention, ep, kv_dtype))
    if lin is None or att is None:
        return None
    linear_ms, allreduce_note = linear_curve(lin, triton_moe, older_moe)
    dense = dp_attention == ep == 1
    allreduce_ms, bus, allreduce_extra_s, note = _allreduce_terms(lin["allreduce_ms"], tables.grids["tokens"], arch,
                                                                  tp, dense, links, allreduce_latency_s, kernel_scale)
    allreduce_note += note
    sdk = tables.header.get("sdk", {})
    layout = (f" DP-attention {dp_attention}" if dp_attention > 1 else "") + (f" EP{ep}" if ep > 1 else "")
    as_version = "" if engine_version in (None, version) else f", standing for {engine} {engine_version}"
    as_version += f", kernel times x{kernel_scale:.4g} for that release" if kernel_scale != 1.0 else ""
    label = (f"kernel tables of aiconfigurator-core {sdk.get('version', '?')} ({tables.header.get('system', sku)}, "
             f"{framework} {version}{as_version}; {dtype} weights, {kv_dtype} KV, TP{tp}{layout}; {tables.path.name}"
             f"{allreduce_note}) "
             f"+ {overhead_s * 1e3:.4g} ms/step" + (f" + {overhead_per_seq_s * 1e6:.4g} us/sequence"
                                                    if overhead_per_seq_s else "") + " engine overhead")
    label += _terms_note(prefill_floor_s, mixed_decode_attn_scale, linear_scale, prefill_attn_scale,
                         prefill_overhead_s)
    model = KernelStepTime(tables.grids, linear_ms, allreduce_ms, lin["logits_ms"],
                           att["decode_attn_ms"], att["ctx_attn_ms"], overhead_s, label, overhead_per_seq_s,
                           prefill_overhead_s=prefill_overhead_s, linear_scale=linear_scale,
                           prefill_attn_scale=prefill_attn_scale, prefill_floor_s=prefill_floor_s,
                           kernel_scale=kernel_scale, measured_allreduce=bus is not None,
                           allreduce_extra_s=allreduce_extra_s, mixed_decode_attn_scale=mixed_decode_attn_scale,
                           absorbed=absorbed, mla_kv_up_share=mla_kv_up_share)
    model.allreduce_latency_s = allreduce_latency_s if allreduce_extra_s else 0.0  # what a fit from this prior keeps
    model.source_file, model.source_sha256 = str(tables.path), tables.sha256
    if dp_attention == 1:
        return model
    pad = tp // dp_attention if dp_graph_padding else 1
    return AttentionRanks(model, dp_attention, arch.attention_params_b() / arch.active_params_b, pad)


def _allreduce_terms(allreduce_ms: list[float], tokens: list[float], arch: ModelArch, tp: int, dense: bool,
                     links: Links | None, latency_s: float, kernel_scale: float
                     ) -> tuple[list[float], float | None, float, str]:
    """(all-reduce curve, measured bus bandwidth or None, per-step shortfall against the engine's own all-reduce,
    what the label says of them) of a record: a dense layout's all-reduce from the profile's measured bandwidth where
    it has one for this TP, else the tables' plus every call's shortfall against the engine's one-token latency."""
    bus = links.measured_allreduce_bytes_per_s(tp) if links is not None and dense and tp <= links.domain_devices \
        else None
    note = ""
    if bus is not None:
        assert links is not None
        allreduce_ms = measured_allreduce_ms(tokens, arch, tp, links)
        note += f"; all-reduce at the profile's measured {bus / 1e9:.4g} GB/s bus bandwidth"
    extra_s = 0.0  # per step: every all-reduce's shortfall against the engine's latency
    if tp > 1 and dense and bus is None:
        extra_s = allreduce_shortfall_s(allreduce_ms, arch.layers, latency_s, kernel_scale)
    if extra_s:
        note += f"; the engine's all-reduce, {latency_s * 1e6:.3g} us a one-token call: +{extra_s * 1e3:.3g} ms a step"
    return allreduce_ms, bus, extra_s, note


NO_TRITON_CURVE = "no Triton fused_moe curve"  # in a label: the engine's BF16 experts are priced with another kernel
NO_OLDER_MOE_CURVE = "no older-release MoE curve"  # in a label: the engine's older MoE kernels are priced with newer ones


def linear_curve(lin: dict[str, Any], triton_moe: bool, older_moe: str | None = None) -> tuple[list[float], str]:
    """A linear record's curve for an engine (EngineKernels.triton_bf16_moe: its BF16 experts on Triton fused_moe;
    EngineKernels.older_moe: the MoE kernels of an older release it ran) and what the label says of it: the record's
    older-release curve where the engine names one and the record has it (where it has none, the label says the
    tables' release stands in); else its Triton curve where it has one; where its MoE rows are another kernel's and
    it has none, its own curve, said to be faster than the engine's."""
    older = ""
    if older_moe is not None:  # named only for MoE models on the SKUs the release's tables cover (resolve's older_moe)
        if "linear_ms_older_moe" in lin:
            return lin["linear_ms_older_moe"], f"; MoE layers on sglang {older_moe}'s measured kernels (the tables' curve)"
        older = (f"; {NO_OLDER_MOE_CURVE} (sglang {older_moe}'s) for this model and dtype: the tables' release's MoE "
                 "rows stand in")
    if not triton_moe:
        return lin["linear_ms"], older
    if "linear_ms_triton_moe" in lin:
        return lin["linear_ms_triton_moe"], older + "; MoE layers on Triton fused_moe (the tables' curve)"
    kernel = lin.get("moe_kernel", "triton")
    if kernel == "triton":
        return lin["linear_ms"], older
    return lin["linear_ms"], older + (f"; {NO_TRITON_CURVE} for the engine's BF16 experts here: {kernel}'s rows "
                                      "stand in (faster)")


def _terms_note(prefill_floor_s: float, mixed_decode_attn_scale: float, linear_scale: float,
                prefill_attn_scale: float, prefill_overhead_s: float) -> str:
    """What a kernel-table label adds for the terms beside the tables: the eager-prefill floor, the mixed steps'
    decode-attention factor, and a fit's corrections."""
    note = ""
    if prefill_floor_s:
        note += f"; a step that prefills takes at least {prefill_floor_s * 1e3:.4g} ms (eager launch)"
    if mixed_decode_attn_scale != 1.0:
        note += (f"; decode attention in a step that also prefills x{mixed_decode_attn_scale:.4g} (each query head "
                 "reads its KV head apart)")
    fitted = [f"x{linear_scale:.4g} linear" if linear_scale != 1.0 else "",
              f"x{prefill_attn_scale:.4g} prefill attention" if prefill_attn_scale != 1.0 else "",
              f"+ {prefill_overhead_s * 1e3:.4g} ms/prefill step" if prefill_overhead_s else ""]
    return note + (" (" + ", ".join(f for f in fitted if f) + ")" if any(fitted) else "")


def allreduce_shortfall_s(allreduce_ms: Sequence[float], layers: int, latency_s: float, kernel_scale: float) -> float:
    """Per step: what an engine whose one-token all-reduce takes latency_s pays beyond the tables' all-reduces (their
    one-token all-reduce, times the release's kernel_scale, for each of the step's 2 per layer), at every token
    count; 0 where the tables' are as slow. A fitted linear_scale later scales the tables' part, not this."""
    if latency_s <= 0 or not allreduce_ms or allreduce_ms[0] <= 0:
        return 0.0
    calls = ALLREDUCES_PER_LAYER * layers
    return max(0.0, latency_s - kernel_scale * allreduce_ms[0] * MS / calls) * calls


def measured_allreduce_ms(tokens_grid: list[float], arch: ModelArch, tp: int, links: Links) -> list[float]:
    """The all-reduce curve of a dense TP step priced from the links (two per layer, BF16 activations of every
    token of the step), on the tables' token grid: for a SKU whose kernel tables were collected on a server unlike
    the ones it is sold in (L40S: AIConfigurator's collectors have no GPU peer-to-peer, so NCCL falls back to host
    memory past two GPUs). Affine in the token count, so the tables' interpolation stays exact."""
    per_token_bytes = arch.hidden * BYTES_PER_PARAM["bf16"]
    return [ALLREDUCES_PER_LAYER * arch.layers * allreduce_s(t * per_token_bytes, tp, links) / MS for t in tokens_grid]


def _slopes(xs: list[float], ys: list[float]) -> list[float]:
    return [(ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i]) for i in range(len(xs) - 1)]


class KernelStepTime(StepTimeModel):
    """overhead_s + kernel time interpolated in the tables (module docstring). Built by kernel_step_time."""

    __slots__ = ("overhead_s", "overhead_per_seq_s", "prefill_overhead_s", "linear_scale", "prefill_attn_scale",
                 "prefill_floor_s", "kernel_scale", "allreduce_extra_s", "allreduce_latency_s",
                 "mixed_decode_attn_scale", "absorbed_s_per_pair", "absorbed_below_prefix_tokens",
                 "absorbed_graph_max_tokens", "prefix_up_s",
                 "label", "source_file", "source_sha256", "_t", "_tok", "_tok_k", "_ar", "_ar_k",
                 "_lg", "_lg_k", "_b", "_s", "_att", "_l", "_ctx", "_ctx_k", "_last_t", "_last_l", "_rows")

    def __init__(self, grids: dict[str, list[float]], linear_ms: list[float], allreduce_ms: list[float],
                 logits_ms: list[float], decode_attn_ms: list[list[float]], ctx_attn_ms: list[float],
                 overhead_s: float, label: str = "kernel tables", overhead_per_seq_s: float = 0.0, *,
                 prefill_overhead_s: float = 0.0, linear_scale: float = 1.0, prefill_attn_scale: float = 1.0,
                 prefill_floor_s: float = 0.0, kernel_scale: float = 1.0, measured_allreduce: bool = False,
                 allreduce_extra_s: float = 0.0, mixed_decode_attn_scale: float = 1.0,
                 absorbed: tuple[float, float, float] = (1.0, 0.0, 0.0), mla_kv_up_share: float = 0.0) -> None:
        absorbed_attn_ratio, absorbed_below_prefix_tokens, absorbed_graph_max_tokens = absorbed
        for name, x in (("overhead_s", overhead_s), ("overhead_per_seq_s", overhead_per_seq_s),
                        ("prefill_overhead_s", prefill_overhead_s), ("linear_scale", linear_scale),
                        ("prefill_attn_scale", prefill_attn_scale), ("prefill_floor_s", prefill_floor_s),
                        ("kernel_scale", kernel_scale), ("allreduce_extra_s", allreduce_extra_s),
                        ("mixed_decode_attn_scale", mixed_decode_attn_scale),
                        ("absorbed_attn_ratio", absorbed_attn_ratio)):
            if not (math.isfinite(x) and x >= 0):
                raise ValueError(f"{name} must be a non-negative number, not {x!r}")
        self.overhead_s = float(overhead_s)
        self.overhead_per_seq_s = float(overhead_per_seq_s)  # per sequence in the step (input preparation, sampling)
        # fitted corrections (`calibrate fit --fit kernels`; 0 / 1 / 1 = the tables as measured): a fixed cost per
        # step that prefills, a multiplier on the token-linear part (GEMMs + all-reduce), one on prompt attention
        self.prefill_overhead_s = float(prefill_overhead_s)
        self.linear_scale = float(linear_scale)
        self.prefill_attn_scale = float(prefill_attn_scale)
        # an engine that launches prefill forwards kernel by kernel (no CUDA graph): the host's launch time of all
        # layers bounds such a step from below; the GPU work hides it only once longer (EagerPrefill)
        self.prefill_floor_s = float(prefill_floor_s)
        # an engine release's kernels against the tables' release: every kernel time (not the overheads) times this;
        # an all-reduce priced from a measured bus bandwidth is the server's, not the tables' release's: not scaled
        self.kernel_scale = float(kernel_scale)
        # the engine's all-reduces' shortfall against its own latency (kernel_step_time), per step: a latency, so
        # neither the release factor nor a fitted linear_scale multiplies it
        self.allreduce_extra_s = float(allreduce_extra_s)
        self.allreduce_latency_s = 0.0  # the engine latency it came from (kernel_step_time sets it)
        # decode attention in a step that also prefills, against a decode-only step's (the tables'): an engine whose
        # attention kernel runs such a batch in one launch without packing a KV head's query heads reads each KV head
        # once per query head (EngineKernels.unpacked_gqa_mixed_steps); 1: as in a decode-only step
        self.mixed_decode_attn_scale = float(mixed_decode_attn_scale)
        ks = self.kernel_scale * MS
        self.label = label
        self.source_file = ""  # the tables file and its sha256 (for a run's provenance), set by kernel_step_time
        self.source_sha256 = ""
        t = [float(x) for x in grids["tokens"]]
        self._t = t
        ls = self.linear_scale * ks
        unscale = self.kernel_scale if measured_allreduce else 1.0  # takes the release factor off a measured one
        extra = self.allreduce_extra_s
        self._tok = [(a + b / unscale) * ls + extra for a, b in zip(linear_ms, allreduce_ms)]
        self._tok_k = _slopes(t, self._tok)
        self._ar = [x / unscale * ls + extra for x in allreduce_ms]  # also inside _tok: kept apart for breakdown_s
        self._ar_k = _slopes(t, self._ar)
        self._lg = [x * ks for x in logits_ms]
        self._lg_k = _slopes(t, self._lg)
        self._last_t = len(t) - 2
        self._b = [float(x) for x in grids["batch"]]
        self._s = [float(x) for x in grids["kv_len"]]
        self._att = [[x * ks for x in row] for row in decode_attn_ms]
        self._l = [float(x) for x in grids["prompt_len"]]
        self._ctx = [c * ks * self.prefill_attn_scale for c in ctx_attn_ms]
        self._ctx_k = _slopes(self._l, self._ctx)
        self._last_l = len(self._l) - 2
        # an engine that runs a prefill batch whose prompts have some (but fewer than absorbed_below_prefix_tokens)
        # computed tokens, or one of at most absorbed_graph_max_tokens tokens, in the absorbed (MQA-like) form of
        # multi-head latent attention: each query-key pair costs absorbed_attn_ratio times the tables' (MHA-form)
        # pair, its extra priced from the tables' prompt attention per pair at their longest prompts
        # (EngineKernels.absorbed_mla_extend); 0: never
        self.absorbed_below_prefix_tokens = float(absorbed_below_prefix_tokens)
        self.absorbed_graph_max_tokens = float(absorbed_graph_max_tokens)
        # a latent-attention prefill in the MHA form re-expands its prompts' computed tokens (cached prefixes, earlier
        # chunks) from the cached latent through the KV up projection every step: mla_kv_up_share (ModelArch) of the
        # tables' per-token cost of the context block (prefix_up_s_per_token)
        self.prefix_up_s = mla_kv_up_share * self._ctx_s_per_token() if mla_kv_up_share > 0 else 0.0
        self.absorbed_s_per_pair = 0.0
        if absorbed_attn_ratio > 1.0:
            self.absorbed_s_per_pair = (absorbed_attn_ratio - 1.0) * self._ctx_s_per_pair()
        # decode batch -> (fixed s, attention s by KV length, slopes): built on first use
        self._rows: dict[int, tuple[float, list[float], list[float]]] = {}

    def __repr__(self) -> str:
        return f"KernelStepTime({self.label})"

    def _ctx_s_per_pair(self) -> float:
        """Prompt attention per query-key pair: the growth of ctx_attn(L) / L between the tables' two longest prompts,
        where the quadratic term dominates (ctx_attn(L) = a L + c L (L + 1) / 2 gives c = 2 x that slope)."""
        (l1, l2), (c1, c2) = self._l[-2:], self._ctx[-2:]
        return max(0.0, 2.0 * (c2 / l2 - c1 / l1) / (l2 - l1))

    def _ctx_s_per_token(self) -> float:
        """The context block's cost per prompt token beside its attention pairs (its projections): the growth of
        ctx_attn from 2,048- to 8,192-token prompts (where both show; past them the pairs swamp it) less the pairs'."""
        ls = self._l
        i1, i2 = (ls.index(2048.0), ls.index(8192.0)) if {2048.0, 8192.0} <= set(ls) else (len(ls) - 2, len(ls) - 1)
        (l1, l2), (c1, c2) = (ls[i1], ls[i2]), (self._ctx[i1], self._ctx[i2])
        return max(0.0, (c2 - c1) / (l2 - l1) - self._ctx_s_per_pair() * (l1 + l2 + 1.0) / 2.0)

    def absorbed_extend(self) -> tuple[float, float, float]:
        return self.absorbed_s_per_pair, self.absorbed_below_prefix_tokens, self.absorbed_graph_max_tokens

    def prefix_up_s_per_token(self) -> float:
        return self.prefix_up_s

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)

    # -- interpolation on the token grid (T >= 1; linear past the last point) --
    def _on_tokens(self, ys: list[float], ks: list[float], x: float) -> float:
        t = self._t
        i = bisect_right(t, x) - 1
        if i < 0:
            return ys[0]
        if i > self._last_t:
            i = self._last_t
        return ys[i] + (x - t[i]) * ks[i]

    def _row(self, b: int) -> tuple[float, list[float], list[float]]:
        """Decode-only step of b sequences: fixed part (overhead + linear + all-reduce + logits at T = m = b) and
        attention by KV length, linear in the batch between grid batches (proportional to it past the last)."""
        row = self._rows.get(b)
        if row is not None:
            return row
        bs = self._b
        if b >= bs[-1]:  # past the last batch: proportional to the batch (KV reads dominate), monotone in KV length
            att = [y * (b / bs[-1]) for y in self._att[-1]]
        else:
            j = max(bisect_right(bs, b) - 1, 0)
            w = (b - bs[j]) / (bs[j + 1] - bs[j])
            lo, hi = self._att[j], self._att[j + 1]
            att = list(lo) if w == 0.0 else [y0 + (y1 - y0) * w for y0, y1 in zip(lo, hi)]
        fixed = (self.overhead_s + self.overhead_per_seq_s * b + self._on_tokens(self._tok, self._tok_k, b)
                 + self._on_tokens(self._lg, self._lg_k, b))
        # past the last KV length: in proportion to it (the last slope of a batch row can be below a smaller
        # batch's, and extending it would cross that row; long-context attention is linear in KV length)
        row = (fixed, att, _slopes(self._s, att) + [att[-1] / self._s[-1]])
        self._rows[b] = row
        return row

    def token_work_s(self, tokens: float) -> float:
        """The per-token part of a decode step of `tokens` sampling rows: linear layers, all-reduce and LM head (what
        padded rows of a CUDA graph also run)."""
        return self._on_tokens(self._tok, self._tok_k, tokens) + self._on_tokens(self._lg, self._lg_k, tokens)

    def _attention(self, att: list[float], k: list[float], s: float) -> float:
        sg = self._s
        j = bisect_right(sg, s) - 1
        if j < 0:
            return att[0]  # below the first KV length: held
        return att[j] + (s - sg[j]) * k[j]  # j = the last point: k[j] extends it in proportion

    def step_s(self, load: StepLoad) -> float:
        prefill, b, kv, pairs = load[:4]
        if not prefill:
            if not b:
                return self.overhead_s
            fixed, att, k = self._rows.get(b) or self._row(b)
            return fixed + self._attention(att, k, kv / b)
        step = self._mixed(prefill, b, kv, pairs)
        return step if step >= self.prefill_floor_s else self.prefill_floor_s

    def unfloored_s(self, load: StepLoad) -> float:
        """step_s without the eager-prefill floor: the kernels and overhead alone."""
        prefill, b, kv, pairs = load[:4]
        return self._mixed(prefill, b, kv, pairs) if prefill else self.step_s(load)

    def without_prefill_floor(self) -> KernelStepTime:
        if not self.prefill_floor_s:
            return self
        out = copy.copy(self)  # shares the tables and the row cache, which the floor does not enter
        out.prefill_floor_s = 0.0
        return out

    def prefill_launch_s(self) -> float:
        return self.prefill_floor_s

    def _mixed(self, prefill: int, b: int, kv: float, pairs: float) -> float:
        """A step with prefill: non-attention at all its tokens, logits of the decodes + one prefill row,
        decode attention as in a decode-only step, prompt attention per query token at the mean key length."""
        step = (self.overhead_s + self.prefill_overhead_s + self.overhead_per_seq_s * (b + 1)
                + self._on_tokens(self._tok, self._tok_k, prefill + b)
                + self._on_tokens(self._lg, self._lg_k, b + 1))
        if b:
            _, att, k = self._rows.get(b) or self._row(b)
            step += self.mixed_decode_attn_scale * self._attention(att, k, kv / b)
        if pairs > 0.0:
            step += self._prefill_attention(prefill, pairs)
        return step

    def _prefill_attention(self, prefill: int, pairs: float) -> float:
        """The step's prompts run in one context-attention launch per layer: its fixed cost (the table's first
        point, a one-token prompt) once per step, plus for each prompt what a whole prompt of the same mean key
        length L costs above it (linear in L between grid lengths), times the step's share of its queries,
        prefill / L. One whole prompt gets exactly ctx_attn(L)."""
        ls = self._l
        floor = self._ctx[0]
        length = 2.0 * pairs / prefill - 1.0
        i = bisect_right(ls, length) - 1
        if i < 0:
            return floor
        if i > self._last_l:
            i = self._last_l
        return floor + prefill * (self._ctx[i] + (length - ls[i]) * self._ctx_k[i] - floor) / length

    def breakdown_s(self, load: StepLoad) -> dict[str, float]:
        """The step's parts in seconds (for reports and tests, not the hot path); they add up to step_s."""
        prefill, b, kv, pairs = load[:4]
        tokens = prefill + b
        out = {"overhead": self.overhead_s + self.overhead_per_seq_s * (b + 1 if prefill else b), "linear": 0.0,
               "allreduce": 0.0, "logits": 0.0, "decode_attention": 0.0, "prefill_attention": 0.0, "launch_wait": 0.0}
        if prefill:
            out["overhead"] += self.prefill_overhead_s
        if not tokens:
            return out
        ar = self._on_tokens(self._ar, self._ar_k, tokens)
        out["allreduce"] = ar
        out["linear"] = self._on_tokens(self._tok, self._tok_k, tokens) - ar
        out["logits"] = self._on_tokens(self._lg, self._lg_k, b + 1 if prefill else b)
        if b:
            _, att, k = self._row(b)
            scale = self.mixed_decode_attn_scale if prefill else 1.0
            out["decode_attention"] = scale * self._attention(att, k, kv / b)
        if prefill and pairs > 0.0:
            out["prefill_attention"] = self._prefill_attention(prefill, pairs)
        if prefill:  # the GPU waits for the host's kernel launches of an eager prefill forward
            out["launch_wait"] = max(0.0, self.prefill_floor_s - sum(out.values()))
        return out

    def decode_affine(self, decode_seqs: int, kv0: float, kv_step: float, n_max: int) -> tuple[float, float, int]:
        """Decode-only steps i = 0, 1, ... read kv0 + kv_step * i KV tokens (mean length s_i = that / B): affine in
        i while s_i stays in one KV-length segment, so the stretch ends at the next grid point (inclusive: there
        both segments give the same time). Same arithmetic as step_s, so the two agree to rounding."""
        b = decode_seqs
        if b <= 0:
            return self.overhead_s, 0.0, max(n_max, 1)
        fixed, att, k = self._rows.get(b) or self._row(b)
        sg = self._s
        s0 = kv0 / b
        j = bisect_right(sg, s0) - 1
        if j < 0:  # held below the first KV length, up to it
            a_s, slope, upper, lower = fixed + att[0], 0.0, sg[0], -math.inf
        else:
            last = len(sg) - 1  # the segment from the last KV length on has no end
            a_s = fixed + (att[j] + (s0 - sg[j]) * k[j])
            slope = k[j]
            upper = sg[j + 1] if j < last else math.inf
            lower = sg[j]
        b_s = slope * kv_step / b
        if n_max < 2 or kv_step == 0.0:
            return a_s, b_s, max(n_max, 1)
        bound = upper if kv_step > 0.0 else lower
        if math.isinf(bound):
            return a_s, b_s, n_max
        # steps whose mean length lies within [lower, upper]: the largest i with kv0 + kv_step * i on that side
        room = (bound * b - kv0) / kv_step  # steps until the bound (huge for a tiny kv_step)
        n = n_max if room >= n_max else max(1, min(n_max, math.floor(room) + 1))
        while n > 1 and not lower <= (kv0 + kv_step * (n - 1)) / b <= upper:
            n -= 1
        while n < n_max and lower <= (kv0 + kv_step * n) / b <= upper:
            n += 1
        return a_s, b_s, n


class AttentionRanks(StepTimeModel):
    """A replica whose attention is data-parallel over `ranks` groups, each running the per-rank kernel tables
    (derive_moe.py's records describe one rank): a replica step is a step of its busiest rank. Every rank steps
    together (the MoE all-to-all couples them), so the replica's step time is that rank's.

    Decode sequences spread evenly: the busiest rank holds ceil(B / ranks) of them and their share of the KV read.
    A prompt does not spread: each request lives on one rank, so a step that prefills n prompts puts ceil(n / ranks)
    whole prompts on its busiest rank (the most even placement there is), while the other ranks wait for it
    ("the iteration time is dominated by the slowest rank", TensorRT-LLM's ADP balance note,
    https://nvidia.github.io/TensorRT-LLM/blogs/tech_blog/blog10_ADP_Balance_Strategy.html). What the busiest rank
    computes alone is its attention (`local_share` of the per-token GEMMs: the attention blocks' share of the
    active parameters), its prompt attention and its logits; the rest of the per-token work (expert and gathered
    MLP layers) is spread over all ranks and stays at the even share. The prompts' count and length are read off
    the step's chunks (busiest_ranks; the slowest of the ranks with the most prompt tokens, pairs or computed tokens
    prices the step). What latent attention adds around the tables for computed tokens is that rank's too
    (mla_extend)."""

    __slots__ = ("inner", "ranks", "local_share", "pad_multiple", "label", "source_file", "source_sha256")

    def __init__(self, inner: KernelStepTime, ranks: int, local_share: float = 1.0, pad_multiple: int = 1) -> None:
        self.inner, self.ranks = inner, int(ranks)
        self.local_share = min(max(float(local_share), 0.0), 1.0)
        # an engine that pads each rank's decode batch to a multiple of this (its CUDA graphs' batch sizes with DP
        # attention: SGLang's attention TP size) runs the per-token work of the padded rows too; 1: none
        self.pad_multiple = max(1, int(pad_multiple))
        self.label = inner.label
        self.source_file, self.source_sha256 = inner.source_file, inner.source_sha256

    def _rank_load(self, load: StepLoad) -> StepLoad:
        """The even share of a step: ceil(1 / ranks) of every part."""
        r = self.ranks
        b = -(-load.decode_seqs // r)
        kv = load.kv_tokens_read * (b / load.decode_seqs) if load.decode_seqs else 0.0
        return StepLoad(-(-load.prefill_tokens // r), b, kv, load.prefill_attn_pairs / r)

    def busiest_loads(self, load: StepLoad) -> list[StepLoad]:
        """The loads of the ranks that may be the slowest (busiest_ranks: the most prompt tokens, pairs or computed
        tokens), each with its even share of the decodes."""
        even = self._rank_load(load)
        return [StepLoad(t, even.decode_seqs, even.kv_tokens_read, p, d) for t, p, d in busiest_ranks(load, self.ranks)]

    def step_s(self, load: StepLoad) -> float:
        step = self.unfloored_s(load)
        floor = self.inner.prefill_floor_s  # the host launches the busiest rank's step like any other
        return floor if load.prefill_tokens > 0 and step < floor else step

    def unfloored_s(self, load: StepLoad) -> float:
        """The busiest rank's step without the eager-prefill floor."""
        even = self._rank_load(load)
        t = self.inner.unfloored_s(even)
        if load.prefill_tokens <= 0:
            return t + self.padding_s(even.decode_seqs)
        return t + max(0.0, *(self._extra_s(even, busy) for busy in self.busiest_loads(load)))

    def padding_s(self, rank_seqs: int) -> float:
        """What a decode-only step's padded rows add: the per-token work at the rank's batch rounded up to
        pad_multiple, less that at its real batch (0 without padding or decodes)."""
        m = self.pad_multiple
        padded = -(-rank_seqs // m) * m
        if m == 1 or rank_seqs <= 0 or padded == rank_seqs:
            return 0.0
        return self.inner.token_work_s(padded) - self.inner.token_work_s(rank_seqs)

    def without_prefill_floor(self) -> AttentionRanks:
        if not self.inner.prefill_floor_s:
            return self
        return AttentionRanks(self.inner.without_prefill_floor(), self.ranks, self.local_share, self.pad_multiple)

    def prefill_launch_s(self) -> float:
        return self.inner.prefill_launch_s()

    def absorbed_extend(self) -> tuple[float, float, float]:
        return self.inner.absorbed_extend()

    def prefix_up_s_per_token(self) -> float:
        return self.inner.prefix_up_s_per_token()

    def mla_extend(self, load: StepLoad) -> tuple[float, str]:
        """The slowest rank's: each rank runs its own forward batch, so the engine picks the latent-attention form
        from that rank's prompts alone (SGLang's dispatch sums the rank's extend_prefix_lens): the most of what it
        adds on the ranks that may be the slowest (busiest_loads)."""
        if load.prefill_tokens <= 0:
            return 0.0, ""
        return max((self.inner.mla_extend(busy) for busy in self.busiest_loads(load)), key=lambda x: x[0])

    def _extra_s(self, even: StepLoad, busy: StepLoad) -> float:
        """What the busiest rank's whole prompts add to the even step: its own share of the per-token work, all of
        its prompt attention and logits."""
        be, bb = self.inner.breakdown_s(even), self.inner.breakdown_s(busy)
        per_token = (bb["linear"] + bb["allreduce"]) - (be["linear"] + be["allreduce"])
        return (self.local_share * per_token + (bb["prefill_attention"] - be["prefill_attention"])
                + (bb["logits"] - be["logits"]))

    def breakdown_s(self, load: StepLoad) -> dict[str, float]:
        even = self._rank_load(load)
        out = self.inner.breakdown_s(even)
        if load.prefill_tokens <= 0:
            out["linear"] += self.padding_s(even.decode_seqs)  # the padded rows' GEMMs and LM head
        out["launch_wait"] = 0.0
        unfloored = self.unfloored_s(load)
        out["busiest_rank"] = unfloored - sum(out.values())
        out["launch_wait"] = self.step_s(load) - unfloored
        return out

    def decode_affine(self, decode_seqs: int, kv0: float, kv_step: float, n_max: int) -> tuple[float, float, int]:
        b = -(-decode_seqs // self.ranks)
        share = b / decode_seqs
        t0, dt, n = self.inner.decode_affine(b, kv0 * share, kv_step * share, n_max)
        return t0 + self.padding_s(b), dt, n

    def __repr__(self) -> str:
        return (f"AttentionRanks({self.inner!r}, ranks={self.ranks}, local_share={self.local_share:.4g}, "
                f"pad_multiple={self.pad_multiple})")


def coverage(profile_dirs: Sequence[Path] | None = None) -> dict[str, list[tuple[str, str, int, str, str]]]:
    """sku -> (model, framework, tp, dtype, kv_dtype) covered, over every kernels/*.json.gz found."""
    out: dict[str, list[tuple[str, str, int, str, str]]] = {}
    for d in profile_dirs if profile_dirs is not None else [PROFILES_DIR]:
        for p in sorted((Path(d) / "kernels").glob("*.json.gz")):
            sku = p.name[: -len(".json.gz")]
            if sku not in out:
                tables = load_kernel_tables(sku, [d])
                if tables is not None:
                    out[sku] = tables.combinations()
    return out


__all__ = ["FRAMEWORKS", "AttentionRanks", "KernelStepTime", "KernelTables", "coverage", "kernel_step_time",
           "load_kernel_tables", "table_path"]
