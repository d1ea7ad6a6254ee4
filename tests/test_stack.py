"""The installed stack works for real: ScaNN in a SavedModel, ML Metadata, TFDS's MovieLens."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components import stack
from components.example_gen import synthetic, tfds_source
from components.trainer import serving

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def test_tf_keras_is_keras_2():
    assert tf.keras.__name__.startswith("tf_keras")


def test_the_exported_scann_index_survives_saved_model_round_trip_in_fresh_process(tmp_path):
    rng = np.random.default_rng(0)
    candidates = tf.constant(rng.normal(size=(500, 16)).astype("float32"))
    identifiers = tf.constant([f"item-{i}".encode() for i in range(500)])
    queries = rng.normal(size=(3, 16)).astype("float32")

    module = tf.Module()
    module.index = serving.ScannIndex(candidates, k=10)
    module.identifiers = tf.Variable(identifiers)
    module.search = tf.function(
        lambda queries: tf.gather(module.identifiers, module.index(queries)[1]),
        input_signature=[tf.TensorSpec([None, 16], tf.float32)])
    before = module.search(tf.constant(queries))
    tf.saved_model.save(
        module, str(tmp_path / "model"),
        options=tf.saved_model.SaveOptions(
            namespace_whitelist=list(stack.SCANN_SAVE_OPTIONS_NAMESPACES)))
    np.save(tmp_path / "queries.npy", queries)

    script = textwrap.dedent(f"""
        import components, numpy as np, tensorflow as tf
        components.stack.register_scann_ops()
        model = tf.saved_model.load({str(tmp_path / "model")!r})
        ids = model.search(tf.constant(np.load({str(tmp_path / "queries.npy")!r})))
        print("\\n".join(",".join(x.decode() for x in row) for row in ids.numpy()))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, cwd=PROJECT_ROOT)
    after = [line.split(",") for line in result.stdout.strip().splitlines()]
    assert after == [[x.decode() for x in row] for row in before.numpy()]


def test_ml_metadata_sqlite_store_round_trip(tmp_path):
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(tmp_path / "metadata.sqlite")
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
    store = metadata_store.MetadataStore(config)

    model_type = metadata_store_pb2.ArtifactType(name="Model")
    model_type.properties["version"] = metadata_store_pb2.INT
    model_type_id = store.put_artifact_type(model_type)
    trainer_type_id = store.put_execution_type(metadata_store_pb2.ExecutionType(name="Trainer"))

    artifact = metadata_store_pb2.Artifact(type_id=model_type_id, uri="/models/1")
    artifact.properties["version"].int_value = 1
    [artifact_id] = store.put_artifacts([artifact])
    execution = metadata_store_pb2.Execution(
        type_id=trainer_type_id, last_known_state=metadata_store_pb2.Execution.COMPLETE)
    [execution_id] = store.put_executions([execution])
    store.put_events([metadata_store_pb2.Event(
        artifact_id=artifact_id, execution_id=execution_id,
        type=metadata_store_pb2.Event.OUTPUT)])

    reopened = metadata_store.MetadataStore(config)
    [read_back] = reopened.get_artifacts_by_id([artifact_id])
    assert read_back.uri == "/models/1" and read_back.properties["version"].int_value == 1
    [event] = reopened.get_events_by_execution_ids([execution_id])
    assert event.artifact_id == artifact_id and event.type == metadata_store_pb2.Event.OUTPUT


def test_tfds_builds_movielens_100k_from_local_grouplens_files(tmp_path):
    raw_dir = synthetic.write_movielens_100k(tmp_path / "raw", num_users=20, num_movies=30,
                                             ratings_per_user=8)
    expected_ratings = len((raw_dir / "u.data").read_text().splitlines())
    data_dir = str(tmp_path / "tfds")
    tfds_source.prepare_from_raw_dir("100k-ratings", str(raw_dir), data_dir)

    dataset = tfds.load("movielens/100k-ratings", split="train", data_dir=data_dir,
                        download=False)
    records = list(tfds.as_numpy(dataset))
    assert len(records) == expected_ratings
    first_user, first_movie, first_rating, _ = (raw_dir / "u.data").read_text().split("\n")[0] \
        .split("\t")
    titles = dict(line.split("|")[:2] for line in (raw_dir / "u.item").read_text().splitlines())
    assert any(r["user_id"].decode() == first_user
               and r["movie_title"].decode() == titles[first_movie]
               and r["user_rating"] == float(first_rating) for r in records)
    assert {"bucketized_user_age", "user_occupation_text", "movie_genres", "timestamp",
            "user_zip_code", "user_gender", "raw_user_age"} <= set(records[0])


def test_small_machines_run_each_op_on_one_thread_as_many_at_once_as_cores(monkeypatch):
    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS", raising=False)
    monkeypatch.delenv("TF_NUM_INTEROP_THREADS", raising=False)
    monkeypatch.setattr(stack.os, "sched_getaffinity", lambda pid: {0, 1})
    assert stack.one_thread_per_op(max_cores=2) == {"TF_NUM_INTRAOP_THREADS": "1",
                                                    "TF_NUM_INTEROP_THREADS": "2"}
    assert (stack.os.environ["TF_NUM_INTRAOP_THREADS"],
            stack.os.environ["TF_NUM_INTEROP_THREADS"]) == ("1", "2")


def test_larger_machines_and_settings_made_by_hand_are_left_alone(monkeypatch):
    monkeypatch.delenv("TF_NUM_INTEROP_THREADS", raising=False)
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "4")
    monkeypatch.setattr(stack.os, "sched_getaffinity", lambda pid: set(range(8)))
    assert stack.one_thread_per_op(max_cores=2) == {}
    assert stack.one_thread_per_op(max_cores=0) == {}
    assert "TF_NUM_INTEROP_THREADS" not in stack.os.environ
    monkeypatch.setattr(stack.os, "sched_getaffinity", lambda pid: {0})
    assert stack.one_thread_per_op(max_cores=2) == {"TF_NUM_INTEROP_THREADS": "1"}
    assert stack.os.environ["TF_NUM_INTRAOP_THREADS"] == "4"
