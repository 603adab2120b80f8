"""Collective communication over a placement: which link a collective crosses, and its closed-form time.

A SKU's devices sit in scale-up domains (an HGX node: 8 GPUs on NVLink; a GB200/GB300 NVL72 rack: 72) joined by
a scale-out network (one NIC per GPU: 400 Gb/s ConnectX-7, 800 Gb/s ConnectX-8). A group of n devices is placed
on as few domains as hold it, so a collective stays on the scale-up link while n <= the domain size and otherwise
pays the scale-out network for the part that leaves a domain:

- all-reduce of M bytes, hierarchical (NCCL's ring/tree within and across domains): reduce-scatter and all-gather
  inside each domain of d devices, 2 (d-1)/d x M over the scale-up link (at the bus bandwidth measured for d
  devices where the profile gives one: nccl-tests' busbw is exactly this rate), and an all-reduce of each device's
  M/d shard across the m domains, 2 (m-1)/m x M/d over its NIC; one latency per level.
- all-to-all where each device sends B bytes spread evenly over the n devices of the group (itself included),
  the expert-parallel dispatch/combine: (d-1)/n x B go to peers in its own domain over the scale-up link and
  (n-d)/n x B over its NIC, both at once, so the slower of the two sets the time.
- point-to-point of M bytes (a pipeline boundary, a KV-cache transfer) over one link.

Closed forms, so tests can check them by hand and the engine's fast-forward stays O(1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from simfactory.config.profile import Spec


@dataclass(frozen=True)
class Links:
    """Per-device link bandwidths (bytes/s, per direction) and latencies of a SKU's placement."""

    scale_up_bytes_per_s: float
    scale_up_latency_s: float
    domain_devices: int
    scale_out_bytes_per_s: float | None  # None: the profile names no scale-out network
    scale_out_latency_s: float
    # (group size, bytes/s): measured all-reduce bus bandwidth inside one domain, where the profile gives it
    allreduce_bus_bytes_per_s: tuple[tuple[int, float], ...] = ()

    @classmethod
    def of(cls, spec: Spec) -> "Links":
        if spec.interconnect_gb_s is None:
            raise ValueError("parallelism across devices needs spec.interconnect_gb_s")
        out = spec.scale_out_gb_s * 1e9 if spec.scale_out_gb_s is not None else None
        measured = tuple(sorted((n, gb_s * 1e9) for n, gb_s in (spec.allreduce_bus_gb_s or {}).items()))
        return cls(spec.interconnect_gb_s * 1e9, spec.interconnect_latency_s, spec.scale_up_domain_devices, out,
                   spec.scale_out_latency_s, measured)

    @classmethod
    def of_group(cls, spec: Spec, devices: int) -> "Links | None":
        """The links a group of this many devices communicates over: None for one device or a SKU without a
        scale-up link (nothing to price)."""
        return cls.of(spec) if devices > 1 and spec.interconnect_gb_s is not None else None

    def measured_allreduce_bytes_per_s(self, devices: int) -> float | None:
        """The measured all-reduce bus bandwidth of a group of this many devices in one domain, if the profile has it."""
        return next((bw for n, bw in self.allreduce_bus_bytes_per_s if n == devices), None)

    def with_measured_allreduce(self, devices: int, gb_s: float | None) -> "Links":
        """These links with the measured all-reduce of a group of this size set to gb_s (None: none measured)."""
        others = tuple((n, bw) for n, bw in self.allreduce_bus_bytes_per_s if n != devices)
        pinned = ((devices, gb_s * 1e9),) if gb_s is not None else ()
        return replace(self, allreduce_bus_bytes_per_s=tuple(sorted(others + pinned)))

    def allreduce_bytes_per_s(self, devices: int) -> float:
        """The bus bandwidth an all-reduce over this many devices of one domain reaches: measured, else the link's."""
        measured = self.measured_allreduce_bytes_per_s(devices)
        return measured if measured is not None else self.scale_up_bytes_per_s

    def domains(self, devices: int) -> int:
        """Scale-up domains a group of this many devices spans when placed on as few as hold it."""
        return max(1, math.ceil(devices / self.domain_devices))

    def _out(self) -> float:
        if self.scale_out_bytes_per_s is None:
            raise ValueError("a group wider than one scale-up domain needs spec.scale_out_gb_s")
        return self.scale_out_bytes_per_s


def measured_allreduce_gb_s(spec: Spec, devices: int) -> float | None:
    """The profile's measured all-reduce bus bandwidth for a group of this many devices (GB/s), if it has one."""
    return (spec.allreduce_bus_gb_s or {}).get(devices)


def allreduce_s(msg_bytes: float, n: int, links: Links) -> float:
    """One all-reduce of msg_bytes over n devices (hierarchical across domains; the ring inside one)."""
    if n <= 1 or msg_bytes <= 0:
        return 0.0
    d = min(n, links.domain_devices)
    t = 2 * (d - 1) / d * msg_bytes / links.allreduce_bytes_per_s(d) + links.scale_up_latency_s
    m = links.domains(n)
    if m > 1:
        t += 2 * (m - 1) / m * (msg_bytes / d) / links._out() + links.scale_out_latency_s
    return t


def all_to_all_s(bytes_per_device: float, n: int, links: Links) -> float:
    """One all-to-all in which every device of n sends bytes_per_device spread evenly over the group."""
    if n <= 1 or bytes_per_device <= 0:
        return 0.0
    d = min(n, links.domain_devices)
    inside = (d - 1) / n * bytes_per_device / links.scale_up_bytes_per_s + links.scale_up_latency_s
    if n <= d:
        return inside
    outside = (n - d) / n * bytes_per_device / links._out() + links.scale_out_latency_s
    return max(inside, outside)


def p2p_s(msg_bytes: float, links: Links, across_domains: bool) -> float:
    """msg_bytes from one device to another, over the scale-up link or, across domains, the NIC."""
    if msg_bytes <= 0:
        return 0.0
    if across_domains:
        return msg_bytes / links._out() + links.scale_out_latency_s
    return msg_bytes / links.scale_up_bytes_per_s + links.scale_up_latency_s


def ring_allreduce_s(msg_bytes: float, n: int, bytes_per_s: float, latency_s: float) -> float:
    """A flat ring all-reduce of msg_bytes over n devices on one link class: a reduce-scatter and an all-gather,
    each moving (n-1)/n x M per device in n-1 hops, so 2 (n-1)/n x M / bandwidth + 2 (n-1) x latency
    (Patarasuk & Yuan 2009; NCCL's ring). Data-parallel gradient traffic uses it: each rail of an 8-GPU node runs
    its own ring over its own NIC."""
    if n <= 1 or msg_bytes <= 0:
        return 0.0
    return 2.0 * (n - 1) / n * msg_bytes / bytes_per_s + 2.0 * (n - 1) * latency_s
