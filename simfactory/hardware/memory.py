"""Device memory accounting: do the weights fit, and how many KV-cache tokens are left.

The device's memory is what it reports in bytes (nvidia-smi: an "80 GB" H100 has 81,559 MiB), less what the driver
and CUDA context keep (an engine sees ~79.18 GiB of it). Each engine then sizes its KV cache by its own rule
(EngineMemory in hardware_profiles/engines.yaml):

    vLLM (v0.6.5+)  KV = gpu_memory_utilization x total - weights - activation peak - non-torch memory
    SGLang          KV = mem_fraction_static x (total - non-torch memory) - weights
                    (SGLang applies its fraction to the memory free once its distributed runtime is up)
    TensorRT-LLM    KV = free_gpu_memory_fraction x (total - weights - activation peak - non-torch memory)

The activation peak is what vLLM's start-up profile run measures: a dummy forward of max_num_batched_tokens
tokens (the MLP's live tensors dominate) and the sampler on max_num_seqs rows of logits. Fitted to vLLM v0.11's
logs on H100 (Llama-3.1-8B TP1: 4.76 GiB; Llama-3.3-70B TP2: 4.84 GiB),
https://github.com/llm-d/llm-d-benchmark/blob/main/config_explorer/empirical-vllm-memory-results.md
"""

from __future__ import annotations

from dataclasses import dataclass

from simfactory.config.profile import EngineMemory, ModelArch, Spec

GB = 1e9
GIB = float(2**30)
# Activations are bf16/fp16 in every dtype we model (fp8 and int4 weights dequantize into 16-bit activations).
ACTIVATION_BYTES = 2
# Live tensors at the MLP's peak, in units of the intermediate size: the gate/up projection's output (2 x
# intermediate) and its activated product (1 x); the residual stream adds hidden. Llama-style SwiGLU MLP.
MLP_PEAK_INTERMEDIATES = 3
# A catalogue entry without intermediate or vocab: the original transformer's d_ff = 4 x d_model
# (https://arxiv.org/abs/1706.03762, section 3.3) and Llama 3's 128,256-token vocabulary
# (https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json). as_of: 2026-11.
FALLBACK_FFN_MULTIPLIER = 4
FALLBACK_VOCAB = 128256
# vLLM quantizes linear layers only: the token embedding and the LM head (vocab x hidden each) stay 16-bit in fp8 and
# int4 checkpoints (Llama-3.3-70B-FP8 loads 67.72 GiB on one H100, 2 GiB above 70.55e9 bytes; llm-d log above).
EMBEDDING_BYTES = 2
# plan_memory's batch shape when a caller gives none: the engine presets' defaults (hardware_profiles/engines.yaml).
DEFAULT_MAX_NUM_BATCHED_TOKENS = 8192
DEFAULT_MAX_NUM_SEQS = 256

# The rule an engine preset without a `memory` entry gets (a user's own preset): vLLM's as measured in v0.11, the
# anchors above; engines.yaml's vllm entry adds the CUDA-graph pool later versions subtract too.
VLLM_MEMORY = EngineMemory(
    rule="fraction_of_total",
    fraction=0.9,
    profile_activation=True,
    sampler_bytes_per_logit=33.0,
    non_torch_gib_by_tp={1: 0.13, 2: 0.55},
    source="vLLM v0.11 start-up logs on H100, https://github.com/llm-d/llm-d-benchmark/blob/main/config_explorer/"
           "empirical-vllm-memory-results.md (non-torch 0.13 GiB TP1, 0.55 GiB TP2; sampler fitted to the activation peaks)",
    as_of="2025-10",
)


MIB = float(2**20)


