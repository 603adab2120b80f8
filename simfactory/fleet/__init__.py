"""Fleet scale: shard a large fleet, sample shards, split long horizons into time windows, and run the parts on
local processes or Ray; the parts' raw results merge into one run whose summary the single-run code computes.

Entry point: run_sharded(resolved scenario with a `sharding:` block) -> (RunMetrics, merged SimResult)."""

from simfactory.fleet.run import is_sharded, run_sharded

__all__ = ["is_sharded", "run_sharded"]
