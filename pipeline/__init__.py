"""The pipeline definition (configs, wiring) and its runners' shared code."""
