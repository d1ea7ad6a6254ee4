from tensorflow_model_analysis.proto import config_pb2

from components.evaluator import eval_config


def _specs_by_output(config):
    return {spec.output_names[0] if spec.output_names else "": spec
            for spec in config.metrics_specs}


def test_every_k_with_and_without_rated_movies_and_rmse_are_reported():
    config = eval_config.build_eval_config(0.1, 1.2, 0.01, 0.02)
    specs = _specs_by_output(config)
    for k in (1, 5, 10, 50, 100):
        assert specs[f"top_{k}_accuracy"].metrics[0].class_name == "MeanPrediction"
        assert f"top_{k}_accuracy_unrated" in specs
    assert "scann_recall_at_10" in specs
    assert specs["rating"].metrics[0].class_name == "RootMeanSquaredError"
    assert config.model_specs[0].signature_name == "evaluation"
    assert config.model_specs[0].label_keys["rating"] == "user_rating"


def test_blessing_thresholds_absolute_and_against_the_baseline():
    specs = _specs_by_output(eval_config.build_eval_config(0.1, 1.2, 0.01, 0.02))
    accuracy = specs["top_100_accuracy"].metrics[0].threshold
    assert accuracy.value_threshold.lower_bound.value == 0.1
    assert accuracy.change_threshold.direction == config_pb2.MetricDirection.HIGHER_IS_BETTER
    assert accuracy.change_threshold.absolute.value == -0.01
    rmse = specs["rating"].metrics[0].threshold
    assert rmse.value_threshold.upper_bound.value == 1.2
    assert rmse.change_threshold.direction == config_pb2.MetricDirection.LOWER_IS_BETTER
    assert rmse.change_threshold.absolute.value == 0.02
    assert not specs["top_10_accuracy"].metrics[0].HasField("threshold")
