"""Ray, the optional executor of `sweep` and of sharded runs: imported and joined in one place, so its absence and
its connection failures read the same wherever --executor ray is given."""

from __future__ import annotations

from typing import Any

from simfactory.errors import InputError

RAY_AUTH_HINT = ("a cluster with token authentication (Ray 2.52+; Ray 2.60 turns it on for a new local cluster) needs RAY_AUTH_MODE=token "
                 "and the cluster's token in RAY_AUTH_TOKEN or a file named by RAY_AUTH_TOKEN_PATH, set before running "
                 "(https://docs.ray.io/en/latest/ray-security/token-auth.html)")


def joined_ray(address: str | None) -> Any:
    """The ray module, joined to the cluster at `address` (None: a local one); a missing install, an unreachable
    address, a refused token or a version mismatch as one line naming the flag."""
    try:
        import ray
    except ImportError:
        raise InputError("--executor", "ray", "ray is not installed: pip install 'simfactory[ray]'") from None
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError, its own types
        text = str(exc).strip()
        first = text.splitlines()[0][:300] if text else "no message"
        raise InputError("--ray-address", address or "(local)", f"could not join the Ray cluster: "
                         f"{type(exc).__name__}: {first}; {RAY_AUTH_HINT}") from None
    return ray
