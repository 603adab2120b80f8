"""Time of one continuous-batching iteration, as a function of what the batch holds.

Two models share one interface, `step_s(load)`:
- Roofline: overhead + max(compute time, memory time) + tensor-parallel all-reduce time.
  A lower bound scaled by efficiency factors that are fitted to published measurements.
- Linear: overhead + coefficients x load, fitted to measurements by calibration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from simfactory.config.profile import (
    BYTES_PER_PARAM,
    LinearStepTime,
    ModelArch,
    RooflineStepTime,
    Spec,
)

ALLREDUCES_PER_LAYER = 2  # Megatron-style TP: one after attention, one after the MLP (Shoeybi et al. 2019)


@dataclass(frozen=True, slots=True)
class StepLoad:
    """What one engine iteration computes.

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

    def decode_steps_fn(self, decode_seqs: int) -> Callable[[Iterable[float]], list[float]]:
        """KV tokens read of consecutive decode-only steps of this many sequences -> their step times (the
        engine's fast-forward plans a stretch at once); models hoist the constant terms and inline the rest in one
        comprehension, keeping step_s's arithmetic exactly."""
        return lambda kvs: [self.step_s(StepLoad(0, decode_seqs, kv, 0)) for kv in kvs]


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

    def decode_steps_fn(self, decode_seqs: int) -> Callable[[Iterable[float]], list[float]]:
        s = self.spec
        head = s.overhead_s + s.s_per_prefill_token * 0 + s.s_per_decode_seq * decode_seqs
        per_kv, tail = s.s_per_kv_token, s.s_per_attn_pair * 0
        return lambda kvs: [head + per_kv * kv + tail for kv in kvs]


@dataclass(frozen=True)
class RooflineModel(StepTimeModel):
    """Roofline of one TP group. FLOPs: 2 x active params per token plus attention (4 x layers x q-width
    per query-key pair); bytes: weights once per step plus the K/V read. Per-device work is divided by TP;
    each layer pays two ring all-reduces of the step's activations over the interconnect."""

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
        q_width = a.heads * a.head_dim
        consts = (
            2.0 * a.active_params_b * 1e9,  # dense FLOPs per token
            4.0 * a.layers * q_width,  # attention FLOPs per query-key pair
            a.kv_bytes_per_token(self.kv_dtype),
            a.weight_bytes(self.dtype),
            self.spec.tflops(self.dtype) * 1e12 * self.factors.compute_efficiency,
            self.spec.hbm_tb_s * 1e12 * self.factors.memory_efficiency,
            a.is_moe,
            self.tp > 1 or self.pp > 1 or (self.expert_parallel and a.is_moe),  # any communication term
        )
        object.__setattr__(self, "_consts", consts)

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

    def decode_steps_fn(self, decode_seqs: int) -> Callable[[Iterable[float]], list[float]]:
        # step_s with prefill_tokens = prefill_attn_pairs = 0, the same operations in the same order;
        # max(c, m) is written m if m > c else c (max keeps the first of equals)
        dense, per_pair, kv_per_token, weights, peak_flops, bandwidth, moe, _ = self._consts  # type: ignore[attr-defined]
        tokens = decode_seqs
        dense_s = dense * tokens
        weight_bytes = weights * self.arch.weight_fraction_read(tokens) if moe else weights * 1.0
        tp, overhead = self.tp, self.factors.step_overhead_s
        ar, a2a, p2p = self.allreduce_s(tokens), self.all_to_all_s(tokens), self.pipeline_p2p_s(tokens)

        def steps_s(kvs: Iterable[float]) -> list[float]:
            return [overhead + (m if (m := (weight_bytes + kv_per_token * kv) / tp / bandwidth)
                                > (c := (dense_s + per_pair * kv) / tp / peak_flops) else c) + ar + a2a + p2p
                    for kv in kvs]

        return steps_s

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
        return self.arch.layers * per_layer

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
