"""Many runs: sweeps over scenario fields (local processes or Ray) and capacity-plan searches."""