def sglang_mem_fraction(device_bytes: float, chunked_prefill_tokens: int, tp: int, dp_attention: int = 1) -> float:
    """SGLang's default mem_fraction_static (ServerArgs, 0.5.x): the device's total (nvidia-smi, MiB) less a
    reserve for attention metadata (512 MiB), the prefill chunk's activations (1.5 MiB per token, at least 2,048
    tokens), CUDA graphs (2 MiB per graph batch; max graph batch 32/160 under 60 GiB, else 256/512 below/at TP4, 512
    from 160 GiB), 1 GiB per 8 TP devices, and DP attention's padding (3 MiB, plus 1.5 past 300 graph batches, per
    graph batch and DP rank); at least 10 GiB on devices over 60 GiB; rounded to 3 decimals.
    https://github.com/sgl-project/sglang/blob/469c63e54e7d94591617ef9590c6aa26d54dc1bb/python/sglang/srt/server_args.py"""
    gpu_mem = device_bytes / MIB
    if gpu_mem < 60 * 1024:
        graph_bs = 32 if tp < 4 else 160
    elif gpu_mem < 160 * 1024:
        graph_bs = 256 if tp < 4 else 512
    else:
        graph_bs = 512
    reserved = 512 + max(chunked_prefill_tokens, 2048) * 1.5 + graph_bs * 2 + tp / 8 * 1024
    if dp_attention > 1:
        reserved += graph_bs * dp_attention * 3 + (graph_bs * dp_attention * 1.5 if graph_bs > 300 else 0.0)
    if gpu_mem > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return max(round((gpu_mem - reserved) / gpu_mem, 3), 0.0)


@dataclass(frozen=True)
class MemoryPlan:
    device_bytes: float  # what the device reports (nvidia-smi total)
    engine_total_bytes: float  # what the engine sees: device_bytes - driver/context reserve
    fraction: float  # the engine's fraction (gpu_memory_utilization, mem_fraction_static, free_gpu_memory_fraction)
    usable_bytes_per_device: float  # fraction x engine total (vLLM), x (total - non-torch) (SGLang), total (TRT-LLM)
    weight_bytes_per_device: float
    activation_bytes_per_device: float
    non_torch_bytes_per_device: float  # NCCL buffers and other memory outside PyTorch, plus the CUDA graph pool
    kv_bytes_per_device: float
    kv_bytes_per_token: float
    kv_capacity_tokens: int
    non_torch_before_fraction: bool = False  # SGLang: non-torch memory comes off before the fraction (in usable)

    @property
    def needed_bytes_per_device(self) -> float:
        """What must fit in the usable memory besides the KV cache."""
        non_torch = 0.0 if self.non_torch_before_fraction else self.non_torch_bytes_per_device
        return self.weight_bytes_per_device + self.activation_bytes_per_device + non_torch

    @property
    def reserve_bytes_per_device(self) -> float:
        """Everything besides weights and KV: activation peak, non-torch memory, CUDA graphs."""
        return self.activation_bytes_per_device + self.non_torch_bytes_per_device

    @property
    def fits(self) -> bool:
        return self.kv_bytes_per_device > 0


def device_memory_bytes(spec: Spec) -> tuple[float, float]:
    """(reported total, total an engine sees) in bytes. A spec without `memory` reads hbm_gb as decimal GB, a lower
    bound for every shipped part (an "80 GB" H100 reports 85.5e9 bytes)."""
    if spec.memory is None:
        return spec.hbm_gb * GB, spec.hbm_gb * GB
    return float(spec.memory.total_bytes), float(spec.memory.engine_total_bytes)


def weight_bytes(arch: ModelArch, dtype: str) -> float:
    """All weights on all devices: arch.weight_bytes, plus the embedding and LM head kept 16-bit when the rest is
    quantized (when the catalogue gives the vocabulary)."""
    extra = 0.0
    dense = arch.dense_bytes_per_param(dtype)  # a weight-only FP4 checkpoint's embeddings are 16-bit already
    if arch.vocab and dense < EMBEDDING_BYTES:
        extra = 2 * arch.vocab * arch.hidden * (EMBEDDING_BYTES - dense)
    return arch.weight_bytes(dtype) + extra


