"""Calibration: measure an engine on a GPU (or import measurements), fit the step-time model, write a
measured hardware profile with its fit error, and validate against a live endpoint."""
