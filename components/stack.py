"""The one place for the quirks of this TensorFlow / TFX / ScaNN stack.

The Keras 2 flag is set when the interpreter starts, in `.venv` (scripts/setup_env.py) and in
the image (Dockerfile); `components/__init__.py` imports this module so that it is set in other
environments too, before any of our modules touches `tf.keras`.
"""

import os

# TFRS 0.7 is built on Keras 2: `tf.keras` must resolve to tf_keras. TensorFlow reads this
# variable when `tf.keras` is first touched, so it is set before any of our TensorFlow imports.
# scripts/setup_env.py writes the same into .venv; the Dockerfile spells it as ENV.
KERAS_2_ENVIRONMENT = {"TF_USE_LEGACY_KERAS": "1"}
os.environ.update(KERAS_2_ENVIRONMENT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


def quiet_library_logs() -> None:
    """Silences TensorFlow's deprecation chatter and Beam workers' start-up warnings, for
    command-line output; errors still show."""
    import logging

    for name in ("tensorflow", "apache_beam"):
        logging.getLogger(name).setLevel(logging.ERROR)


def register_scann_ops() -> None:
    """Registers ScaNN's TF ops; a SavedModel holding a ScaNN index fails to load without them

    (`Op type not registered 'Scann>TensorsToScann'`).
    """
    import scann  # noqa: F401


# SavedModels holding a ScaNN index must be saved with ScaNN's op namespace allowed.
SCANN_SAVE_OPTIONS_NAMESPACES = ("Scann",)
