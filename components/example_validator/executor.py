"""ExampleValidator that stops the pipeline when the data breaks the curated schema.

The stock executor only records anomalies; training on such data would go on silently. This one
raises after validating every split, naming each split, feature and anomaly, so the run fails
before Transform and nothing downstream (Trainer, Pusher) runs.
"""

from __future__ import annotations

import re

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.components.example_validator import executor as stock_executor
from tfx.components.example_validator import labels


class DataValidationError(ValueError):
    """The examples break the schema; the message lists every anomaly."""


def describe_anomalies(anomalies: anomalies_pb2.Anomalies, split: str) -> list[str]:
    problems = [f"split {split!r}, feature {feature!r}: {info.short_description} "
                f"({info.description})" for feature, info in sorted(anomalies.anomaly_info.items())]
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        problems.append(f"split {split!r}, dataset: {info.short_description} ({info.description})")
    return problems


class Executor(stock_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties):
        self._problems: list[str] = []
        result = super().Do(input_dict, output_dict, exec_properties)
        if self._problems:
            raise DataValidationError(
                "The examples break the schema; fix the data or the schema in schemas/:\n  "
                + "\n  ".join(self._problems))
        return result

    def _Validate(self, inputs, outputs):
        anomalies = super()._Validate(inputs, outputs)
        split = re.search(r"Split-([^/]+)", outputs[labels.SCHEMA_DIFF_PATH]).group(1)
        self._problems.extend(describe_anomalies(anomalies, split))
        return anomalies
