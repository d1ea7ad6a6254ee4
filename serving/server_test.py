"""The server against TF Serving's REST and gRPC contracts, on a real SavedModel with a ScaNN
index; version handling through ModelManager's polls, one at a time."""

from __future__ import annotations

import concurrent.futures
import shutil

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import grpc_service, models
from serving.__main__ import parse_args
from serving.testing import add_version, get_json, save_toy_model, start_server, wait_for

PREDICT = "/v1/models/movielens:predict"


def exact_top_titles(toy_model, users):
    loaded = models.LoadedVersion(1, str(toy_model))
    return loaded.predict("", {"user_id": np.array(users, dtype=object)})["titles"]


def test_direct_calls_answer_as_the_signatures(toy_model):
    loaded = models.LoadedVersion(1, str(toy_model))
    inputs = {"user_id": np.array(["alice", "nobody"], dtype=object),
              "timestamp": np.array([1, 2], np.int64)}
    for name, function in loaded.signatures.items():
        arguments = {input_name: inputs[input_name] for input_name in loaded.input_names(name)}
        direct = models.DirectCall(function)(**arguments)
        expected = function(**{input_name: tf.constant(value)
                                for input_name, value in arguments.items()})
        assert direct.keys() == expected.keys()
        for output, value in expected.items():
            assert isinstance(direct[output], np.ndarray)
            np.testing.assert_array_equal(direct[output], value.numpy())


@pytest.mark.parametrize("array", [
    np.array([[b"Movie 1 (1990)", "Émile (2003)".encode(), b"\xff"]], dtype=object),
    np.array([[0.5, -2.25]], np.float32), np.zeros([0, 10], np.int32), np.array([3], np.int64),
    np.array([True, False]), np.array([1.5], np.float64), np.array([1.5], np.float16)])
def test_response_tensors_are_those_of_make_tensor_proto(array):
    proto = grpc_service.tensor_proto(array)
    expected = tf.make_tensor_proto(array)
    assert (proto.dtype, proto.tensor_shape) == (expected.dtype, expected.tensor_shape)
    read = tf.make_ndarray(proto)
    assert read.dtype == tf.make_ndarray(expected).dtype
    np.testing.assert_array_equal(read, array)


def test_numbers_are_answered_in_their_repeated_field_as_tf_serving_does():
    assert grpc_service.tensor_proto(np.array([0.5, 2.0], np.float32)).float_val == [0.5, 2.0]
    assert grpc_service.tensor_proto(np.array([[7]], np.int64)).int64_val == [7]
    assert grpc_service.tensor_proto(np.array([True])).bool_val == [True]


def test_row_and_columnar_predict_answer_as_tf_serving(served_toy, toy_model):
    expected = [[title.decode() for title in row]
                for row in exact_top_titles(toy_model, [b"alice", b"bob"])]
    status, body = get_json(served_toy.url(PREDICT), {"instances": ["alice", "bob"]})
    assert status == 200
    assert [row["titles"] for row in body["predictions"]] == expected
    assert all(len(row["scores"]) == 3 for row in body["predictions"])
    status, body = get_json(served_toy.url(PREDICT),
                            {"instances": [{"user_id": "alice"}, {"user_id": "bob"}]})
    assert [row["titles"] for row in body["predictions"]] == expected
    status, body = get_json(served_toy.url(PREDICT), {"inputs": {"user_id": ["alice", "bob"]}})
    assert status == 200 and body["outputs"]["titles"] == expected
    status, body = get_json(served_toy.url("/v1/models/movielens/versions/1:predict"),
                            {"signature_name": "rating", "inputs": {
                                "user_id": ["alice", "nobody"], "timestamp": [1, 2]}})
    assert status == 200 and body["outputs"] == [5.0, 3.0]  # one output: a bare value
    status, body = get_json(served_toy.url(PREDICT), {"signature_name": "rating", "instances": [
        {"user_id": {"b64": "Ym9i"}, "timestamp": 7}]})
    assert status == 200 and body["predictions"] == [5.0]


def test_status_and_metadata(served_toy):
    status, body = get_json(served_toy.url("/v1/models/movielens"))
    assert status == 200 and body == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK",
                                                          "error_message": ""}}]}
    status, body = get_json(served_toy.url("/v1/models/movielens/versions/1/metadata"))
    assert status == 200 and body["model_spec"] == {"name": "movielens", "signature_name": "",
                                                    "version": "1"}
    signature = body["metadata"]["signature_def"]["signature_def"]["rating"]
    assert signature["inputs"]["timestamp"]["dtype"] == "DT_INT64"
    assert signature["outputs"]["rating"]["dtype"] == "DT_FLOAT"


