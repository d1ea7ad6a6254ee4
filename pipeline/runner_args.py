"""The `create_pipeline` arguments every runner takes from configs, with its flags' overrides.

Light to import: runners check their flags before importing the stack.
"""

from __future__ import annotations

import argparse
import dataclasses

from components.example_gen import splits
from components.trainer import config as config_lib
from pipeline import configs


def positive_int(text: str) -> int:
    """argparse type of the counting flags (--epochs, worker counts)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def split_protocol(text: str, dataset: str) -> str:
    """The --split flag's value, checked (SplitProtocolError names the problem)."""
    return str(splits.parse_protocol(text, configs.EVAL_FRACTION, dataset))


def validation_rule(protocol: str) -> str:
    """The Trainer's validation slice under a split protocol: the latest ratings under `time`,
    hash-chosen otherwise."""
    return (config_lib.TIME_VALIDATION if protocol.startswith(splits.TIME)
            else config_lib.RANDOM_VALIDATION)


def shared_pipeline_args(epochs: int, min_top_100_accuracy: float, max_rmse: float,
                         protocol: str = configs.SPLIT_PROTOCOL) -> dict:
    """Split, step code, hyperparameters and evaluation: identical on every platform. The
    Trainer's validation slice follows the split protocol (the latest ratings under `time`)."""
    from components.evaluator import eval_config

    return {
        "eval_fraction": configs.EVAL_FRACTION,
        "max_eval_ratings": configs.MAX_EVAL_RATINGS,
        "split_seed": configs.SPLIT_SEED,
        "split_protocol": protocol,
        "preprocessing_fn": configs.PREPROCESSING_FN,
        "run_fn": configs.RUN_FN,
        "hyperparameters": dataclasses.replace(
            configs.MODEL, epochs=epochs,
            validation_split=validation_rule(protocol)).as_custom_config(),
        "eval_config": eval_config.build_eval_config(
            min_top_100_accuracy=min_top_100_accuracy, max_rmse=max_rmse,
            max_top_100_accuracy_drop=configs.MAX_TOP_100_ACCURACY_DROP,
            max_rmse_increase=configs.MAX_RMSE_INCREASE),
        "evaluator_module": configs.EVALUATOR_MODULE,
    }
