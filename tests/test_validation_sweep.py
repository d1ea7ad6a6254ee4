"""The tuning harness trains on the fit part and scores only the validation slice."""

import json

import pytest

from benchmarks import validation_sweep


def test_sweep_scores_the_validation_slice_and_appends_its_rows(pipeline_store, tmp_path,
                                                                capsys):
    results = tmp_path / "sweep.json"
    results.write_text(json.dumps([{"overrides": {"earlier": "row"}}]))
    assert validation_sweep.main(['{"epochs": 1}', "--pipeline-dir",
                                  str(pipeline_store.output_dir), "--results",
                                  str(results)]) == 0
    rows = json.loads(results.read_text())
    assert rows[0] == {"overrides": {"earlier": "row"}}
    [row] = rows[1:]
    assert row["overrides"] == {"epochs": 1}
    assert 0.0 <= row["top_1_accuracy"] <= row["top_10_accuracy"] <= row["top_100_accuracy"] <= 1
    assert 0.0 < row["rmse"] < 5.0
    assert "| `{\"epochs\": 1}` |" in capsys.readouterr().out


def test_sweep_without_a_pipeline_run_says_what_to_do(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        validation_sweep.main(["{}", "--pipeline-dir", str(tmp_path)])
    assert exit_.value.code == 2
    assert "make bench" in capsys.readouterr().err
