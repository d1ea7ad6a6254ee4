"""`python -m pipeline.inspect` on the store that the end-to-end runs wrote."""

import json
import os
import sqlite3

import pytest

from pipeline import configs, metadata
from pipeline import inspect as inspect_cli


def _run(capsys, *argv):
    code = inspect_cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _json(capsys, store, *argv):
    code, out, err = _run(capsys, "--metadata", store.path, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_runs_lists_both_runs_with_cached_and_executed_components(capsys, pipeline_store):
    runs = {run["id"]: run for run in _json(capsys, pipeline_store, "runs")}
    blessed, rejected = runs[pipeline_store.blessed_run.id], runs[pipeline_store.rejected_run.id]
    assert blessed["state"] == rejected["state"] == "COMPLETE"
    assert len(blessed["executed"]) == 9 and blessed["cached"] == []
    assert {"Trainer", "Transform", "TfdsExampleGen"} <= set(rejected["cached"])
    assert "Evaluator" in rejected["executed"] and blessed["seconds"] > rejected["seconds"]
    killed = runs[pipeline_store.killed.run.id]
    assert killed["state"] == "ABANDONED" and killed["abandoned"] == ["Trainer"]
    code, table, _ = _run(capsys, "--metadata", pipeline_store.path, "runs")
    assert code == 0 and pipeline_store.blessed_run.name in table
    assert "abandoned: Trainer" in table


def test_artifacts_of_a_run_exist_on_disk_and_filter_by_type(capsys, pipeline_store):
    artifacts = _json(capsys, pipeline_store, "artifacts", "--run",
                      str(pipeline_store.blessed_run.id))
    assert {"Examples", "Schema", "ExampleStatistics", "TransformGraph", "Model",
            "ModelEvaluation", "ModelBlessing", "PushedModel"} <= {a["type"] for a in artifacts}
    assert all(os.path.exists(a["uri"]) for a in artifacts)
    [examples] = [a for a in artifacts if a["type"] == "Examples"]
    assert examples["properties"]["split_names"] == '["train", "eval", "movies"]'
    assert examples["properties"]["split_protocol"] == "random"
    assert examples["properties"]["split_rule"].startswith("random eval_fraction=0.2 seed=42 ")
    [model] = _json(capsys, pipeline_store, "artifacts", "--run", pipeline_store.blessed_run.name,
                    "--type", "Model")
    trainer = pipeline_store.components(pipeline_store.blessed_run)["Trainer"]
    assert model["id"] == trainer.outputs["model"][0].id


def test_metrics_equal_the_evaluation_artifact_and_compare_two_runs(capsys, pipeline_store):
    report = _json(capsys, pipeline_store, "metrics", "--run", str(pipeline_store.blessed_run.id))
    evaluator = pipeline_store.components(pipeline_store.blessed_run)["Evaluator"]
    uri = evaluator.outputs["evaluation"][0].uri
    assert report["evaluation_uri"] == uri and report["blessed"] is True
    assert report["metrics"] == metadata.evaluation_metrics(uri)
    assert {"top_1_accuracy", "top_100_accuracy_unrated", "root_mean_squared_error"} <= set(
        report["metrics"])

    diff = _json(capsys, pipeline_store, "metrics", "--compare",
                 str(pipeline_store.blessed_run.id), str(pipeline_store.rejected_run.id))
    assert diff["blessed"] == [True, False]
    first, second = diff["metrics"]["root_mean_squared_error"]
    assert first == pytest.approx(second)  # same (cached) model, evaluated twice


def test_lineage_of_the_pushed_model_reaches_the_source_dataset(capsys, pipeline_store):
    report = _json(capsys, pipeline_store, "lineage", "pushed")
    assert report["artifact"]["type"] == "PushedModel"
    components = [step["component"] for step in report["lineage"]]
    assert components[0] == "Pusher"
    assert {"Trainer", "Transform", "ImportSchemaGen", "TfdsExampleGen"} <= set(components)
    [example_gen] = [s for s in report["lineage"] if s["component"] == "TfdsExampleGen"]
    assert example_gen["properties"]["dataset"] == "movielens/100k-ratings"
    assert example_gen["properties"]["split_seed"] == 42
    assert example_gen["properties"]["split_protocol"] == "random"
    assert example_gen["properties"]["max_eval_ratings"] == configs.MAX_EVAL_RATINGS
    assert example_gen["properties"]["raw_dir"] == str(pipeline_store.raw_dir)
    [trainer] = [s for s in report["lineage"] if s["component"] == "Trainer"]
    assert {"examples", "transform_graph", "schema"} <= set(trainer["inputs"])
    code, table, _ = _run(capsys, "--metadata", pipeline_store.path, "lineage", "pushed")
    assert code == 0 and "<- TfdsExampleGen" in table


def test_clear_errors_for_missing_store_foreign_file_and_unknown_ids(capsys, pipeline_store,
                                                                     tmp_path):
    code, _, err = _run(capsys, "--metadata", str(tmp_path / "none.sqlite"), "runs")
    assert code == 2 and "No ML Metadata store" in err
    foreign = tmp_path / "foreign.sqlite"
    sqlite3.connect(foreign).execute("create table t (x)").connection.close()
    code, _, err = _run(capsys, "--metadata", str(foreign), "runs")
    assert code == 2 and "is not an ML Metadata store" in err and "CREATE TABLE" not in err
    not_sqlite = tmp_path / "notes.sqlite"
    not_sqlite.write_text("not a database")
    code, _, err = _run(capsys, "--metadata", str(not_sqlite), "runs")
    assert code == 2 and "is not an SQLite file" in err
    code, _, err = _run(capsys, "--metadata", pipeline_store.path, "lineage", "999999")
    assert code == 2 and "No artifact with id 999999" in err
    code, _, err = _run(capsys, "--metadata", pipeline_store.path, "metrics", "--run", "nope")
    assert code == 2 and "No pipeline run 'nope'" in err
