"""Training step time and memory from hardware: a model, a parallel layout and a SKU give tokens/s.

One optimizer step of a data-parallel x pipeline-parallel x tensor-parallel (dp x pp x tp) job:

- compute: tokens per step x hardware FLOPs per token / (devices x peak x GEMM efficiency). Model FLOPs per token
  are 6 x active params + 12 x layers x hidden x seq (Kaplan et al. 2020; Narayanan et al. 2021, the formula MFU
  figures use); activation checkpointing recomputes the forward, adding 2 x params + 4 x layers x hidden x seq.
  The GEMM efficiency is the SKU's MFU prior (hardware profile `training`), the share of the dense peak the
  kernels reach while computing.
- pipeline bubble: the 1F1B schedule idles (pp - 1) / (microbatches x virtual stages) of the compute time
  (Narayanan et al. 2021, interleaved schedule).
- tensor-parallel all-reduces: 2 per layer forward and 2 backward (3 x 2 with recomputation) of one microbatch's
  activations (tokens x hidden x 2 bytes) over the tp group on the scale-up link (hardware/collectives.py).
- data-parallel gradient traffic once per step: a ring all-reduce of this device's gradient shard (params / (tp x
  pp), bf16) over dp devices, on the scale-out NIC when the job spans nodes; ZeRO-1/2 (reduce-scatter gradients,
  all-gather parameters) moves the same bytes, ZeRO-3 gathers parameters again for the backward (x 1.5).
- overlap: a fraction of the tp communication (Megatron's --tp-comm-overlap) and of the dp communication
  (--overlap-grad-reduce / --overlap-param-gather) hides behind compute; the rest is exposed.
  step = compute + bubble + exposed communication.

Memory per device (Rajbhandari et al. 2020, ZeRO; Korthikanti et al. 2022 for activations): bf16 weights (2
bytes/param), fp32 gradients (4), Adam fp32 master weights and two moments (12), of params / (tp x pp); ZeRO stage
1 divides the optimizer states by dp, 2 the gradients too, 3 the weights too. Activations per layer and
microbatch: seq x microbatch sequences x hidden x 34 bytes / tp (sequence parallelism, flash attention: no
seq^2 term), or 2 bytes per element of the layer input with full checkpointing (plus one layer's full set during
its recomputation); the first pipeline stage holds min(microbatches, pp) microbatches of its layers in flight.

Closed forms, so tests check them by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simfactory.config.profile import ModelArch, Spec
from simfactory.hardware.collectives import Links, allreduce_s, ring_allreduce_s

WEIGHT_BYTES_PER_PARAM = 2.0  # bf16 weights (fp8 training keeps bf16 weights; only the GEMMs run in fp8)
GRAD_BYTES_PER_PARAM = 4.0  # fp32 gradient accumulation (Megatron-LM's default with the distributed optimizer)
OPTIMIZER_BYTES_PER_PARAM = 12.0  # Adam: fp32 master weights + first and second moments (ZeRO paper, K = 12)
GRAD_COMM_BYTES_PER_PARAM = 2.0  # gradients reduced in bf16 (Megatron-LM's default, grad_reduce_in_fp32 off)
ACTIVATION_BYTES_PER_TOKEN_HIDDEN = 34.0  # Korthikanti et al. 2022, eq. 2, with sequence parallelism over tp
CHECKPOINT_BYTES_PER_TOKEN_HIDDEN = 2.0  # full checkpointing keeps each layer's bf16 input only
TP_ALLREDUCES_PER_LAYER = 4  # Megatron: 2 forward (after attention, after the MLP) + 2 backward
ZERO3_COMM_FACTOR = 1.5  # ZeRO-3: 3 x (n-1)/n x M against the 2 x of an all-reduce (Rajbhandari et al. 2020)


@dataclass(frozen=True)
class Layout:
    """A training job's parallel layout and batch: the shape of one optimizer step."""

    tp: int
    pp: int
    dp: int
    seq_len_tokens: int
    global_batch_tokens: float
    microbatches: int  # per data-parallel replica and step
    virtual_stages: int = 1
    zero_stage: int = 0
    activation_checkpointing: bool = False
    tp_overlap_fraction: float = 0.0
    dp_overlap_fraction: float = 0.0

    @property
    def devices(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def microbatch_tokens(self) -> float:
        """Tokens in one microbatch of one data-parallel replica."""
        return self.global_batch_tokens / (self.dp * self.microbatches)


@dataclass(frozen=True)
class StepBreakdown:
    """One optimizer step: its parts in seconds, and what they give."""

    compute_s: float
    pp_bubble_s: float
    tp_comm_s: float
    dp_comm_s: float
    exposed_comm_s: float
    step_s: float
    tokens_per_s: float
    mfu: float  # model FLOPs per second over the devices' dense peak at the precision

    @property
    def parts(self) -> dict[str, float]:
        return {"compute_s": self.compute_s, "pp_bubble_s": self.pp_bubble_s, "tp_comm_s": self.tp_comm_s,
                "dp_comm_s": self.dp_comm_s, "exposed_comm_s": self.exposed_comm_s}


@dataclass(frozen=True)
class MemoryPerDevice:
    weights_bytes: float
    grads_bytes: float
    optimizer_bytes: float
    activations_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.weights_bytes + self.grads_bytes + self.optimizer_bytes + self.activations_bytes


def model_flops_per_token(arch: ModelArch, seq_len_tokens: int) -> float:
    """6 x active params + 12 x layers x hidden x seq: forward and backward, attention scores included."""
    return 6.0 * arch.active_params_b * 1e9 + 12.0 * arch.layers * arch.hidden * seq_len_tokens


def hardware_flops_per_token(arch: ModelArch, seq_len_tokens: int, activation_checkpointing: bool) -> float:
    """Model FLOPs, plus the forward again (a third of them) when activations are recomputed."""
    model = model_flops_per_token(arch, seq_len_tokens)
    return model * 4.0 / 3.0 if activation_checkpointing else model


def pipeline_bubble_fraction(pp: int, microbatches: int, virtual_stages: int = 1) -> float:
    """Idle share of the ideal compute time in a 1F1B pipeline: (pp - 1) / (microbatches x virtual stages)."""
    return (pp - 1) / (microbatches * virtual_stages)


def step_breakdown(arch: ModelArch, spec: Spec, precision: str, layout: Layout, gemm_efficiency: float,
                   links: Links | None = None) -> StepBreakdown:
    """Seconds per optimizer step and tokens/s (module docstring). `links`: the SKU's placement (Links.of(spec))."""
    lay = layout
    peak_flops = spec.tflops(precision) * 1e12
    tokens = lay.global_batch_tokens
    hw_flops = tokens * hardware_flops_per_token(arch, lay.seq_len_tokens, lay.activation_checkpointing)
    compute_s = hw_flops / (lay.devices * peak_flops * gemm_efficiency)
    bubble_s = compute_s * pipeline_bubble_fraction(lay.pp, lay.microbatches, lay.virtual_stages)
    tp_s = dp_s = 0.0
    if lay.tp > 1 or lay.dp > 1:
        links = links or Links.of(spec)
    if lay.tp > 1:
        assert links is not None
        msg_bytes = lay.microbatch_tokens * arch.hidden * 2.0
        per_layer = TP_ALLREDUCES_PER_LAYER * (1.5 if lay.activation_checkpointing else 1.0)
        tp_s = lay.microbatches * (arch.layers / lay.pp) * per_layer * allreduce_s(msg_bytes, lay.tp, links)
    if lay.dp > 1:
        assert links is not None
        grad_bytes = arch.params_b * 1e9 / (lay.tp * lay.pp) * GRAD_COMM_BYTES_PER_PARAM
        dp_s = dp_ring_s(grad_bytes, lay.dp, lay.devices, links)
        if lay.zero_stage == 3:
            dp_s *= ZERO3_COMM_FACTOR
    exposed_s = (1.0 - lay.tp_overlap_fraction) * tp_s + (1.0 - lay.dp_overlap_fraction) * dp_s
    step_s = compute_s + bubble_s + exposed_s
    model_flops = tokens * model_flops_per_token(arch, lay.seq_len_tokens)
    return StepBreakdown(compute_s, bubble_s, tp_s, dp_s, exposed_s, step_s, tokens / step_s,
                         model_flops / step_s / (lay.devices * peak_flops))


def dp_ring_s(msg_bytes: float, dp: int, devices: int, links: Links) -> float:
    """The data-parallel ring: on the scale-up link when the whole job fits one scale-up domain, else each rail's
    ring crosses nodes and the NIC (scale-out) sets its pace."""
    if devices <= links.domain_devices:
        return ring_allreduce_s(msg_bytes, dp, links.allreduce_bytes_per_s(dp), links.scale_up_latency_s)
    return ring_allreduce_s(msg_bytes, dp, links._out(), links.scale_out_latency_s)


def memory_per_device(arch: ModelArch, layout: Layout) -> MemoryPerDevice:
    """Bytes one device of the first pipeline stage holds (module docstring)."""
    lay = layout
    params = arch.params_b * 1e9 / (lay.tp * lay.pp)
    weights = params * WEIGHT_BYTES_PER_PARAM / (lay.dp if lay.zero_stage >= 3 else 1)
    grads = params * GRAD_BYTES_PER_PARAM / (lay.dp if lay.zero_stage >= 2 else 1)
    optimizer = params * OPTIMIZER_BYTES_PER_PARAM / (lay.dp if lay.zero_stage >= 1 else 1)
    token_hidden = lay.microbatch_tokens * arch.hidden / lay.tp
    layers_per_stage = math.ceil(arch.layers / lay.pp)
    in_flight = min(lay.microbatches, lay.pp)
    full_layer = token_hidden * ACTIVATION_BYTES_PER_TOKEN_HIDDEN
    if lay.activation_checkpointing:
        activations = in_flight * layers_per_stage * token_hidden * CHECKPOINT_BYTES_PER_TOKEN_HIDDEN + full_layer
    else:
        activations = in_flight * layers_per_stage * full_layer
    return MemoryPerDevice(weights, grads, optimizer, activations)


def calibrated_gemm_efficiency(arch: ModelArch, spec: Spec, precision: str, layout: Layout, measured_mfu: float,
                               links: Links | None = None) -> float:
    """The GEMM efficiency at which step_breakdown reproduces a measured MFU for this layout: the step the
    measurement implies (model FLOPs / (MFU x devices x peak)) less the exposed communication, shared between
    compute and bubble (both scale with 1 / efficiency). Raises ValueError when the communication alone exceeds
    the measured step."""
    at_one = step_breakdown(arch, spec, precision, layout, 1.0, links)
    model_flops = layout.global_batch_tokens * model_flops_per_token(arch, layout.seq_len_tokens)
    step_s = model_flops / (measured_mfu * layout.devices * spec.tflops(precision) * 1e12)
    busy_s = step_s - at_one.exposed_comm_s
    if busy_s <= 0:
        raise ValueError(f"the exposed communication ({at_one.exposed_comm_s:.3g} s) exceeds the measured step "
                         f"({step_s:.3g} s)")
    return (at_one.compute_s + at_one.pp_bubble_s) / busy_s
