"""The Evaluator's TFMA configuration: top-k accuracy, RMSE, ScaNN recall, blessing thresholds.

The exported model's `evaluation` signature scores each eval example against the whole
catalogue (see components/trainer/serving.py) and returns per-example values; TFMA averages
them over the eval split. Each value is an output of its own, read with MeanPrediction.
"""

from __future__ import annotations

import json

from tensorflow_model_analysis.proto import config_pb2

from components import features
from components.trainer import serving

EVALUATION_SIGNATURE = "evaluation"
RATING_OUTPUT = "rating"
RMSE_METRIC = "root_mean_squared_error"
HEADLINE_ACCURACY = "top_100_accuracy"


def averaged_outputs() -> list[str]:
    """The evaluation signature's per-example outputs that TFMA reports as means."""
    names = [f"top_{k}_accuracy{suffix}" for suffix in ("", "_unrated")
             for k in serving.EVALUATION_KS]
    return names + ["scann_recall_at_10"]


def _threshold(lower: float | None = None, upper: float | None = None,
               change: float | None = None, higher_is_better: bool = True
               ) -> config_pb2.MetricThreshold:
    threshold = config_pb2.MetricThreshold()
    if lower is not None:
        threshold.value_threshold.lower_bound.value = lower
    if upper is not None:
        threshold.value_threshold.upper_bound.value = upper
    if change is not None:
        # A candidate may be worse than the latest blessed model by at most `change`.
        threshold.change_threshold.direction = (
            config_pb2.MetricDirection.HIGHER_IS_BETTER if higher_is_better
            else config_pb2.MetricDirection.LOWER_IS_BETTER)
        threshold.change_threshold.absolute.value = -change if higher_is_better else change
    return threshold


def build_eval_config(min_top_100_accuracy: float, max_rmse: float,
                      max_top_100_accuracy_drop: float, max_rmse_increase: float
                      ) -> config_pb2.EvalConfig:
    """Blesses a model whose top-100 accuracy and RMSE meet absolute bounds and do not regress
    by more than the given margins against the latest blessed model (when there is one)."""
    outputs = averaged_outputs()
    model_spec = config_pb2.ModelSpec(
        signature_name=EVALUATION_SIGNATURE,
        # TFMA needs a label per output; only `rating`'s is used (the others are averaged).
        label_keys={name: features.RATING for name in [RATING_OUTPUT, *outputs]})
    metrics_specs = [config_pb2.MetricsSpec(
        metrics=[config_pb2.MetricConfig(class_name="ExampleCount")])]
    metrics_specs.append(config_pb2.MetricsSpec(output_names=[RATING_OUTPUT], metrics=[
        config_pb2.MetricConfig(
            class_name="RootMeanSquaredError", config=json.dumps({"name": RMSE_METRIC}),
            threshold=_threshold(upper=max_rmse, change=max_rmse_increase,
                                 higher_is_better=False))]))
    for name in outputs:
        threshold = (_threshold(lower=min_top_100_accuracy, change=max_top_100_accuracy_drop)
                     if name == HEADLINE_ACCURACY else None)
        metrics_specs.append(config_pb2.MetricsSpec(output_names=[name], metrics=[
            config_pb2.MetricConfig(class_name="MeanPrediction", config=json.dumps({"name": name}),
                                    threshold=threshold)]))
    return config_pb2.EvalConfig(model_specs=[model_spec], metrics_specs=metrics_specs,
                                 slicing_specs=[config_pb2.SlicingSpec()])
