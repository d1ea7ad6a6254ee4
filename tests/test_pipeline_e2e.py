"""The README's story: run the pipeline locally, inspect ML Metadata, query the pushed model."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

import local_runner
from components import features
from pipeline import metadata

PROJECT_ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = ["TfdsExampleGen", "StatisticsGen", "ImportSchemaGen", "StrictExampleValidator",
              "Transform", "Trainer", "latest_blessed_model_resolver", "Evaluator", "Pusher"]


def test_every_component_completed_and_its_artifacts_exist(pipeline_store):
    runs = pipeline_store.components(pipeline_store.blessed_run).values()
    assert sorted(run.component for run in runs) == sorted(COMPONENTS)
    assert {run.state for run in runs} == {"COMPLETE"}
    for run in runs:
        for artifacts in run.outputs.values():
            for artifact in artifacts:
                assert os.path.exists(artifact.uri), (run.component, artifact.uri)


def test_evaluation_is_finite_blessed_and_pushed(pipeline_store):
    output_dir = pipeline_store.output_dir
    by_component = pipeline_store.components(pipeline_store.blessed_run)
    metrics = metadata.evaluation_metrics(by_component["Evaluator"].outputs["evaluation"][0].uri)
    for k in (1, 5, 10, 50, 100):
        for name in (f"top_{k}_accuracy", f"top_{k}_accuracy_unrated"):
            assert 0.0 <= metrics[name] <= 1.0 and math.isfinite(metrics[name])
    assert metrics["top_1_accuracy"] <= metrics["top_10_accuracy"] <= metrics["top_100_accuracy"]
    # The sample has learnable taste groups: clearly better than chance (top-10 of the ~120
    # titles a user has not rated: ~0.08 at random).
    assert metrics["top_10_accuracy_unrated"] > 0.15
    assert 0.3 < metrics["root_mean_squared_error"] < 1.3
    assert metrics["scann_recall_at_10"] >= 0.9
    blessing = by_component["Evaluator"].outputs["blessing"][0]
    assert blessing.custom_properties["blessed"].int_value == 1
    pushed = by_component["Pusher"].outputs["pushed_model"][0]
    assert pushed.custom_properties["pushed"].int_value == 1
    destination = pushed.custom_properties["pushed_destination"].string_value
    assert Path(destination).parent == output_dir / "serving_model"
    assert (Path(destination) / "saved_model.pb").exists()


def _rated_in_training(pipeline_store) -> dict[str, set[str]]:
    examples = pipeline_store.components(pipeline_store.blessed_run)["TfdsExampleGen"]
    train_files = tf.io.gfile.glob(metadata.split_files(examples.outputs["examples"][0],
                                                        features.TRAIN_SPLIT))
    rated: dict[str, set[str]] = {}
    for record in tf.data.TFRecordDataset(train_files, "GZIP"):
        example = tf.train.Example.FromString(record.numpy()).features.feature
        rated.setdefault(example["user_id"].bytes_list.value[0].decode(), set()).add(
            example["movie_title"].bytes_list.value[0].decode())
    return rated


def test_pushed_model_answers_in_a_fresh_process(pipeline_store, raw_dir):
    output_dir = pipeline_store.output_dir
    [version] = os.listdir(output_dir / "serving_model")
    script = f"""
import json, components, tensorflow as tf
components.stack.register_scann_ops()
model = tf.saved_model.load({str(output_dir / "serving_model" / version)!r})
users = tf.constant([str(u).encode() for u in range(1, 41)] + [b"no-such-user"])
scann = model.signatures["serving_default"](user_id=users)
exact = model.signatures["brute_force"](user_id=users)
unrated = model.signatures["unrated"](user_id=users)
catalogue = model.signatures["catalogue_scores"](user_id=users)
# Long after every rating, time weighs the history uniformly: the user-id-only answers.
much_later = tf.fill(tf.shape(users), tf.constant(4_000_000_000, tf.int64))
scann_much_later = model.signatures["at_time"](user_id=users, timestamp=much_later)
catalogue_much_later = model.signatures["catalogue_scores_at_time"](user_id=users,
                                                                    timestamp=much_later)
rating = model.signatures["rating"](user_id=tf.constant([b"1", b"1"]),
                                    movie_title=tf.constant([b"Movie 1 (1950)", b"Unknown"]))
rating_much_later = model.signatures["rating_at_time"](
    user_id=tf.constant([b"1", b"1"]), movie_title=tf.constant([b"Movie 1 (1950)", b"Unknown"]),
    timestamp=much_later[:2])