def activation_peak_bytes(arch: ModelArch, tp: int, rule: EngineMemory, max_num_batched_tokens: int,
                          max_num_seqs: int) -> float:
    """Per device: the profiled activation peak (forward of max_num_batched_tokens tokens: residual stream plus the
    MLP's live tensors, intermediate split over TP, times the rule's activation_factor; sampler: max_num_seqs x vocab
    logits, sampler_bytes_per_logit each) when the engine profiles, plus its flat reserve. A TensorRT engine's
    activation memory is sized for its build-time max_num_tokens, which is also its runtime budget."""
    peak = rule.reserve_gib * GIB
    if rule.profile_activation:
        intermediate = arch.intermediate or FALLBACK_FFN_MULTIPLIER * arch.hidden
        intermediate *= arch.experts_per_token or 1  # a fused MoE layer holds each token's top-k expert outputs
        vocab = arch.vocab or FALLBACK_VOCAB
        forward = (rule.activation_factor * max_num_batched_tokens
                   * (arch.hidden + MLP_PEAK_INTERMEDIATES * intermediate / tp) * ACTIVATION_BYTES)
        sampler = rule.sampler_bytes_per_logit * min(max_num_seqs, max_num_batched_tokens) * vocab
        peak += forward + sampler
    return peak


def plan_memory(
    arch: ModelArch, spec: Spec, dtype: str, kv_dtype: str, tp: int, gpu_memory_utilization: float | None = None,
    extra_weight_bytes: float = 0.0, *, rule: EngineMemory | None = None,
    max_num_batched_tokens: int = DEFAULT_MAX_NUM_BATCHED_TOKENS, max_num_seqs: int = DEFAULT_MAX_NUM_SEQS,
    dp_attention: int = 1,
) -> MemoryPlan:
    """Weights (plus any extra, e.g. a speculative draft model) are split over `tp` devices; the engine's rule
    (vLLM's when None) sizes the KV cache per device from what is left; K/V tokens are split over the same devices.
    gpu_memory_utilization, when given, replaces the rule's fraction (the user set the engine's knob).
    With dp_attention groups the attention weights are held once per group, and an MLA latent once per group (each
    group caches its own sequences), so the replica holds dp_attention times the latent tokens of one device; the
    budgets are the replica's, and a rank profiles (and runs) its 1 / dp_attention share of them."""
    rule = rule or VLLM_MEMORY
    device, total = device_memory_bytes(spec)
    if gpu_memory_utilization is not None:
        fraction = gpu_memory_utilization
    elif rule.rule == "sglang_reserve" and spec.memory is not None:
        fraction = sglang_mem_fraction(device, max_num_batched_tokens, tp, dp_attention)
    else:
        fraction = rule.fraction_for(tp)
    attention_copies = (dp_attention - 1) * arch.attention_params_b() * 1e9 * arch.dense_bytes_per_param(dtype)
    weights = (weight_bytes(arch, dtype) + extra_weight_bytes + attention_copies) / tp
    activation = activation_peak_bytes(arch, tp, rule, -(-max_num_batched_tokens // dp_attention),
                                       -(-max_num_seqs // dp_attention))
    non_torch = (rule.non_torch_gib(tp) + rule.cuda_graph_gib) * GIB
    if rule.rule == "fraction_of_free":
        usable = total
        kv_per_device = fraction * (total - weights - activation - non_torch)
    elif rule.rule == "sglang_reserve":
        # SGLang applies its fraction to the memory free once the distributed runtime is up (total_gpu_memory in
        # ModelRunner.profile_max_num_token is measured after init_torch_distributed), so what NCCL and the custom
        # all-reduce hold by then is taken out before the fraction, not after it
        usable = fraction * (total - non_torch)
        kv_per_device = usable - weights - activation
    else:
        usable = fraction * total
        kv_per_device = usable - weights - activation - non_torch
    kv_per_token = arch.kv_bytes_per_token(kv_dtype)
    # K/V heads split over the TP group; an MLA latent is held whole by every device of its attention group
    shards = dp_attention if arch.is_mla else arch.kv_tp_shards(tp)
    capacity = int(max(kv_per_device, 0.0) * shards // kv_per_token)
    return MemoryPlan(
        device_bytes=device,
        engine_total_bytes=total,
        fraction=fraction,
        usable_bytes_per_device=usable,
        weight_bytes_per_device=weights,
        activation_bytes_per_device=activation,
        non_torch_bytes_per_device=non_torch,
        kv_bytes_per_device=kv_per_device,
        kv_bytes_per_token=kv_per_token,
        kv_capacity_tokens=capacity,
        non_torch_before_fraction=rule.rule == "sglang_reserve",
    )