@pytest.mark.parametrize("path, body, code, message", [
    (PREDICT, b"{not json", 400, "not valid JSON"),
    (PREDICT, {"signature_name": "nope", "instances": ["alice"]}, 404,
     'Serving signature name: "nope" not found'),
    (PREDICT, {"instances": ["alice"], "inputs": ["alice"]}, 400, "exactly one of"),
    (PREDICT, {"signature_name": "rating", "instances": [{"user_id": "alice"}]}, 400,
     "Instance 0 has inputs ['user_id']; the signature takes ['timestamp', 'user_id']"),
    (PREDICT, {"signature_name": "rating", "inputs": {"user_id": ["alice"],
                                                       "timestamp": ["noon"]}}, 400,
     "Input 'timestamp' must be int64 integers, got 'noon'"),
    (PREDICT, {"instances": [17]}, 400, "Input 'user_id' must be strings, got 17"),
    (PREDICT, {"inputs": [["alice"]]}, 400, "Input 'user_id' must have rank 1"),
    (PREDICT, {"signature_name": "catalogue", "instances": ["alice"]}, 400,
     "use the columnar format"),
    (PREDICT, {"instances": ["alice"] * 9}, 400,
     "Input 'user_id' has a batch of 9 rows; this server takes at most 8 per request"),
    ("/v1/models/other:predict", {"instances": ["alice"]}, 404, "Latest(other)"),
    ("/v1/models/movielens/versions/9:predict", {"instances": ["alice"]}, 404,
     "Specific(movielens, 9)"),
    ("/v1/models/movielens:classify", {"instances": ["alice"]}, 404, "Unsupported verb"),
])
def test_bad_requests_get_a_json_error_naming_the_problem(served_toy, path, body, code, message):
    status, answer = get_json(served_toy.url(path), body)
    assert status == code
    assert message in answer["error"]


def test_concurrent_requests_all_get_their_own_answer(served_toy, toy_model):
    users = ["alice", "bob", "carol", "nobody"] * 16
    expected = exact_top_titles(toy_model, [user.encode() for user in users])
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(
            lambda user: get_json(served_toy.url(PREDICT), {"instances": [user]}), users))
    assert [status for status, _ in answers] == [200] * len(users)
    assert [body["predictions"][0]["titles"] for _, body in answers] == [
        [title.decode() for title in row] for row in expected]


