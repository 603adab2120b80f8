"""The bar a fidelity suite is held to (issue #22: an uncalibrated forecast within 15% MAPE and a +-5% bias), apart
from simfactory.fidelity so that the CLI can name its defaults without importing the simulator."""

from __future__ import annotations

from typing import Any

BAR_MAPE = 0.15  # issue #22's bar for an uncalibrated forecast: MAPE at most 15% ...
BAR_BIAS = 0.05  # ... and the signed bias within +-5%


def against_bar(summary: dict[str, dict[str, Any]], max_mape: float = BAR_MAPE, max_bias: float = BAR_BIAS,
                spread_mape: dict[str, float] | None = None) -> tuple[list[str], list[str]]:
    """The summary's suites (per profile source) within max_mape and with |bias| <= max_bias, and those outside,
    each outside one with why (its MAPE, its bias or both, and, for a suite whose setups were measured twice, how far
    the two measurements differ: spread_mape by suite name)."""
    inside, outside = [], []
    for key, s in summary.items():  # not (x <= bar): a NaN (points that predicted nothing) is outside too
        why = [f"MAPE {s['mape']:.1%}"] if not s["mape"] <= max_mape else []
        why += [f"bias {s['optimism']:+.1%}"] if not abs(s["optimism"]) <= max_bias else []
        spread = (spread_mape or {}).get(key.split(" [")[0])
        if why and spread is not None:
            why.append(f"its setups measured twice differ by {spread:.1%}")
        (outside if why else inside).append(f"{key} ({', '.join(why)})" if why else key)
    return inside, outside
