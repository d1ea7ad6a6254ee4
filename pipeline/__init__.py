"""The pipeline definition (configs, wiring) and its runners' shared code."""

import components  # noqa: F401  (sets up the TF stack before anything imports TensorFlow)
