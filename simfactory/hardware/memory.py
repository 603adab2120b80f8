"""Device memory accounting: do the weights fit, and how many KV-cache tokens are left."""

from __future__ import annotations

from dataclasses import dataclass

from simfactory.config.profile import ModelArch, Spec

GB = 1e9
# Activation and CUDA-graph workspace kept free beside weights and KV (vLLM profiles this at start-up;
# a few GB per device is typical for 8B-70B models). Assumption, stated in the README.
ACTIVATION_RESERVE_BYTES_PER_DEVICE = 2.0 * GB


@dataclass(frozen=True)
class MemoryPlan:
    device_bytes: float
    usable_bytes_per_device: float
    weight_bytes_per_device: float
    reserve_bytes_per_device: float
    kv_bytes_per_device: float
    kv_bytes_per_token: float
    kv_capacity_tokens: int

    @property
    def fits(self) -> bool:
        return self.kv_bytes_per_device > 0


def plan_memory(
    arch: ModelArch, spec: Spec, dtype: str, kv_dtype: str, tp: int, gpu_memory_utilization: float,
    extra_weight_bytes: float = 0.0,
) -> MemoryPlan:
    """Weights (plus any extra, e.g. a speculative draft model) are split over TP devices; what is left of
    utilization x HBM after weights and the activation reserve holds K/V, also split over TP."""
    device = spec.hbm_gb * GB
    usable = device * gpu_memory_utilization
    weights = (arch.weight_bytes(dtype) + extra_weight_bytes) / tp
    kv_per_device = usable - weights - ACTIVATION_RESERVE_BYTES_PER_DEVICE
    kv_per_token = arch.kv_bytes_per_token(kv_dtype)
    capacity = int(max(kv_per_device, 0.0) * tp // kv_per_token)
    return MemoryPlan(
        device_bytes=device,
        usable_bytes_per_device=usable,
        weight_bytes_per_device=weights,
        reserve_bytes_per_device=ACTIVATION_RESERVE_BYTES_PER_DEVICE,
        kv_bytes_per_device=kv_per_device,
        kv_bytes_per_token=kv_per_token,
        kv_capacity_tokens=capacity,
    )
