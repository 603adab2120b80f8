"""Time of one continuous-batching iteration, as a function of what the batch holds.

Two models share one interface, `step_s(load)`:
- Roofline: overhead + max(compute time, memory time) + tensor-parallel all-reduce time.
  A lower bound scaled by efficiency factors that are fitted to published measurements.
- Linear: overhead + coefficients x load, fitted to measurements by calibration.
"""

from __future__ import annotations

import math
from typing import NamedTuple
from dataclasses import dataclass

from simfactory.config.profile import (
    BYTES_PER_PARAM,
    LinearStepTime,
    ModelArch,
    RooflineStepTime,
    Spec,
)

ALLREDUCES_PER_LAYER = 2  # Megatron-style TP: one after attention, one after the MLP (Shoeybi et al. 2019)


class StepLoad(NamedTuple):
    """What one engine iteration computes (a named tuple: the engine builds one per step, and a frozen dataclass
    costs several times as much to construct).

    prefill_tokens: prompt tokens computed in this step (all prefill chunks together)
    decode_seqs: sequences generating one token each
    kv_tokens_read: context tokens whose K/V attention reads, summed over decode sequences
    prefill_attn_pairs: query-key pairs of the prefill chunks: sum of chunk * (context_before + (chunk + 1) / 2)
    """

    prefill_tokens: int = 0
    decode_seqs: int = 0
    kv_tokens_read: float = 0.0
    prefill_attn_pairs: float = 0.0


class StepTimeModel:
    """Interface: seconds for one iteration with the given load."""

    def step_s(self, load: StepLoad) -> float:  # pragma: no cover - interface
        raise NotImplementedError

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

    def decode_affine(self, decode_seqs: int, kv0: float, kv_step: float, n_max: int) -> tuple[float, float, int]:
        s = self.spec
        a_s = s.overhead_s + s.s_per_decode_seq * decode_seqs + s.s_per_kv_token * kv0
        b_s = s.s_per_kv_token * kv_step
        return a_s, b_s, n_max