print(json.dumps({{"scann": scann["titles"].numpy().astype(str).tolist(),
                  "exact": exact["titles"].numpy().astype(str).tolist(),
                  "scores": exact["scores"].numpy().tolist(),
                  "unrated": unrated["titles"].numpy().astype(str).tolist(),
                  "unrated_scores": unrated["scores"].numpy().tolist(),
                  "catalogue": catalogue["titles"].numpy().astype(str).tolist(),
                  "catalogue_scores": catalogue["scores"].numpy().tolist(),
                  "scann_much_later": scann_much_later["titles"].numpy().astype(str).tolist(),
                  "catalogue_scores_much_later":
                      catalogue_much_later["scores"].numpy().tolist(),
                  "rating": rating["rating"].numpy().tolist(),
                  "known_title": rating["known_title"].numpy().tolist(),
                  "rating_much_later": rating_much_later["rating"].numpy().tolist()}}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=PROJECT_ROOT, check=True)
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    titles = {line.split("|")[1] for line in (raw_dir / "u.item").read_text().splitlines()}
    assert all(len(row) == 10 and set(row) <= titles for row in answers["scann"])
    assert all(scores == sorted(scores, reverse=True) for scores in answers["scores"])
    agreement = sum(len(set(s) & set(e))
                    for s, e in zip(answers["scann"], answers["exact"], strict=True))
    assert agreement / (10 * len(answers["exact"])) >= 0.9
    assert all(1.0 <= r <= 5.0 for r in answers["rating"])  # within the stars
    assert answers["known_title"] == [True, False]
    np.testing.assert_allclose(answers["rating_much_later"], answers["rating"], atol=1e-4)
    np.testing.assert_allclose(answers["catalogue_scores_much_later"],
                               answers["catalogue_scores"], atol=1e-4)
    agreement = sum(len(set(s) & set(e)) for s, e in zip(answers["scann"],
                                                          answers["scann_much_later"], strict=True))
    assert agreement / (10 * len(answers["scann"])) >= 0.95

    # `unrated` is ScaNN's answer among the titles each user did not rate in training.
    rated = _rated_in_training(pipeline_store)
    users = [str(u) for u in range(1, 41)] + ["no-such-user"]
    agreement = 0
    for user, titles, scores, all_scores in zip(users, answers["unrated"],
                                                answers["unrated_scores"],
                                                answers["catalogue_scores"], strict=True):
        seen = rated.get(user, set())
        assert len(titles) == 10 and not set(titles) & seen
        assert scores == sorted(scores, reverse=True)
        exact_unrated = sorted((title for title in answers["catalogue"] if title not in seen),
                               key=lambda t: -all_scores[answers["catalogue"].index(t)])[:10]
        agreement += len(set(titles) & set(exact_unrated))
    assert agreement / (10 * len(users)) >= 0.9
    # The filter matters: unfiltered answers do hold rated titles.
    assert any(set(row) & rated.get(user, set())
               for user, row in zip(users, answers["exact"], strict=True))


def test_the_model_server_serves_the_pushed_model_over_rest_and_grpc(pipeline_store):
    """`python -m serving` on the Pusher's base path, as a user runs it, answers as the
    SavedModel does."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from components import stack
    from serving.testing import get_json, start_server, wait_for

    base_path = pipeline_store.output_dir / "serving_model"
    [version] = os.listdir(base_path)
    stack.register_scann_ops()
    model = tf.saved_model.load(str(base_path / version))
    users = ["1", "2", "no-such-user"]
    expected = model.signatures["brute_force"](user_id=tf.constant(users))
    server = start_server(base_path)
    try:
        wait_for(lambda: get_json(server.url("/healthz"))[0] == 200)
        status, body = get_json(server.url("/v1/models/movielens:predict"),
                                {"signature_name": "brute_force", "instances": users})
        assert status == 200
        assert [row["titles"] for row in body["predictions"]] == \
            expected["titles"].numpy().astype(str).tolist()
        np.testing.assert_allclose([row["scores"] for row in body["predictions"]],
                                   expected["scores"].numpy(), rtol=1e-5)
        assert get_json(server.url("/v1/models/movielens"))[1]["model_version_status"][0][
            "version"] == version
        status, body = get_json(server.url("/v1/models/movielens:predict"), {
            "signature_name": "at_time_with_recent", "instances": [{
                "user_id": "1", "timestamp": 900_000_000,
                "recent_titles": ["Movie 1 (1950)", ""], "recent_timestamps": [899_999_990, 0],
                "recent_ratings": [5, 0]}]})
        assert status == 200 and len(body["predictions"][0]["titles"]) == 10

        request = predict_pb2.PredictRequest()
        request.model_spec.name = "movielens"
        request.model_spec.signature_name = "rating"
        request.inputs["user_id"].CopyFrom(tf.make_tensor_proto(["1", "1"]))
        request.inputs["movie_title"].CopyFrom(
            tf.make_tensor_proto(["Movie 1 (1950)", "Unknown"]))
        stub = prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
        response = stub.Predict(request, timeout=60)
        direct = model.signatures["rating"](user_id=tf.constant(["1", "1"]),
                                            movie_title=tf.constant(["Movie 1 (1950)",
                                                                     "Unknown"]))
        # Read as the README's client reads it: TF Serving's repeated field.
        np.testing.assert_allclose(response.outputs["rating"].float_val,
                                   direct["rating"].numpy(), rtol=1e-5)
        assert response.outputs["known_title"].bool_val == [True, False]
    finally:
        server.stop()


def test_unreachable_thresholds_block_the_push_and_are_named(pipeline_store):
    runs = pipeline_store.components(pipeline_store.rejected_run)
    assert runs["Trainer"].state == "CACHED"
    assert runs["Evaluator"].outputs["blessing"][0].custom_properties["blessed"].int_value == 0
    assert runs["Pusher"].outputs["pushed_model"][0].custom_properties["pushed"].int_value == 0
    assert len(os.listdir(pipeline_store.output_dir / "serving_model")) == 1
    # (The run's exit status, NOT_BLESSED, is checked where the fixture runs it.)
    accuracy = metadata.evaluation_metrics(runs["Evaluator"].outputs["evaluation"][0].uri)[
        "top_100_accuracy"]
    failed = [line for line in pipeline_store.rejected_output.splitlines()
              if "failed threshold" in line]
    assert failed == [f"  failed threshold: top_100_accuracy: {accuracy:.4f}, needs >= 1.0100 "
                      "(absolute)"]
    assert "not blessed: nothing pushed (exit status 3)" in pipeline_store.rejected_output


def test_a_second_run_into_a_busy_output_dir_is_refused(pipeline_store):
    killed = pipeline_store.killed
    assert killed.beside_exit_code == local_runner.BUSY
    assert f"Output directory {str(pipeline_store.output_dir)!r} is in use by another run (pid " \
        in killed.beside_error and "pass another --output-dir" in killed.beside_error


def test_a_run_killed_in_the_trainer_is_marked_abandoned_and_its_partial_model_removed(
        pipeline_store):
    killed = pipeline_store.killed
    runs = pipeline_store.components(killed.run)
    assert runs["Trainer"].state == "ABANDONED"
    assert {runs[name].state for name in ("TfdsExampleGen", "Transform")} == {"CACHED"}
    assert "Evaluator" not in runs and "Pusher" not in runs
    assert not killed.partial_model.exists()
    assert (f"Marked Trainer (execution {runs['Trainer'].execution_id}) of a run that ended "
            "unfinished as FAILED") in killed.abandoned_message
    assert str(killed.partial_model) in killed.abandoned_message
    # The re-run after it reused the first run's model: nothing trained or pushed again.
    assert pipeline_store.components(pipeline_store.repeated_run)["Trainer"].state == "CACHED"


def test_identical_rerun_executes_nothing_and_pushes_no_new_version(pipeline_store):
    runs = pipeline_store.components(pipeline_store.repeated_run)
    executed = {name for name, run in runs.items() if run.state != "CACHED"}
    # The importer and the resolver are no executions of their own: they resolve artifacts.
    assert executed <= {"ImportSchemaGen", "latest_blessed_model_resolver"}, executed
    first = pipeline_store.components(pipeline_store.blessed_run)
    assert (runs["Pusher"].outputs["pushed_model"][0].id
            == first["Pusher"].outputs["pushed_model"][0].id)
    assert len(os.listdir(pipeline_store.output_dir / "serving_model")) == 1


def _with_ratings(raw_dir: Path, target: Path, ratings_lines: list[str]) -> Path:
    """A copy of `raw_dir` in `target` whose u.data holds `ratings_lines`."""
    target.mkdir()
    for name in ("u.item", "u.user"):
        (target / name).write_bytes((raw_dir / name).read_bytes())
    (target / "u.data").write_text("\n".join(ratings_lines) + "\n")
    return target


def test_data_breaking_the_schema_stops_before_training(tmp_path, raw_dir, capsys):
    lines = (raw_dir / "u.data").read_text().splitlines()
    user, movie, _, timestamp = lines[3].split("\t")
    lines[3] = f"{user}\t{movie}\t9\t{timestamp}"  # a 9-star rating
    broken = _with_ratings(raw_dir, tmp_path / "raw", lines)

    exit_code = local_runner.main(["--output-dir", str(tmp_path / "out"),
                                   "--raw-dir", str(broken)])
    assert exit_code == 1
    assert "feature 'user_rating'" in capsys.readouterr().err
    store = metadata.open_store(str(tmp_path / "out" / "metadata.sqlite"))
    ran = {r.component for r in metadata.component_runs(store, metadata.latest_run_context(store))}
    assert "Trainer" not in ran and "Transform" not in ran
    assert not (tmp_path / "out" / "serving_model").exists()


def test_a_malformed_ratings_line_is_named_and_nothing_is_pushed(tmp_path, raw_dir, capsys):
    lines = (raw_dir / "u.data").read_text().splitlines()
    malformed = _with_ratings(raw_dir, tmp_path / "malformed", [lines[0], "1\t2\t3", *lines[1:]])

    exit_code = local_runner.main(["--output-dir", str(tmp_path / "out"),
                                   "--raw-dir", str(malformed)])
    assert exit_code == 1
    assert "u.data, line 2: expected 4 fields" in capsys.readouterr().err
    assert not (tmp_path / "out" / "serving_model").exists()
