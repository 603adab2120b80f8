"""GPU identity and a background NVML sampler (nvidia-ml-py's `pynvml`): power, SM utilization, memory,
clocks and temperature at >= 10 Hz, with energy as the integral of power over time.

Calibration checks for a GPU first (`require_gpu`), so a machine without one, or without the NVIDIA driver,
gets one clear message and writes nothing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

SAMPLE_COLUMNS = ("t_s", "power_w", "sm_util", "mem_used_gb", "sm_clock_mhz", "mem_clock_mhz", "temp_c")


class NoGpu(Exception):
    """No NVIDIA GPU usable through NVML here (package, driver or device missing)."""


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    driver: str
    cuda_driver: str
    memory_gb: float
    power_limit_w: float | None


def _nvml() -> Any:
    try:
        import pynvml
    except ImportError as exc:
        raise NoGpu("calibration needs NVML: pip install 'simfactory[calibrate]' (nvidia-ml-py) on a GPU machine") from exc
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...: all mean "no usable GPU here"
        raise NoGpu(f"no NVIDIA GPU found: NVML did not start ({exc}); run calibration on a machine with an NVIDIA "
                    "GPU and driver, or import existing measurements with `simfactory calibrate fit`") from exc
    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def require_gpu(index: int = 0) -> GpuInfo:
    """Identify GPU `index`, or raise NoGpu with the reason."""
    nv = _nvml()
    count = nv.nvmlDeviceGetCount()
    if count <= index:
        raise NoGpu(f"no NVIDIA GPU with index {index} (NVML sees {count})")
    h = nv.nvmlDeviceGetHandleByIndex(index)
    cuda = nv.nvmlSystemGetCudaDriverVersion()
    try:
        limit_w = nv.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0
    except Exception:
        limit_w = None
    return GpuInfo(
        index=index,
        name=_text(nv.nvmlDeviceGetName(h)),
        driver=_text(nv.nvmlSystemGetDriverVersion()),
        cuda_driver=f"{cuda // 1000}.{cuda % 1000 // 10}",
        memory_gb=nv.nvmlDeviceGetMemoryInfo(h).total / 1e9,
        power_limit_w=limit_w,
    )


@dataclass
class NvmlSampler:
    """`with NvmlSampler(indexes) as s:` samples every `interval_s` in a daemon thread; `s.frame()` returns the
    samples (power summed over the GPUs, utilization averaged: one tensor-parallel replica)."""

    indexes: tuple[int, ...] = (0,)
    interval_s: float = 0.05  # 20 Hz
    rows: list[tuple[float, ...]] = field(default_factory=list)
    unsupported: set[str] = field(default_factory=set)  # fields NVML did not report here

    def __post_init__(self) -> None:
        if self.interval_s > 0.1:
            raise ValueError("NVML sampling must run at >= 10 Hz (interval_s <= 0.1)")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "NvmlSampler":
        nv = _nvml()
        self._nv = nv
        self._handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in self.indexes]
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, name="nvml-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def now_s(self) -> float:
        """The sampler's clock (perf_counter since start): mark measurement windows with it."""
        return time.perf_counter() - self._t0

    def _read(self, field_name: str, query: Any, *args: Any) -> float:
        """One NVML reading; NaN where this GPU or VM does not report it (NVMLError_NotSupported and the like),
        so a missing counter costs its column, not the calibration. `unsupported` names such fields."""
        try:
            return float(query(*args))
        except Exception:
            self.unsupported.add(field_name)
            return float("nan")

    def _sample(self) -> tuple[float, ...]:
        nv, read = self._nv, self._read
        power = util = mem = sm_clock = mem_clock = 0.0
        temps: list[float] = []
        for h in self._handles:
            power += read("power_w", nv.nvmlDeviceGetPowerUsage, h) / 1000.0
            util += read("sm_util", lambda: nv.nvmlDeviceGetUtilizationRates(h).gpu) / 100.0
            mem += read("mem_used_gb", lambda: nv.nvmlDeviceGetMemoryInfo(h).used) / 1e9
            sm_clock += read("sm_clock_mhz", nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_SM)
            mem_clock += read("mem_clock_mhz", nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_MEM)
            temps.append(read("temp_c", nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU))
        n = len(self._handles)
        temp = max((t for t in temps if t == t), default=float("nan"))  # the hottest GPU; NaN if none reports
        return (self.now_s(), power, util / n, mem, sm_clock / n, mem_clock / n, temp)

    def _loop(self) -> None:
        next_s = time.perf_counter()
        while not self._stop.is_set():
            self.rows.append(self._sample())
            next_s += self.interval_s
            self._stop.wait(max(next_s - time.perf_counter(), 0.0))

    def frame(self) -> pd.DataFrame:
        return samples_frame(self.rows)


def samples_frame(rows: list[tuple[float, ...]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(SAMPLE_COLUMNS))


def energy_j(samples: pd.DataFrame, start_s: float | None = None, end_s: float | None = None) -> float:
    """Trapezoid integral of power over [start_s, end_s] (the whole record by default)."""
    s = samples
    if start_s is not None:
        s = s[s["t_s"] >= start_s]
    if end_s is not None:
        s = s[s["t_s"] <= end_s]
    if len(s) < 2:
        return 0.0
    t = s["t_s"].to_numpy(dtype=float)
    p = s["power_w"].to_numpy(dtype=float)
    return float(np.sum((p[1:] + p[:-1]) / 2.0 * np.diff(t)))


def window_means(samples: pd.DataFrame, start_s: float, end_s: float) -> tuple[float, float]:
    """Mean power (W) and SM utilization over a window; a window shorter than the sampling interval (no sample
    inside) gets the values interpolated at its midpoint; NaN without samples at all."""
    if samples.empty:
        return float("nan"), float("nan")
    s = samples[(samples["t_s"] >= start_s) & (samples["t_s"] <= end_s)]
    if s.empty:
        mid = (start_s + end_s) / 2
        t = samples["t_s"].to_numpy(dtype=float)
        return (float(np.interp(mid, t, samples["power_w"].to_numpy(dtype=float))),
                float(np.interp(mid, t, samples["sm_util"].to_numpy(dtype=float))))
    return float(s["power_w"].mean()), float(s["sm_util"].mean())


# NVML device names -> shipped SKU ids (first match wins); `--sku` overrides.
SKU_BY_NAME: tuple[tuple[str, str], ...] = (
    ("H200", "h200"),
    ("H100", "h100-sxm"),
    ("B200", "b200"),
    ("A100", "a100-80gb"),
    ("L40S", "l40s"),
    ("MI300X", "mi300x"),
)


def sku_for(gpu_name: str) -> str | None:
    """The shipped SKU for an NVML name; None for parts without a profile (PCIe / NVL variants, others)."""
    upper = gpu_name.upper()
    if "PCIE" in upper or " NVL" in upper:
        return None
    return next((sku for key, sku in SKU_BY_NAME if key in upper), None)