@dataclass(frozen=True)
class RooflineModel(StepTimeModel):
    """Roofline of one TP group. FLOPs: 2 x active params per token plus attention per query-key pair
    (ModelArch.attn_flops_per_pair: 4 x layers x q-width, MLA's absorbed form for MLA models); bytes: weights once
    per step plus the K/V read. Per-device work is divided by TP; each layer pays two ring all-reduces of the
    step's activations over the interconnect."""

    arch: ModelArch
    spec: Spec
    factors: RooflineStepTime
    dtype: str
    kv_dtype: str
    tp: int
    expert_parallel: bool = False
    pp: int = 1

    def __post_init__(self) -> None:
        # constants of step_s, computed once with the same operations in the same order (identical results)
        a = self.arch
        consts = (
            2.0 * a.active_params_b * 1e9,  # dense FLOPs per token
            a.attn_flops_per_pair(),  # attention FLOPs per query-key pair (4 x layers x q-width unless MLA)
            # KV bytes each device reads per token, times tp (step_s divides by tp): its KV heads' share, or for
            # MLA the whole latent, which every TP rank holds and reads
            a.kv_bytes_per_token(self.kv_dtype) * (self.tp / a.kv_tp_shards(self.tp)) if a.is_mla
            else a.kv_bytes_per_token(self.kv_dtype),
            a.weight_bytes(self.dtype),
            self.spec.tflops(self.dtype) * 1e12 * self.factors.compute_efficiency,
            self.spec.hbm_tb_s * 1e12 * self.factors.memory_efficiency,
            a.is_moe,
            self.tp > 1 or self.pp > 1 or (self.expert_parallel and a.is_moe),  # any communication term
        )
        object.__setattr__(self, "_consts", consts)
        object.__setattr__(self, "_decode_coeffs", {})

    def step_s(self, load: StepLoad) -> float:
        dense, per_pair, kv_per_token, weights, peak_flops, bandwidth, moe, comm = self._consts  # type: ignore[attr-defined]
        tokens = load.prefill_tokens + load.decode_seqs
        attn_pairs = load.kv_tokens_read + load.prefill_attn_pairs
        flops = dense * tokens + per_pair * attn_pairs
        kv_bytes = kv_per_token * (load.kv_tokens_read + load.prefill_tokens)
        weight_bytes = weights * self.arch.weight_fraction_read(tokens) if moe else weights * 1.0
        compute_s = flops / self.tp / peak_flops
        memory_s = (weight_bytes + kv_bytes) / self.tp / bandwidth
        step = self.factors.step_overhead_s + max(compute_s, memory_s)
        if comm:
            step = step + self.allreduce_s(tokens) + self.all_to_all_s(tokens) + self.pipeline_p2p_s(tokens)
        return step

    def decode_affine(self, decode_seqs: int, kv0: float, kv_step: float, n_max: int) -> tuple[float, float, int]:
        # step_s with prefill_tokens = prefill_attn_pairs = 0: memory time m and compute time c are both affine in
        # the KV tokens read, so the steps are affine up to where max(c, m) switches from one to the other
        coeffs = self._decode_coeffs.get(decode_seqs)  # type: ignore[attr-defined]
        if coeffs is None:
            coeffs = self._decode_coeffs[decode_seqs] = self._decode_coefficients(decode_seqs)  # type: ignore[attr-defined]
        m_fixed, m_per_kv, c_fixed, c_per_kv, fixed = coeffs
        m0 = m_fixed + m_per_kv * kv0
        m_step = m_per_kv * kv_step
        c0 = c_fixed + c_per_kv * kv0
        c_step = c_per_kv * kv_step
        gap0, gap_step = m0 - c0, m_step - c_step  # step i is memory-bound while gap0 + gap_step * i > 0
        n = n_max
        if gap0 > 0.0:
            a_s, b_s = m0, m_step
            if gap_step < 0.0:
                n = min(n, max(1, math.ceil(gap0 / -gap_step)))
        else:
            a_s, b_s = c0, c_step
            if gap_step > 0.0:
                n = min(n, math.floor(-gap0 / gap_step) + 1)
        return a_s + fixed, b_s, n

    def _decode_coefficients(self, decode_seqs: int) -> tuple[float, float, float, float, float]:
        """Memory time = m_fixed + m_per_kv x KV tokens read, compute time likewise, and the fixed per-step
        terms (overhead, communication) of a decode-only step of this many sequences (cached per batch size)."""
        dense, per_pair, kv_per_token, weights, peak_flops, bandwidth, moe, comm = self._consts  # type: ignore[attr-defined]
        tokens = decode_seqs
        weight_bytes = weights * self.arch.weight_fraction_read(tokens) if moe else weights * 1.0
        fixed = self.factors.step_overhead_s
        if comm:
            fixed += self.allreduce_s(tokens) + self.all_to_all_s(tokens) + self.pipeline_p2p_s(tokens)
        return (weight_bytes / self.tp / bandwidth, kv_per_token / self.tp / bandwidth,
                dense * tokens / self.tp / peak_flops, per_pair / self.tp / peak_flops, fixed)

    def link_bytes_per_s(self) -> float:
        link = self.spec.interconnect_gb_s
        if link is None:
            raise ValueError("parallelism across devices needs spec.interconnect_gb_s")
        return link * 1e9

    def all_to_all_s(self, tokens: int) -> float:
        """Expert parallelism over the TP group: each MoE layer sends every token's activations to its experts
        and back (dispatch + combine), (ep-1)/ep of them leaving the device."""
        ep = self.tp
        if not self.expert_parallel or ep == 1 or tokens == 0 or not self.arch.is_moe:
            return 0.0
        msg = tokens * self.arch.hidden * BYTES_PER_PARAM["bf16"] * (self.arch.experts_per_token or 1)
        per_layer = 2 * (ep - 1) / ep * msg / self.link_bytes_per_s() + 2 * self.spec.interconnect_latency_s
        return self.arch.moe_layers * per_layer  # the dense layers (first dense_layers) send nothing

    def pipeline_p2p_s(self, tokens: int) -> float:
        """Pipeline parallelism: activations cross pp-1 stage boundaries per pass."""
        if self.pp == 1 or tokens == 0:
            return 0.0
        msg = tokens * self.arch.hidden * BYTES_PER_PARAM["bf16"]
        return (self.pp - 1) * (msg / self.link_bytes_per_s() + self.spec.interconnect_latency_s)

    def allreduce_s(self, tokens: int) -> float:
        """Ring all-reduce of tokens x hidden activations: 2 (tp-1)/tp of the bytes over the link, per call."""
        if self.tp == 1 or tokens == 0:
            return 0.0
        msg_bytes = tokens * self.arch.hidden * BYTES_PER_PARAM["bf16"]
        per_call = 2 * (self.tp - 1) / self.tp * msg_bytes / self.link_bytes_per_s() + self.spec.interconnect_latency_s
        return ALLREDUCES_PER_LAYER * self.arch.layers * per_call