def test_grpc_predict_metadata_and_status_with_tf_serving_stubs(served_toy, toy_model):
    channel = grpc.insecure_channel(f"127.0.0.1:{served_toy.grpc_port}")
    prediction = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "movielens"
    request.inputs["user_id"].CopyFrom(tf.make_tensor_proto([b"carol", b"alice"]))
    request.output_filter.append("titles")
    response = prediction.Predict(request, timeout=30)
    assert list(response.outputs) == ["titles"]
    assert response.model_spec.version.value == 1
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["titles"]),
                                  exact_top_titles(toy_model, [b"carol", b"alice"]))

    metadata_request = get_model_metadata_pb2.GetModelMetadataRequest(
        metadata_field=["signature_def"])
    metadata_request.model_spec.name = "movielens"
    signatures = get_model_metadata_pb2.SignatureDefMap()
    prediction.GetModelMetadata(metadata_request).metadata["signature_def"].Unpack(signatures)
    assert {"serving_default", "rating", "catalogue"} <= set(signatures.signature_def)

    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec=metadata_request.model_spec))
    assert [(s.version, s.state) for s in status.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]

    request.model_spec.signature_name = "rating"
    with pytest.raises(grpc.RpcError) as error:
        prediction.Predict(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "missing ['timestamp']" in error.value.details()
    request.model_spec.signature_name = ""
    request.model_spec.version.value = 2
    with pytest.raises(grpc.RpcError) as error:
        prediction.Predict(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_new_versions_are_served_once_loaded_and_broken_ones_never(tmp_path, toy_model):
    base_path = tmp_path / "serving_model"
    base_path.mkdir()
    manager = models.ModelManager("movielens", str(base_path))
    with pytest.raises(models.Unavailable):
        manager.get("movielens")
    add_version(base_path, 1, toy_model)
    manager.poll()  # a version is loaded once its files hold still for one poll
    assert not manager.ready
    manager.poll()
    assert manager.get("movielens").version == 1

    # Half-copied: the graph without its variables. Reported, never served.
    half = base_path / "2"
    half.mkdir()
    (half / "saved_model.pb").write_bytes((toy_model / "saved_model.pb").read_bytes())
    manager.poll()
    manager.poll()
    statuses = {status.version: status for status in manager.statuses("movielens")}
    assert statuses[2].state == models.END and "failed to load" in statuses[2].error_message
    assert manager.get("movielens").version == 1
    manager.poll()  # unchanged files are not loaded again
    assert manager.statuses("movielens")[0].state == models.END

    # A copy still growing between polls waits; once complete, traffic moves and 1 unloads.
    (half / "variables").mkdir()
    for file in (toy_model / "variables").iterdir():
        (half / "variables" / file.name).write_bytes(file.read_bytes())
    (half / "assets").mkdir(exist_ok=True)
    manager.poll()
    assert manager.get("movielens").version == 1
    manager.poll()
    assert manager.get("movielens").version == 2
    assert [(status.version, status.state) for status in manager.statuses("movielens")] == [
        (2, models.AVAILABLE), (1, models.END)]
    with pytest.raises(models.NotFound, match=r"Specific\(movielens, 1\)"):
        manager.get("movielens", 1)

    # Rolling back: with the served version's directory removed, the newest one left is
    # served, and the removed version is no longer reported.
    shutil.rmtree(half)
    manager.poll()
    assert manager.get("movielens").version == 1
    manager.poll()
    assert [(status.version, status.state) for status in manager.statuses("movielens")] == [
        (1, models.AVAILABLE)]


def test_a_version_failing_its_warm_up_is_never_served(tmp_path, toy_model):
    base_path = tmp_path / "serving_model"
    base_path.mkdir()
    add_version(base_path, 1, toy_model)
    version_2 = add_version(base_path, 2, toy_model)
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = "rating"  # without its timestamp input: fails
    request.inputs["user_id"].CopyFrom(tf.make_tensor_proto([b"alice"]))
    (version_2 / "assets.extra").mkdir()
    with tf.io.TFRecordWriter(str(version_2 / models.WARMUP_FILE)) as writer:
        from tensorflow_serving.apis import prediction_log_pb2

        writer.write(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString())
    manager = models.ModelManager("movielens", str(base_path))
    manager.poll()
    manager.poll()
    assert not manager.ready
    assert "missing ['timestamp']" in manager.statuses("movielens", 2)[0].error_message


def test_hot_reload_and_vertex_ai_conventions_end_to_end(tmp_path, toy_model):
    base_path = tmp_path / "serving_model"
    base_path.mkdir()
    environ = {"AIP_STORAGE_URI": str(base_path), "AIP_HTTP_PORT": "0",
               "AIP_HEALTH_ROUTE": "/v1/endpoints/1/deployedModels/2",
               "AIP_PREDICT_ROUTE": "/v1/endpoints/1/deployedModels/2:predict"}
    server = start_server(None, environ)
    try:
        health = server.url(environ["AIP_HEALTH_ROUTE"])
        assert get_json(health)[0] == 503  # nothing to serve yet
        add_version(base_path, 1, toy_model)
        wait_for(lambda: get_json(health)[0] == 200)
        predict = server.url(environ["AIP_PREDICT_ROUTE"])
        status, body = get_json(predict, {"instances": [{"user_id": "alice", "timestamp": 1}],
                                          "parameters": {"signature_name": "rating"}})
        assert status == 200 and body == {"predictions": [5.0]}

        add_version(base_path, 2, save_toy_model(tmp_path / "shifted", offset=1.0))
        wait_for(lambda: get_json(server.url("/v1/models/movielens"))[1][
            "model_version_status"][0] == {"version": "2", "state": "AVAILABLE",
                                           "status": {"error_code": "OK", "error_message": ""}})
        status, body = get_json(predict, {"instances": [{"user_id": "alice", "timestamp": 1}],
                                          "parameters": {"signature_name": "rating"}})
        assert body == {"predictions": [13.0]}  # 2 + 8 * 1 + 3: the new version answers
    finally:
        server.stop()


def test_one_saved_model_as_the_base_path_is_version_1(toy_model):
    manager = models.ModelManager("movielens", str(toy_model))
    manager.poll()
    manager.poll()
    assert manager.get("movielens", 1).path == str(toy_model)


def test_command_line_needs_a_model_path(capsys):
    with pytest.raises(SystemExit):
        parse_args([], {})
    assert "--model-base-path is required (or set AIP_STORAGE_URI)" in capsys.readouterr().err
    assert parse_args([], {"AIP_STORAGE_URI": "gs://b/m", "AIP_HTTP_PORT": "8080"}).port == 8080
