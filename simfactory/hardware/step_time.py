"""Time of one continuous-batching iteration, as a function of what the batch holds.

Two models share one interface, `step_s(load)`:
- Roofline: overhead + max(compute, memory) of the weight GEMMs + max(compute, memory) of attention + the
  collectives (tensor-parallel all-reduces, expert all-to-alls, pipeline hops).
  A lower bound scaled by efficiency factors that are fitted to published measurements.
- Linear: overhead + coefficients x load, fitted to measurements by calibration.
"""

from __future__ import annotations

import heapq
import math
from typing import NamedTuple
from dataclasses import dataclass, replace

from simfactory.config.profile import (
    BYTES_PER_PARAM,
    LinearStepTime,
    ModelArch,
    RooflineStepTime,
    Spec,
)
from simfactory.hardware.collectives import Links, all_to_all_s, allreduce_s, p2p_s

ALLREDUCES_PER_LAYER = 2  # Megatron-style TP: one after attention, one after the MLP (Shoeybi et al. 2019)


class StepLoad(NamedTuple):
    """What one engine iteration computes (a named tuple: the engine builds one per step, and a frozen dataclass
    costs several times as much to construct).

    prefill_tokens: prompt tokens computed in this step (all prefill chunks together)
    decode_seqs: sequences generating one token each
    kv_tokens_read: context tokens whose K/V attention reads, summed over decode sequences
    prefill_attn_pairs: query-key pairs of the prefill chunks: sum of chunk * (context_before + (chunk + 1) / 2)
    computed_tokens: prompt tokens the chunks' prompts had computed before this step (cached prefixes, earlier
        chunks): sum of context_before
    chunks: each prefill chunk's (tokens, context_before) where known (the engine's steps), for engines that place
        whole prompts on ranks (busiest_ranks); prefill tokens beyond them (a speculative verify pass's) belong to the
        decoding sequences. None: not known (read off the totals as equal prompts)
    """

    prefill_tokens: int = 0
    decode_seqs: int = 0
    kv_tokens_read: float = 0.0
    prefill_attn_pairs: float = 0.0
    computed_tokens: int = 0
    chunks: tuple[tuple[int, int], ...] | None = None


class StepTimeModel:
    """Interface: seconds for one iteration with the given load."""

    def step_s(self, load: StepLoad) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def without_prefill_floor(self) -> "StepTimeModel":
        """The same model with no eager-prefill floor: what a pass the engine runs as a CUDA graph costs (a
        speculative verify pass counts its draft tokens as prompt tokens, but is graph-captured)."""
        return self

    def prefill_launch_s(self) -> float:
        """Host time to launch a step with prompt tokens (an eager prefill's, the floor; 0 where the engine replays
        graphs): a scheduler that processes the step before only after launching the next waits that long."""
        return 0.0

    def absorbed_extend(self) -> tuple[float, float, float]:
        """(seconds a query-key pair of prompt attention adds, computed prompt tokens below which it does, batch tokens
        up to which it does whatever those are) for an engine that runs some prefill batches in multi-head latent
        attention's absorbed form (EngineKernels.absorbed_mla_extend); (0, 0, 0): never."""
        return 0.0, 0.0, 0.0

    def prefix_up_s_per_token(self) -> float:
        """Seconds a prefill step in latent attention's MHA form spends per computed prompt token (a cached prefix,
        earlier chunks) re-expanding it from the cached latent (the KV up projection); 0 where there is none."""
        return 0.0

    def mla_extend(self, load: StepLoad) -> tuple[float, str]:
        """What a latent-attention prefill step adds to the tables' MHA-form step, and as what: in the absorbed form
        ("absorbed": its prompts' computed tokens, cached prefixes and earlier chunks (load.computed_tokens), more than
        0 and fewer than the engine's threshold in all, or a batch small enough for a piecewise CUDA graph; SGLang's
        DeepSeek attention dispatch) the absorbed form's extra attention work; in the MHA form ("kv_up"), re-expanding
        those computed tokens from the cached latent (absorbed_extend, prefix_up_s_per_token)."""
        s_per_pair, below, graph_max = self.absorbed_extend()
        computed = load.computed_tokens
        if s_per_pair and (0 < computed < below or load.prefill_tokens + load.decode_seqs <= graph_max):
            return s_per_pair * load.prefill_attn_pairs, "absorbed"
        return self.prefix_up_s_per_token() * computed, "kv_up"

    def decode_affine(self, decode_seqs: int, kv0: float, kv_step: float, n_max: int) -> tuple[float, float, int]:
        """Consecutive decode-only steps of this many sequences, the first reading kv0 KV tokens and each later one
        kv_step more: (a_s, b_s, n) such that step i (0-based) takes a_s + b_s * i for i < n <= n_max. The engine's
        fast-forward plans a whole stretch from it in O(1).

        This fallback evaluates step_s and relies on step times being convex and piecewise affine in the KV
        tokens read (a max of affine terms, or a sum of such): then the steps are affine up to n - 1 exactly when
        step n - 1 lies on the line through steps 0 and 1, so a bisection on that finds n."""

        def f(i: int) -> float:
            return self.step_s(StepLoad(0, decode_seqs, kv0 + kv_step * i, 0))

        a_s = f(0)
        if n_max < 2:
            return a_s, 0.0, 1
        b_s = f(1) - a_s

        def on_line(i: int) -> bool:
            y = f(i)
            return abs(y - (a_s + b_s * i)) <= 1e-10 * abs(y)

        lo, hi = 2, n_max  # affine over lo steps; find the most steps (on_line is monotone for convex steps)
        if not on_line(hi - 1):
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if on_line(mid - 1):
                    lo = mid
                else:
                    hi = mid
            hi = lo
        return a_s, b_s, hi



