"""The `create_pipeline` arguments every runner takes from configs, with its flags' overrides."""

from __future__ import annotations

from pipeline import configs

from components.evaluator import eval_config


def shared_pipeline_args(epochs: int, min_top_100_accuracy: float, max_rmse: float) -> dict:
    """Split, step code, hyperparameters and evaluation: identical on every platform."""
    return {
        "eval_fraction": configs.EVAL_FRACTION,
        "split_seed": configs.SPLIT_SEED,
        "preprocessing_fn": configs.PREPROCESSING_FN,
        "run_fn": configs.RUN_FN,
        "hyperparameters": {**configs.HYPERPARAMETERS, "epochs": epochs},
        "eval_config": eval_config.build_eval_config(
            min_top_100_accuracy=min_top_100_accuracy, max_rmse=max_rmse,
            max_top_100_accuracy_drop=configs.MAX_TOP_100_ACCURACY_DROP,
            max_rmse_increase=configs.MAX_RMSE_INCREASE),
        "evaluator_module": configs.EVALUATOR_MODULE,
    }
