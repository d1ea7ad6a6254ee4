import numpy as np
import pytest
from tensorflow_model_analysis.metrics import metric_types

from components import evaluation_contract as contract
from components.evaluator import metrics


def _outputs(value: float, squared_error: float) -> dict[str, np.ndarray]:
    outputs = {name: np.array([value], np.float32) for name in contract.AVERAGED_OUTPUTS}
    outputs[contract.SQUARED_ERROR_OUTPUT] = np.array([squared_error], np.float32)
    return outputs


def _results(combiner, elements, split_at: int) -> dict[str, float]:
    """Adds the elements to two accumulators, merges them, as Beam would."""
    first, second = combiner.create_accumulator(), combiner.create_accumulator()
    for element in elements[:split_at]:
        first = combiner.add_input(first, element)
    for element in elements[split_at:]:
        second = combiner.add_input(second, element)
    output = combiner.extract_output(combiner.merge_accumulators([first, second]))
    return {key.name: value for key, value in output.items()}


def test_means_rmse_and_count_over_all_examples():
    (computation,) = metrics.EvaluationMeans().computations(model_names=[""])
    elements = [metric_types.StandardMetricInputs(predictions=_outputs(value, error))
                for value, error in [(1.0, 1.0), (0.0, 4.0), (1.0, 0.0), (0.0, 3.0)]]
    results = _results(computation.combiner, elements, split_at=1)
    for name in contract.AVERAGED_OUTPUTS:
        assert results[name] == pytest.approx(0.5)
    assert results["root_mean_squared_error"] == pytest.approx(np.sqrt(2.0))
    assert results["example_count"] == 4


def test_each_model_reads_its_own_outputs_when_a_baseline_is_evaluated():
    computations = metrics.EvaluationMeans().computations(model_names=["candidate", "baseline"])
    elements = [metric_types.StandardMetricInputs(predictions={
        "candidate": _outputs(1.0, 0.25), "baseline": _outputs(0.0, 1.0)})] * 3
    by_model = {computation.keys[0].model_name: _results(computation.combiner, elements, 2)
                for computation in computations}
    assert by_model["candidate"]["top_10_accuracy"] == 1.0
    assert by_model["candidate"]["root_mean_squared_error"] == pytest.approx(0.5)
    assert by_model["baseline"]["top_10_accuracy"] == 0.0
    assert by_model["baseline"]["root_mean_squared_error"] == pytest.approx(1.0)


def test_no_examples_give_nan_not_a_crash():
    (computation,) = metrics.EvaluationMeans().computations(model_names=[""])
    results = _results(computation.combiner, [], split_at=0)
    assert np.isnan(results["top_10_accuracy"]) and results["example_count"] == 0