def rank_chunk_tokens(max_num_batched_tokens: int, attention_ranks: int) -> int:
    """The most prompt tokens one request may compute in a step. With attention data-parallel ranks each rank
    schedules its own prompts within its share of the step's budget (SGLang divides chunked_prefill_size by dp_size,
    ServerArgs._handle_data_parallelism; TensorRT-LLM's and vLLM's ranks each have a budget of their own, the replica's
    being their sum), so a chunked prompt's chunk is at most that share, and without chunked prefill a request must
    fit it whole (the fleet refuses a longer one). Each rank runs its own partial prefills too (vLLM's per core engine,
    SGLang's chunked request per rank): the engine allows max_num_partial_prefills a rank."""
    return max(max_num_batched_tokens // attention_ranks, 1)


def idle_step_s(model: StepTimeModel, load: StepLoad) -> tuple[float, float, str]:
    """A step on an otherwise idle engine as the engine charges it (ReplicaEngine._step_s without a step before it to
    overlap its launch): (seconds, what latent attention adds around the kernels for the load's computed tokens, and
    as what: StepTimeModel.mla_extend). The extension sits under the eager-prefill floor with the kernels."""
    extra_s, kind = model.mla_extend(load) if load.prefill_tokens else (0.0, "")
    if not extra_s:
        return model.step_s(load), 0.0, ""
    return max(model.without_prefill_floor().step_s(load) + extra_s, model.prefill_launch_s()), extra_s, kind


def busiest_rank_prompts(load: StepLoad, ranks: int) -> tuple[int, float, int]:
    """Prompt tokens, prompt attention pairs and computed tokens of the busiest of `ranks` attention data-parallel
    ranks when the step's chunks are not known: n equal prompts put ceil(n / ranks) whole ones on the busiest (the
    most even placement). n and each prompt's L new tokens after C computed ones are read off the load: n prompts make
    n L tokens, n C computed tokens and n L (C + (L + 1) / 2) pairs, so L = (pairs / tokens - 1 / 2) / (computed /
    tokens + 1 / 2) (without computed tokens L = 2 pairs / tokens - 1). Exact for equal prompts only: the engine's
    steps carry their chunks (busiest_ranks)."""
    tokens, pairs = load.prefill_tokens, load.prefill_attn_pairs
    if tokens <= 0:
        return 0, 0.0, 0
    length = max((pairs / tokens - 0.5) / (load.computed_tokens / tokens + 0.5), 1.0)
    prompts = max(tokens / length, 1.0)
    share = min(1.0, math.ceil(prompts / ranks - 1e-9) * length / tokens)
    return max(math.ceil(tokens * share - 1e-9), 1), pairs * share, math.ceil(load.computed_tokens * share - 1e-9)


def busiest_ranks(load: StepLoad, ranks: int) -> list[tuple[int, float, int]]:
    """(prompt tokens, prompt attention pairs, computed tokens) of each attention data-parallel rank that may be the
    slowest: the one with the most prompt tokens, the one with the most pairs, the one with the most computed tokens
    (one entry where they are the same rank). A prompt's chunk lives on one rank: with the step's chunks known, the
    chunks go to ranks largest first, each to the rank holding the fewest tokens (the most even placement), and prefill
    tokens beyond the chunks (a verify pass's, one per draft token of each decoding sequence) spread evenly; else
    busiest_rank_prompts reads equal prompts off the totals."""
    if load.prefill_tokens <= 0:
        return [(0, 0.0, 0)]
    if load.chunks is None:
        return [busiest_rank_prompts(load, ranks)]
    placed = [(c, c * (done + (c + 1) / 2.0), done) for c, done in load.chunks]  # (tokens, pairs, computed)
    rest = (max(0, math.ceil((load.prefill_tokens - sum(p[0] for p in placed)) / ranks - 1e-9)),
            max(0.0, load.prefill_attn_pairs - sum(p[1] for p in placed)) / ranks)
    if len(placed) <= ranks:
        bins = placed or [(0, 0.0, 0)]
    else:
        heap = [(0, i, 0.0, 0) for i in range(ranks)]  # (tokens, rank, pairs, computed), fewest tokens first
        for c, pairs, done in sorted(placed, reverse=True):
            t, i, p, d = heapq.heappop(heap)
            heapq.heappush(heap, (t + c, i, p + pairs, d + done))
        bins = [(t, p, d) for t, _, p, d in heap]
    picks = [max(bins, key=lambda b: b[0])]
    for k in (1, 2):
        most = max(bins, key=lambda b: b[k])
        if most[k] > picks[0][k] and most not in picks:
            picks.append(most)
    return [(t + rest[0], p + rest[1], d) for t, p, d in picks]


@dataclass(frozen=True)
class LinearModel(StepTimeModel):
    spec: LinearStepTime

    def step_s(self, load: StepLoad) -> float:
        s = self.spec
        return (
            s.overhead_s
            + s.s_per_prefill_token * load.prefill_tokens
            + s.s_per_decode_seq * load.decode_seqs
            + s.s_per_kv_token * load.kv_tokens_read
            + s.s_per_attn_pair * load.prefill_attn_pairs
        )

    def breakdown_s(self, load: StepLoad) -> dict[str, float]:
        """The fitted terms of the step in seconds; they add up to step_s."""
        s = self.spec
        return {"overhead": s.overhead_s, "prefill_tokens": s.s_per_prefill_token * load.prefill_tokens,
                "decode_seqs": s.s_per_decode_seq * load.decode_seqs, "kv_read": s.s_per_kv_token * load.kv_tokens_read,
                "prefill_attention": s.s_per_attn_pair * load.prefill_attn_pairs}

    def decode_affine(self, decode_seqs: int, kv0: float, kv_step: float, n_max: int) -> tuple[float, float, int]:
        s = self.spec
        a_s = s.overhead_s + s.s_per_decode_seq * decode_seqs + s.s_per_kv_token * kv0
        b_s = s.s_per_kv_token * kv_step
        return a_s, b_s, n_max


# Bytes per hidden element, token and layer of the elementwise work every tensor-parallel rank does on the whole
# hidden vector (RMSNorms, residual adds, rotary; with 8-bit or 4-bit GEMMs also quantizing the activations): it does
# not shrink with TP, so a rank's GEMM share shrinks around it. Fitted to the measured kernel tables of H100 and H200
# (median over TensorRT-LLM, vLLM and SGLang; B200 agrees): python calibrate/kernels/fit_elementwise.py
ELEMENTWISE_BYTES_PER_HIDDEN = {"16-bit": 17.0, "quantized": 37.0}
# Weight GEMMs each layer launches on every device (what RooflineStepTime.gemm_latency_s is charged for), by the
# layer's parts, as SGLang's model code launches them (python/sglang/srt/models/deepseek_v2.py and llama.py, v0.5.6):
GQA_ATTENTION_GEMMS = 2  # QKV, output
# fused_qkv_a_proj_with_mqa (or q_proj and kv_a_proj_with_mqa), q_b_proj, the absorbed up-projections w_kc and w_vc
# (two batched GEMMs around the attention kernel), o_proj (DeepseekV2AttentionMLA.forward_absorb_prepare / _core)
MLA_ATTENTION_GEMMS = 5
DENSE_MLP_GEMMS = 2  # gate-up, down
MOE_MLP_GEMMS = 3  # the router (gate), the experts' grouped gate-up and down (DeepseekV2MoE, Qwen3MoeSparseMoeBlock)
SHARED_EXPERT_GEMMS = 2  # the shared experts' gate-up and down, beside the routed ones (unless fused into them)


def weight_gemms_per_step(arch: ModelArch, fused_shared_experts: bool = False) -> int:
    """Weight GEMM launches a forward makes on each device: a dense GQA layer 4, a DeepSeek-V3 MoE layer 10 (MLA 5,
    router 1, experts 2, shared expert 2; 8 where the engine runs the shared expert inside the routed experts'
    kernels, fused_shared_experts). Small decode GEMMs take a fixed time each beyond their bytes, so a model with
    more, smaller GEMMs a layer pays more of it. The expert pair is counted as two launches whatever the kernel (some
    fused-MoE kernels run both in one)."""
    attention = MLA_ATTENTION_GEMMS if arch.is_mla else GQA_ATTENTION_GEMMS
    shared = SHARED_EXPERT_GEMMS if arch.shared_experts and not fused_shared_experts else 0
    moe_layers = arch.moe_layers  # an engine launches the router and fused experts even when every expert is active
    return (arch.layers * attention + (arch.layers - moe_layers) * DENSE_MLP_GEMMS
            + moe_layers * (MOE_MLP_GEMMS + shared))


def mla_block_fp8_gemm_shapes(arch: ModelArch, attention_devices: int) -> tuple[tuple[int, int], ...]:
    """(N, K) on one device of an MLA layer's dense linear GEMMs (those a block-scaled FP8 checkpoint runs as
    block-FP8 GEMMs): the down-projection of q and the KV latent (fused_qkv_a_proj_with_mqa, replicated; q_proj and
    kv_a_proj_with_mqa without a q latent), q_b_proj and o_proj (split over the attention group's devices). Empty when
    the catalogue lacks the MLA head widths."""
    if not arch.is_mla or arch.qk_nope_head_dim is None or arch.v_head_dim is None:
        return ()
    latent = (arch.kv_lora_rank or 0) + (arch.qk_rope_head_dim or 0)
    q_width = arch.heads * (arch.qk_nope_head_dim + (arch.qk_rope_head_dim or 0)) // attention_devices
    o_proj = (arch.hidden, arch.heads * arch.v_head_dim // attention_devices)
    if arch.q_lora_rank:
        return ((arch.q_lora_rank + latent, arch.hidden), (q_width, arch.q_lora_rank), o_proj)
    return ((q_width, arch.hidden), (latent, arch.hidden), o_proj)


def shared_expert_gemm_shapes(arch: ModelArch, tp: int) -> tuple[tuple[int, int], ...]:
    """(N, K) on one device of an MoE layer's shared-expert GEMMs run apart from the routed experts: gate-up and down
    of the shared experts' MLP (moe intermediate x shared experts wide), split over the tensor-parallel devices."""
    if not arch.shared_experts or not arch.intermediate:
        return ()
    width = arch.shared_experts * arch.intermediate // tp
    return ((2 * width, arch.hidden), (arch.hidden, width))


@dataclass(frozen=True)
class UntunedGemms:
    """GEMMs (N, K on one device) run on a kernel with one generic configuration (EngineKernels.untuned_block_fp8_gemm):
    a call of M tokens runs ceil(M / tile) x ceil(N / tile) workgroups in waves of compute_units, each taking K / tile
    steps of k_step_s. `attention` runs in each of `layers` layers on its attention group's share of the step's
    tokens (1 / groups of them, dp_attention groups); `moe_mlp` in each of `moe_layers` on all of them."""

    attention: tuple[tuple[int, int], ...]
    layers: int
    tile: int
    k_step_s: float
    compute_units: int
    groups: int = 1
    moe_mlp: tuple[tuple[int, int], ...] = ()
    moe_layers: int = 0

    def call_s(self, tokens: int, n: int, k: int) -> float:
        workgroups = math.ceil(tokens / self.tile) * math.ceil(n / self.tile)
        return math.ceil(workgroups / self.compute_units) * math.ceil(k / self.tile) * self.k_step_s


QUANTIZED_ACTIVATIONS = frozenset({"fp8", "int8", "fp4"})  # GEMMs that quantize their input (int4: weight-only)


@dataclass(frozen=True)
class RooflineModel(StepTimeModel):
    """Roofline of one replica's devices (one pipeline stage of tp devices). FLOPs: 2 x active params per token plus
    attention per query-key pair (ModelArch.attn_flops_per_pair: 4 x layers x q-width, MLA's absorbed form for MLA
    models); bytes: weights once per step plus the K/V read; each device does 1/tp of both. The weight GEMMs and
    attention each take the slower of their compute and memory time (attention at the KV cache's precision), one
    after the other, plus the elementwise work on the whole hidden vector that every device repeats per token and
    layer (ELEMENTWISE_BYTES_PER_HIDDEN, at memory speed: it does not shrink with TP), plus the collectives
    (hardware/collectives.py over the SKU's placement). A step with prompt tokens takes at least
    factors.prefill_floor_s (0 unless `calibrate fit` measured one: an eager prefill's host launch time).

    Parallel degrees, as SGLang and TensorRT-LLM name them: `tp` devices per stage; `dp_attention` attention
    data-parallel groups among them (each runs attention for its own sequences with tp / dp_attention-way tensor
    parallelism, so attention weights are held dp_attention times and an MLA latent is read by one group, not by
    every device); `ep` expert-parallel degree of the MoE layers (0: tp when expert_parallel, else 1).

    Collectives per step:
    - dp_attention == 1 (tensor-parallel attention): two all-reduces per layer (after attention and after the MLP,
      Megatron), plus with ep > 1 a dispatch and a combine all-to-all per MoE layer in which every rank sends every
      token of the step (each rank holds all of them after the all-reduce: vLLM's all-gather path).
    - dp_attention > 1: an all-reduce inside each attention group (when tp / dp_attention > 1) per layer; the dense
      MLP layers (and MoE layers when ep == 1) gather the groups' tokens and scatter them back, priced as one
      all-reduce of the step's tokens over the tp devices; with ep > 1 each MoE layer dispatches and combines each
      rank's own 1/tp share of the tokens to their experts (DeepEP-style all-to-all).
    `expert_imbalance` (busiest expert-parallel rank's load / the mean) scales the routed experts' FLOPs and the
    all-to-all bytes: the step waits for the busiest rank. With dp_attention > 1 a prompt stays whole on one
    attention group, and the step waits for the group holding the most (busiest_rank_s)."""

    arch: ModelArch
    spec: Spec
    factors: RooflineStepTime
    dtype: str
    kv_dtype: str
    tp: int
    expert_parallel: bool = False
    pp: int = 1
    ep: int = 0
    dp_attention: int = 1
    expert_imbalance: float = 1.0
    fused_shared_experts: bool = False  # the shared experts run inside the routed experts' kernels (their launches)
    untuned_gemms: UntunedGemms | None = None  # GEMMs the engine runs on an untuned kernel here (what they add)

    def __post_init__(self) -> None:
        # per-device constants of step_s, computed once
        a = self.arch
        tp, dp = self.tp, self.dp_attention
        ep = (self.ep or (tp if self.expert_parallel else 1)) if a.is_moe else 1
        object.__setattr__(self, "ep_degree", ep)
        expert_bytes = a.expert_weight_bytes(self.dtype)
        # extra attention replicas
        attention_copies = (dp - 1) * a.attention_params_b() * 1e9 * a.dense_bytes_per_param(self.dtype)
        routed_active = a.expert_params_b() * (a.experts_per_token or 0) / (a.num_experts or 1) if a.is_moe else 0.0
        imbalance_flops = 2.0 * routed_active * 1e9 * (self.expert_imbalance - 1.0) if ep > 1 else 0.0
        kv_per_token = a.kv_bytes_per_token(self.kv_dtype)
        # an MLA latent is held whole by every device of its attention group: a group of tp / dp devices reads it
        # for 1/dp of the sequences; K/V heads split over the tp devices, replicated past one head a device
        kv_per_device = kv_per_token / dp if a.is_mla else kv_per_token / a.kv_tp_shards(tp)
        object.__setattr__(self, "flops_per_token", (2.0 * a.active_params_b * 1e9 + imbalance_flops) / tp)
        object.__setattr__(self, "flops_per_pair", a.attn_flops_per_pair() / tp)
        object.__setattr__(self, "kv_bytes_per_token_device", kv_per_device)
        object.__setattr__(self, "fixed_weight_bytes", (a.weight_bytes(self.dtype) - expert_bytes + attention_copies) / tp)
        object.__setattr__(self, "expert_weight_bytes", expert_bytes / tp)
        compute_dtype = a.compute_dtype(self.dtype)  # weight-only FP4 (W4A16) multiplies at the 16-bit rate
        object.__setattr__(self, "peak_flops", self.spec.tflops(compute_dtype) * 1e12 * self.factors.compute_efficiency)
        # attention multiplies queries with cached keys and values: at the KV cache's precision (FP8 attention with
        # an FP8 cache, 16-bit otherwise; an FP4 cache is dequantized to FP8), not at the weights' FP4/INT4 rate
        attention_dtype = "fp8" if self.kv_dtype == "fp4" else self.kv_dtype
        object.__setattr__(self, "attention_peak_flops",
                           self.spec.tflops(attention_dtype) * 1e12 * self.factors.compute_efficiency)
        object.__setattr__(self, "bandwidth", self.spec.hbm_tb_s * 1e12 * self.factors.memory_efficiency)
        activations = "quantized" if compute_dtype in QUANTIZED_ACTIVATIONS else "16-bit"
        object.__setattr__(self, "elementwise_s_per_token",
                           a.layers * a.hidden * ELEMENTWISE_BYTES_PER_HIDDEN[activations] / self.bandwidth)
        object.__setattr__(self, "gemm_launches_s",
                           weight_gemms_per_step(a, self.fused_shared_experts) * self.factors.gemm_latency_s)
        object.__setattr__(self, "communicates", tp > 1 or self.pp > 1 or ep > 1)
        object.__setattr__(self, "_links", Links.of(self.spec) if self.communicates else None)
        object.__setattr__(self, "_decode_fixed", {})
        object.__setattr__(self, "_attention_per_kv", max(self.flops_per_pair / self.attention_peak_flops,  # type: ignore[attr-defined]
                                                          self.kv_bytes_per_token_device / self.bandwidth))  # type: ignore[attr-defined]
        object.__setattr__(self, "_comm", {})
        # busiest_rank_s: per device of one attention group, the FLOPs of its own attention GEMMs per prompt token
        # and of its prompt attention per query-key pair
        group = max(tp // dp, 1)
        object.__setattr__(self, "_attention_flops_per_token_group", 2.0 * a.attention_params_b() * 1e9 / group)
        object.__setattr__(self, "_attention_flops_per_pair_group", a.attn_flops_per_pair() / group)

    def weight_bytes_read(self, tokens: int) -> float:
        """Per device: every non-expert weight, and the experts at least one of the step's tokens routes to
        (uniform routing, ModelArch.expert_coverage)."""
        if self.expert_weight_bytes == 0.0:  # type: ignore[attr-defined]
            return self.fixed_weight_bytes  # type: ignore[attr-defined]
        return self.fixed_weight_bytes + self.expert_weight_bytes * self.arch.expert_coverage(tokens)  # type: ignore[attr-defined]

    def without_prefill_floor(self) -> StepTimeModel:
        if not self.factors.prefill_floor_s:
            return self
        return replace(self, factors=self.factors.model_copy(update={"prefill_floor_s": 0.0}))

    def prefill_launch_s(self) -> float:
        return self.factors.prefill_floor_s or 0.0

    def step_s(self, load: StepLoad) -> float:
        tokens = load.prefill_tokens + load.decode_seqs
        step = self.factors.step_overhead_s + self.linear_s(tokens) + self.attention_s(
            load.kv_tokens_read + load.prefill_attn_pairs, load.kv_tokens_read + load.prefill_tokens)
        if self.communicates:  # type: ignore[attr-defined]
            step = step + self.communication_s(tokens)
        if self.dp_attention > 1 and load.prefill_tokens:
            step = step + self.busiest_rank_s(load)
        if load.prefill_tokens and step < self.factors.prefill_floor_s:
            return self.factors.prefill_floor_s
        return step

    def breakdown_s(self, load: StepLoad) -> dict[str, float]:
        """The step's parts in seconds (for reports and tests, not the hot path); they add up to step_s."""
        tokens = load.prefill_tokens + load.decode_seqs
        out = {"overhead": self.factors.step_overhead_s, "linear": self.linear_s(tokens),
               "attention": self.attention_s(load.kv_tokens_read + load.prefill_attn_pairs,
                                             load.kv_tokens_read + load.prefill_tokens),
               "communication": self.communication_s(tokens) if self.communicates else 0.0,  # type: ignore[attr-defined]
               "busiest_rank": self.busiest_rank_s(load) if self.dp_attention > 1 and load.prefill_tokens else 0.0,
               "launch_wait": 0.0}
        if load.prefill_tokens:  # the GPU waits for the host's kernel launches of an eager prefill forward
            out["launch_wait"] = max(0.0, self.factors.prefill_floor_s - sum(out.values()))
        return out

    def busiest_rank_s(self, load: StepLoad) -> float:
        """What the busiest attention group's whole prompts add to the even split the rest of step_s prices
        (busiest_ranks): its attention GEMMs and prompt attention for the prompt tokens and pairs beyond its 1/dp
        share, over its tp / dp devices, at compute speed (the weights are read anyway). The expert and gathered MLP
        layers stay spread. As hardware/kernels.py AttentionRanks does for the measured tables."""
        dp = self.dp_attention
        most = 0.0
        for tokens, pairs, _ in busiest_ranks(load, dp):
            gemm = (self._attention_flops_per_token_group  # type: ignore[attr-defined]
                    * (tokens - load.prefill_tokens / dp) / self.peak_flops)  # type: ignore[attr-defined]
            attention = (self._attention_flops_per_pair_group  # type: ignore[attr-defined]
                         * (pairs - load.prefill_attn_pairs / dp) / self.attention_peak_flops)  # type: ignore[attr-defined]
            most = max(most, gemm + attention)
        return most

    def linear_s(self, tokens: int) -> float:
        """The weight GEMMs of a step of this many tokens (the slower of their FLOPs, priced as for gemm_ramp_tokens
        more tokens, and their weight reads, plus each GEMM's fixed launch time) and the elementwise work around
        them, which every device does on every token."""
        gemm_tokens = tokens + self.factors.gemm_ramp_tokens if tokens else 0
        return (max(self.flops_per_token * gemm_tokens / self.peak_flops,  # type: ignore[attr-defined]
                    self.weight_bytes_read(tokens) / self.bandwidth)  # type: ignore[attr-defined]
                + self.elementwise_s_per_token * tokens + self.gemm_launches_s  # type: ignore[attr-defined]
                + (self.untuned_extra_s(tokens) if self.untuned_gemms is not None else 0.0))

    def untuned_extra_s(self, tokens: int) -> float:
        """What the GEMMs run on an untuned kernel (untuned_gemms) take beyond the roofline's price of each: its FLOPs
        (with the GEMM ramp) or its weight bytes, whichever is slower, plus its launch."""
        u = self.untuned_gemms
        if u is None or not tokens:
            return 0.0
        group_tokens = math.ceil(tokens / u.groups)
        return (u.layers * sum(self._untuned_call_extra_s(u, group_tokens, n, k) for n, k in u.attention)
                + u.moe_layers * sum(self._untuned_call_extra_s(u, tokens, n, k) for n, k in u.moe_mlp))

    def _untuned_call_extra_s(self, u: UntunedGemms, tokens: int, n: int, k: int) -> float:
        priced = max(2.0 * (tokens + self.factors.gemm_ramp_tokens) * n * k / self.peak_flops,  # type: ignore[attr-defined]
                     n * k * BYTES_PER_PARAM[self.dtype] / self.bandwidth)  # type: ignore[attr-defined]
        return max(0.0, u.call_s(tokens, n, k) - priced - self.factors.gemm_latency_s)

    def attention_s(self, pairs: float, kv_tokens: float) -> float:
        """Attention over the cache: the slower of its query-key FLOPs and the KV bytes read (and written for the
        prompt tokens). A roofline per phase, not over the whole step: the GEMMs and attention run one after the
        other, so a step with compute-bound GEMMs and a memory-bound KV read pays both (a single max over the step
        hid the long-context KV read of a large decode batch behind its GEMMs)."""
        return max(self.flops_per_pair * pairs / self.attention_peak_flops,  # type: ignore[attr-defined]
                   self.kv_bytes_per_token_device * kv_tokens / self.bandwidth)  # type: ignore[attr-defined]

    def communication_s(self, tokens: int) -> float:
        """All collectives of one step of this many tokens (cached per token count)."""
        cached = self._comm.get(tokens)  # type: ignore[attr-defined]
        if cached is None:
            cached = self._comm[tokens] = self.allreduce_s(tokens) + self.all_to_all_s(tokens) + self.pipeline_p2p_s(tokens)  # type: ignore[attr-defined]
        return cached

    def decode_affine(self, decode_seqs: int, kv0: float, kv_step: float, n_max: int) -> tuple[float, float, int]:
        # a decode-only step of a fixed batch: the GEMMs and collectives are fixed, attention is max(FLOPs, bytes)
        # of the KV tokens read, both proportional to them, so every step of the stretch lies on one line
        fixed = self._decode_fixed.get(decode_seqs)  # type: ignore[attr-defined]
        if fixed is None:
            fixed = self.factors.step_overhead_s + self.linear_s(decode_seqs)
            if self.communicates:  # type: ignore[attr-defined]
                fixed += self.communication_s(decode_seqs)
            self._decode_fixed[decode_seqs] = fixed  # type: ignore[attr-defined]
        per_kv = self._attention_per_kv  # type: ignore[attr-defined]
        return fixed + per_kv * kv0, per_kv * kv_step, n_max

    @property
    def links(self) -> Links:
        links = self._links  # type: ignore[attr-defined]
        if links is None:
            raise ValueError("parallelism across devices needs spec.interconnect_gb_s")
        return links

    def _activation_bytes(self, tokens: float) -> float:
        return tokens * self.arch.hidden * BYTES_PER_PARAM["bf16"]

    def all_to_all_s(self, tokens: int) -> float:
        """Expert parallelism: each MoE layer sends the tokens' activations to their experts and back (dispatch +
        combine), each token to experts_per_token of them, over the ep devices (the dense first layers send
        nothing). Without attention data parallelism every rank sends every token; with it, its 1/tp share."""
        ep = self.ep_degree  # type: ignore[attr-defined]
        if ep == 1 or tokens == 0:
            return 0.0
        share = tokens if self.dp_attention == 1 else tokens / self.tp
        sent = self._activation_bytes(share) * (self.arch.experts_per_token or 1) * self.expert_imbalance
        return self.arch.moe_layers * 2 * all_to_all_s(sent, ep, self.links)

    def pipeline_p2p_s(self, tokens: int) -> float:
        """Pipeline parallelism: activations cross pp-1 stage boundaries per pass, those between scale-up domains
        over the scale-out network."""
        if self.pp == 1 or tokens == 0:
            return 0.0
        msg = self._activation_bytes(tokens)
        links = self.links
        crossing = links.domains(self.tp * self.pp) - 1 if self.tp <= links.domain_devices else self.pp - 1
        inside = (self.pp - 1) - crossing
        return inside * p2p_s(msg, links, False) + (crossing * p2p_s(msg, links, True) if crossing else 0.0)

    def allreduce_s(self, tokens: int) -> float:
        """The step's all-reduces (see the class docstring): 2 per layer over tp without attention data
        parallelism; with it, one per layer inside each attention group and one per MLP layer that is not expert
        parallel over all tp devices."""
        if tokens == 0:
            return 0.0
        a, tp, dp = self.arch, self.tp, self.dp_attention
        if dp == 1:
            if tp == 1:
                return 0.0
            return ALLREDUCES_PER_LAYER * a.layers * allreduce_s(self._activation_bytes(tokens), tp, self.links)
        group = tp // dp
        attention = a.layers * allreduce_s(self._activation_bytes(tokens / dp), group, self.links) if group > 1 else 0.0
        tp_mlp_layers = a.layers if self.ep_degree == 1 else a.layers - a.moe_layers  # type: ignore[attr-defined]
        return attention + tp_mlp_layers * allreduce_s(self._activation_bytes(tokens), tp, self.links)
