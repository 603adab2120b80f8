"""Published training runs that fit and check the training-from-hardware model (hardware/training.py).

The MFU prior (GEMM efficiency) of a SKU is fitted to one published run and checked against a different one:
never fitted to the run it is checked on.

- calibration, bf16 H100: MosaicML llm-foundry's MPT-70B benchmark (64 H100 80GB, BF16, FSDP FULL_SHARD, activation
  checkpointing, 2,048-token sequences, 4,194,304-token batch, MFU 42.57%).
- calibration, fp8 H100: NVIDIA Megatron-Bridge's Llama-3-70B pre-training on 64 H100 (FP8 current scaling, TP4
  PP8 VP5, GBS 128 x 8,192 tokens, 719 model TFLOP/s per GPU).
- validation, bf16 H100: Meta's Llama 3 405B pre-training ("The Llama 3 Herd of Models", arXiv 2407.21783, Table
  4): 8,192 H100 at TP8 PP16 DP64 with 43% BF16 MFU (430 TFLOP/s/GPU), 16,384 at TP8 PP16 DP128 with 41% (400),
  16M-token batches of 8,192-token sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

from simfactory.config.profile import HardwareProfile, ModelArch
from simfactory.hardware.training import Layout, calibrated_gemm_efficiency, step_breakdown

LLM_FOUNDRY = ("https://github.com/mosaicml/llm-foundry/blob/061f2c7ce64e655100286584a7629e2a09f827ba/scripts/train/"
               "benchmarking/README.md (H100 80GB BF16 table, row 70b / 2048 / 64 GPUs)")
MEGATRON_BRIDGE = ("https://github.com/NVIDIA-NeMo/Megatron-Bridge/blob/00b7660be0254ac6f95f44164ddd0c3e9cc798ed/docs/"
                   "performance-summary.md (25.11 NeMo container, DGX-H100, LLAMA3_70B FP8-CS)")
LLAMA3 = "https://arxiv.org/abs/2407.21783 (The Llama 3 Herd of Models, Table 4)"
DP_OVERLAP = 0.5  # the job default (resolve/training.py DEFAULT_DP_OVERLAP_FRACTION), used on both sides
VIRTUAL_STAGES_LLAMA3 = 4  # assumption: ~2 layers per virtual chunk, as Megatron-Bridge's 405B H100 recipe (PP8 VP8)

# MPT-70B as llm-foundry benchmarked it (scripts/train/yamls/pretrain/mpt-70b.yaml: d_model 8192, 64 heads, 80
# layers; NumParams 64,862,437,376 in the benchmark table)
MPT_70B = ModelArch(id="mpt-70b", params_b=64.862437376, active_params_b=64.862437376, layers=80, hidden=8192,
                    heads=64, kv_heads=64, head_dim=128, source=LLM_FOUNDRY, as_of="2023-08")


@dataclass(frozen=True)
class PublishedRun:
    name: str
    model: str  # a models.yaml id, or mpt-70b (MPT_70B above)
    precision: str
    layout: Layout
    mfu: float  # measured, model FLOPs over the dense peak at the precision
    source: str


CALIBRATION = {
    "bf16": PublishedRun("llm-foundry MPT-70B, 64 H100", "mpt-70b", "bf16",
                         Layout(tp=1, pp=1, dp=64, seq_len_tokens=2048, global_batch_tokens=4_194_304, microbatches=4,
                                zero_stage=3, activation_checkpointing=True, dp_overlap_fraction=DP_OVERLAP),
                         0.4257, LLM_FOUNDRY),
    "fp8": PublishedRun("Megatron-Bridge Llama-3-70B, 64 H100", "llama-3.1-70b", "fp8",
                        Layout(tp=4, pp=8, dp=2, seq_len_tokens=8192, global_batch_tokens=128 * 8192, microbatches=64,
                               virtual_stages=5, zero_stage=1, tp_overlap_fraction=0.0,
                               dp_overlap_fraction=DP_OVERLAP),
                        719.0 / 1978.9, MEGATRON_BRIDGE),
}

VALIDATION = [
    PublishedRun(f"Llama 3 405B, {gpus:,} H100", "llama-3.1-405b", "bf16",
                 Layout(tp=8, pp=16, dp=dp, seq_len_tokens=8192, global_batch_tokens=dp * per_dp * 8192,
                        microbatches=per_dp, virtual_stages=VIRTUAL_STAGES_LLAMA3, zero_stage=1,
                        dp_overlap_fraction=DP_OVERLAP),
                 mfu, LLAMA3)
    for gpus, dp, per_dp, mfu in ((8192, 64, 32, 0.43), (16384, 128, 16, 0.41))
]


def arch_of(run: PublishedRun, models: dict[str, ModelArch]) -> ModelArch:
    return MPT_70B if run.model == "mpt-70b" else models[run.model]


def calibrate(run: PublishedRun, profile: HardwareProfile, models: dict[str, ModelArch]) -> float:
    """The GEMM efficiency that reproduces the run's measured MFU on this SKU."""
    return calibrated_gemm_efficiency(arch_of(run, models), profile.spec, run.precision, run.layout, run.mfu)


def predicted_mfu(run: PublishedRun, profile: HardwareProfile, models: dict[str, ModelArch],
                  gemm_efficiency: float) -> float:
    return step_breakdown(arch_of(run, models), profile.spec, run.precision, run.layout, gemm_efficiency).mfu
