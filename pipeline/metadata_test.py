"""Reading the Evaluator's validation result, as TFMA writes it."""

import os

import tensorflow as tf
from tensorflow_model_analysis.proto import config_pb2, metrics_for_slice_pb2, validation_result_pb2

from pipeline import metadata


def _failure(name: str, value: float, threshold: config_pb2.MetricThreshold,
             is_diff: bool = False) -> validation_result_pb2.ValidationFailure:
    failure = validation_result_pb2.ValidationFailure(
        metric_key=metrics_for_slice_pb2.MetricKey(name=name, is_diff=is_diff),
        metric_threshold=threshold)
    failure.metric_value.double_value.value = value
    return failure


def test_failed_thresholds_name_the_metric_its_value_and_the_bound(tmp_path):
    absolute = config_pb2.MetricThreshold()
    absolute.value_threshold.lower_bound.value = 0.5
    change = config_pb2.MetricThreshold()
    change.change_threshold.direction = config_pb2.MetricDirection.LOWER_IS_BETTER
    change.change_threshold.absolute.value = 0.02
    result = validation_result_pb2.ValidationResult(validation_ok=False)
    result.metric_validations_per_slice.add().failures.extend([
        _failure("top_100_accuracy", 0.4312, absolute),
        _failure("root_mean_squared_error", 0.0513, change, is_diff=True)])
    with tf.io.TFRecordWriter(os.path.join(tmp_path, "validations.tfrecord")) as writer:
        writer.write(result.SerializeToString())

    assert metadata.failed_thresholds(str(tmp_path)) == [
        "top_100_accuracy: 0.4312, needs >= 0.5000 (absolute)",
        "root_mean_squared_error: change +0.0513 against the baseline, needs <= +0.0200"]
