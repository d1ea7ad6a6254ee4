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


def one_thread_per_op(max_cores: int) -> dict[str, str]:
    """On machines of at most `max_cores` cores (this process's CPU affinity), runs each
    TensorFlow op on one thread, as many ops at once as there are cores, instead of TensorFlow's
    default (every op may split over every core while as many ops run at once): the model's many
    small ops overlap without oversubscribing the cores (pipeline/configs.py,
    ONE_THREAD_PER_OP_MAX_CORES). Sets TF_NUM_INTRAOP_THREADS and TF_NUM_INTEROP_THREADS where
    they are not set already; TensorFlow reads them when it creates its thread pools, at the
    process's first op, so call it before. Returns what it set."""
    cores = len(os.sched_getaffinity(0))
    if cores > max_cores:
        return {}
    wanted = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": str(cores)}
    settings = {name: value for name, value in wanted.items() if name not in os.environ}
    os.environ.update(settings)
    return settings


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
