"""Speculative decoding as a step-time model: k draft tokens, one verify pass, E tokens accepted.

With per-token acceptance probability a and k speculative tokens, the expected tokens produced per
verify step is E = (1 - a^(k+1)) / (1 - a) (Leviathan et al. 2023, "Fast Inference from Transformers via
Speculative Decoding", eq. 1). A verify pass computes k+1 query tokens per sequence (the dense FLOPs grow
k+1 times; weights and the KV cache are still read once), and drafting costs k sequential draft steps.
At small batch the step is memory-bound, so verifying k+1 tokens costs about as much as 1 and the
speed-up approaches E / (1 + draft cost); at large batch it is compute-bound and the k+1 x FLOPs eat
the gain: the model shows that crossover.

The engine still advances each decode sequence one token per step; this model returns the time per
*produced* token: prefill work at face value, the decode share of the step divided by E.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from simfactory.config.profile import ModelArch

from simfactory.hardware.step_time import StepLoad, StepTimeModel


def expected_tokens_per_step(acceptance: float, k: int) -> float:
    """E = (1 - a^(k+1)) / (1 - a); k + 1 when every draft token is accepted."""
    if acceptance >= 1.0:
        return float(k + 1)
    return (1.0 - acceptance ** (k + 1)) / (1.0 - acceptance)


def expected_tokens_by_position(acceptances: Sequence[float]) -> float:
    """E = 1 + sum over i of p_1 x ... x p_i, with p_i the acceptance of draft i once drafts 1..i-1 were accepted
    (a step stops at the first rejection; the verify pass always yields one token). Constant p gives the geometric
    sum of expected_tokens_per_step."""
    expected, reach = 1.0, 1.0
    for p in acceptances:
        reach *= p
        expected += reach
    return expected


def mtp_draft_fraction(arch: ModelArch) -> float:
    """One multi-token-prediction draft as a share of a target decode step: the MTP module is one more decoder layer
    that shares the model's output head (DeepSeek-V3 technical report, section 2.2,
    https://arxiv.org/abs/2412.19437), so its active weights are a layer's share plus the LM head (vocab x hidden)
    over the model's active parameters."""
    vocab = arch.vocab or 0
    return (arch.active_params_b / arch.layers + vocab * arch.hidden / 1e9) / arch.active_params_b


@dataclass(frozen=True)
class SpeculativeModel(StepTimeModel):
    target: StepTimeModel
    k: int
    acceptance: float
    draft: StepTimeModel | None = None  # a draft model's step time (one draft token per sequence)
    draft_fraction: float = 0.0  # or: each draft step costs this fraction of a plain target decode step
    acceptance_by_position: tuple[float, ...] | None = None  # conditional acceptance per draft position
    # the verify pass and the drafts run as CUDA graphs: priced without the target's eager-prefill floor, which a
    # step's real prompt tokens still pay (derived: target.without_prefill_floor(), the target itself without one)
    graphed: StepTimeModel = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "graphed", self.target.without_prefill_floor())

    @property
    def tokens_per_step(self) -> float:
        if self.acceptance_by_position is not None:
            return expected_tokens_by_position(self.acceptance_by_position)
        return expected_tokens_per_step(self.acceptance, self.k)

    def prefill_launch_s(self) -> float:
        return self.target.prefill_launch_s()  # real prompt tokens launch as the target's prefill does

    def absorbed_extend(self) -> tuple[float, float, float]:
        return self.target.absorbed_extend()  # real prompt tokens: the target's prefill

    def prefix_up_s_per_token(self) -> float:
        return self.target.prefix_up_s_per_token()

    def mla_extend(self, load: StepLoad) -> tuple[float, str]:
        return self.target.mla_extend(load)

    def without_prefill_floor(self) -> StepTimeModel:
        if not self.target.prefill_launch_s():
            return self
        return replace(self, target=self.target.without_prefill_floor())

    def draft_s(self, load: StepLoad) -> float:
        if load.decode_seqs == 0:
            return 0.0
        one = StepLoad(decode_seqs=load.decode_seqs, kv_tokens_read=load.kv_tokens_read)
        per_step = self.draft.step_s(one) if self.draft is not None else self.draft_fraction * self.graphed.step_s(one)
        return self.k * per_step

    def verify_s(self, load: StepLoad) -> float:
        k = self.k
        # the k draft tokens of each decoding sequence are verified as prompt tokens after its context: they stay with
        # their sequence (not among the step's prompt chunks), and the prompts keep their chunks and computed tokens
        return self.graphed.step_s(load._replace(
            prefill_tokens=load.prefill_tokens + k * load.decode_seqs,
            prefill_attn_pairs=load.prefill_attn_pairs + k * load.kv_tokens_read,
            chunks=load.chunks if load.chunks is not None or load.prefill_tokens else (),
        ))

    def step_s(self, load: StepLoad) -> float:
        if load.decode_seqs == 0:
            return self.target.step_s(load)
        total = self.verify_s(load) + self.draft_s(load)
        prompts = load._replace(decode_seqs=0, kv_tokens_read=0.0)
        prefill_only = self.graphed.step_s(prompts) if load.prefill_tokens else 0.0
        step = prefill_only + (total - prefill_only) / self.tokens_per_step
        if load.prefill_tokens and self.graphed is not self.target:  # real prompt tokens: the eager floor holds
            return max(step, self.target.step_s(prompts))
        return step
