"""Sets up the TF stack (Keras 2 flag) before any test module imports TensorFlow."""

import components  # noqa: F401
