"""What the Trainer's export and the Evaluator agree on: the `evaluation` signature, its
per-example outputs, and the metric names the Evaluator reports (and blessing, the benchmarks
and `pipeline.inspect` read).

The signature (components/trainer/serving.py) scores each eval example against the whole
catalogue and returns one value per example for each output; the Evaluator's metric
(components/evaluator/metrics.py) averages them over the eval split. Free of TensorFlow.
"""

from __future__ import annotations

EVALUATION_SIGNATURE = "evaluation"

KS = (1, 5, 10, 50, 100)
SCANN_RECALL_K = 10
SCANN_RECALL_OUTPUT = f"scann_recall_at_{SCANN_RECALL_K}"
SQUARED_ERROR_OUTPUT = "squared_error"


def top_k_accuracy_output(k: int, unrated: bool = False) -> str:
    """`top_K_accuracy`: the held-out title is among the K best-scored; `_unrated`: among the
    K best of the titles the user did not rate in training."""
    return f"top_{k}_accuracy{'_unrated' if unrated else ''}"


# Per-example outputs that are reported as their mean, under their own name.
AVERAGED_OUTPUTS = tuple(
    [top_k_accuracy_output(k, unrated) for unrated in (False, True) for k in KS]
    + [SCANN_RECALL_OUTPUT])
# The root of the mean of SQUARED_ERROR_OUTPUT.
RMSE_METRIC = "root_mean_squared_error"
EXAMPLE_COUNT_METRIC = "example_count"
METRIC_NAMES = (*AVERAGED_OUTPUTS, RMSE_METRIC, EXAMPLE_COUNT_METRIC)
# The accuracy that blessing holds to an absolute floor and to the baseline.
HEADLINE_ACCURACY = top_k_accuracy_output(100)
