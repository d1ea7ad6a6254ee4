from tensorflow_model_analysis.metrics import metric_specs
from tensorflow_model_analysis.proto import config_pb2

from components.evaluator import eval_config, metrics


def test_one_metric_reports_every_k_with_and_without_rated_movies_and_rmse():
    config = eval_config.build_eval_config(0.1, 1.2, 0.01, 0.02)
    (spec,) = config.metrics_specs
    (metric,) = spec.metrics
    instance = metric_specs.metric_instance(metric)
    assert isinstance(instance, metrics.EvaluationMeans)
    names = {key.name for computation in instance.computations(config, model_names=[""])
             for key in computation.keys}
    assert names == {*(f"top_{k}_accuracy{suffix}" for k in (1, 5, 10, 50, 100)
                       for suffix in ("", "_unrated")),
                     "scann_recall_at_10", "root_mean_squared_error", "example_count"}
    assert config.model_specs[0].signature_name == "evaluation"


def test_blessing_thresholds_absolute_and_against_the_baseline():
    config = eval_config.build_eval_config(0.1, 1.2, 0.01, 0.02)
    thresholds = config.metrics_specs[0].thresholds
    assert set(thresholds) == {"top_100_accuracy", "root_mean_squared_error"}
    accuracy = thresholds["top_100_accuracy"]
    assert accuracy.value_threshold.lower_bound.value == 0.1
    assert accuracy.change_threshold.direction == config_pb2.MetricDirection.HIGHER_IS_BETTER
    assert accuracy.change_threshold.absolute.value == -0.01
    rmse = thresholds["root_mean_squared_error"]
    assert rmse.value_threshold.upper_bound.value == 1.2
    assert rmse.change_threshold.direction == config_pb2.MetricDirection.LOWER_IS_BETTER
    assert rmse.change_threshold.absolute.value == 0.02


def test_thresholds_are_keyed_like_the_metrics_they_check():
    config = eval_config.build_eval_config(0.1, 1.2, 0.01, 0.02)
    thresholds = metric_specs.metric_thresholds_from_metrics_specs(config.metrics_specs,
                                                                   config)
    instance = metric_specs.metric_instance(config.metrics_specs[0].metrics[0])
    computed = {key for computation in instance.computations(config, model_names=[""])
                for key in computation.keys}
    checked = {key for key in thresholds if not key.is_diff}
    assert {key.name for key in checked} == {"top_100_accuracy", "root_mean_squared_error"}
    assert checked <= computed
