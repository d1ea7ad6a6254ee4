"""The Evaluator's TFMA configuration: top-k accuracy, RMSE, ScaNN recall, blessing thresholds.

The exported model's `evaluation` signature scores each eval example against the whole
catalogue (see components/trainer/serving.py) and returns per-example values; the project's
EvaluationMeans metric (components/evaluator/metrics.py) averages them over the eval split.
"""

from __future__ import annotations

from tensorflow_model_analysis.proto import config_pb2

from components import evaluation_contract as contract
from components.evaluator import metrics


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
    metrics_spec = config_pb2.MetricsSpec(
        metrics=[config_pb2.MetricConfig(class_name=metrics.EvaluationMeans.__name__,
                                         module=metrics.__name__)],
        # Keyed by name: one metric computes them all.
        thresholds={
            contract.HEADLINE_ACCURACY: _threshold(lower=min_top_100_accuracy,
                                          change=max_top_100_accuracy_drop),
            contract.RMSE_METRIC: _threshold(upper=max_rmse, change=max_rmse_increase,
                                    higher_is_better=False)})
    return config_pb2.EvalConfig(
        model_specs=[config_pb2.ModelSpec(signature_name=contract.EVALUATION_SIGNATURE)],
        metrics_specs=[metrics_spec], slicing_specs=[config_pb2.SlicingSpec()])
