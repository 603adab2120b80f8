"""Cost models: pure functions over pools, prices and measured utilization. Knows nothing of SimPy."""
