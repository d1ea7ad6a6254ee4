"""The Evaluator's metric: every per-example output of the `evaluation` signature, averaged.

One TFMA metric computes them all in one combiner per model. TFMA's stock MeanPrediction and
RootMeanSquaredError cost about 100 microseconds of Python per example and output (label and
prediction preparation for each): with 12 outputs, 40 of the Evaluator's 50 s on MovieLens
100k. Here each example costs one dict read per output.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types

from components.evaluation_contract import AVERAGED_OUTPUTS, METRIC_NAMES, SQUARED_ERROR_OUTPUT


class EvaluationMeans(metric_types.Metric):
    """The mean of each AVERAGED_OUTPUTS output, RMSE (the root of the mean squared_error) and
    the example count, each a metric of its own name."""

    def __init__(self, name: str = "evaluation_means"):
        super().__init__(_evaluation_means, name=name)


def _evaluation_means(name: str, model_names: list[str] | None = None
                      ) -> metric_types.MetricComputations:
    del name  # each value is reported under its own name
    computations = []
    for model_name in model_names or [""]:
        # Unweighted means, keyed without weighting (None), as TFMA keys thresholds by name.
        keys = [metric_types.MetricKey(name=metric, model_name=model_name, example_weighted=None)
                for metric in METRIC_NAMES]
        computations.append(metric_types.MetricComputation(
            keys=keys, preprocessors=None, combiner=_MeansCombiner(model_name, keys)))
    return computations


class _MeansCombiner(beam.CombineFn):
    """Accumulates [sum of each AVERAGED_OUTPUTS output, sum of squared errors, count]."""

    _SUMMED = (*AVERAGED_OUTPUTS, SQUARED_ERROR_OUTPUT)

    def __init__(self, model_name: str, keys: list[metric_types.MetricKey]):
        self._model_name = model_name
        self._keys = keys

    def create_accumulator(self) -> np.ndarray:
        return np.zeros(len(self._SUMMED) + 1)

    def add_input(self, accumulator: np.ndarray,
                  element: metric_types.StandardMetricInputs) -> np.ndarray:
        predictions = element.predictions
        if self._model_name in predictions:  # several models: predictions by model name
            predictions = predictions[self._model_name]
        accumulator[:-1] += [np.asarray(predictions[name]).item() for name in self._SUMMED]
        accumulator[-1] += 1
        return accumulator

    def merge_accumulators(self, accumulators) -> np.ndarray:
        return np.sum(list(accumulators), axis=0)

    def extract_output(self, accumulator: np.ndarray) -> dict[metric_types.MetricKey, Any]:
        count = accumulator[-1]
        means = accumulator[:-1] / count if count else np.full(len(self._SUMMED), np.nan)
        values = [*means[:-1], float(np.sqrt(means[-1])), float(count)]
        return {key: float(value) for key, value in zip(self._keys, values, strict=True)}
