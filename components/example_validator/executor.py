"""ExampleValidator that stops the pipeline when the data breaks the curated schema.

The stock executor only records anomalies; training on such data would go on silently. This one
raises after validating every split, naming each split, feature and anomaly, so the run fails
before Transform and nothing downstream (Trainer, Pusher) runs.
"""

from __future__ import annotations

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.components.example_validator import executor as stock_executor
from tfx.components.example_validator import labels
from tfx.types import artifact_utils, standard_component_specs


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
        self._anomalies = output_dict[standard_component_specs.ANOMALIES_KEY]
        self._split_names = artifact_utils.decode_split_names(artifact_utils.get_single_instance(
            input_dict[standard_component_specs.STATISTICS_KEY]).split_names)
        result = super().Do(input_dict, output_dict, exec_properties)
        if self._problems:
            raise DataValidationError(
                "The examples break the schema; fix the data or the schema in schemas/:\n  "
                + "\n  ".join(self._problems))
        return result

    def _Validate(self, inputs, outputs):
        anomalies = super()._Validate(inputs, outputs)
        self._problems.extend(describe_anomalies(anomalies, self._split_of(
            outputs[labels.SCHEMA_DIFF_PATH])))
        return anomalies

    def _split_of(self, anomalies_uri: str) -> str:
        """The split whose anomalies go to `anomalies_uri` (the stock executor writes each
        split's to its split URI, by TFX's split helpers)."""
        return next(split for split in self._split_names
                    if artifact_utils.get_split_uri(self._anomalies, split) == anomalies_uri)
