"""Compiling for Kubeflow / Vertex, and what a submission sends (to a local recording server)."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

import kubeflow_v2_runner
from components.example_gen import tfds_source
from components.source_fingerprint import step_source_fingerprint
from components.trainer.config import ModelConfig
from pipeline import configs
from tests.kfp_launcher import KfpLauncher
from tests.recording_server import RecordingServer

PROJECT_ROOT = Path(__file__).resolve().parent.parent
IMAGE = "europe-docker.pkg.dev/acme/recsys/movielens:1.0"
ROOT = "gs://acme-pipelines/movielens"
# Each component's task; the Resolver compiles to two resolver tasks.
DATA_FLOW = [("TfdsExampleGen", "StatisticsGen"), ("StatisticsGen", "StrictExampleValidator"),
             ("ImportSchemaGen", "StrictExampleValidator"), ("StrictExampleValidator", "Transform"),
             ("Transform", "Trainer"), ("Trainer", "Evaluator"), ("Evaluator", "Pusher")]


def _compile(tmp_path, *extra):
    output = tmp_path / "pipeline.json"
    code = kubeflow_v2_runner.main(["--image", IMAGE, "--pipeline-root", ROOT,
                                    "--output", str(output), *extra])
    assert code == 0
    return output, json.loads(output.read_text())


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    return _compile(tmp_path_factory.mktemp("kfp"), "--epochs", "7")


def _trainer_custom_config(job):
    parameters = job["pipelineSpec"]["root"]["dag"]["tasks"]["Trainer"]["inputs"]["parameters"]
    return json.loads(parameters["custom_config"]["runtimeValue"]["constantValue"]["stringValue"])


def test_compiled_json_is_a_kfp_pipeline_spec_and_a_vertex_pipeline_job(compiled):
    path, job = compiled
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    assert spec.pipeline_info.name == configs.PIPELINE_NAME
    vertex_job = aiplatform_v1.PipelineJob.from_json(path.read_text())
    assert vertex_job.runtime_config.gcs_output_directory == ROOT


def test_one_task_per_component_in_dependency_order(compiled):
    _, job = compiled
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    assert {"TfdsExampleGen", "StatisticsGen", "ImportSchemaGen", "StrictExampleValidator",
            "Transform", "Trainer", "Evaluator", "Pusher"} <= set(tasks)
    assert len([t for t in tasks if t.startswith("latest_blessed_model_resolver")]) == 2
    for upstream, downstream in DATA_FLOW:
        assert upstream in tasks[downstream].get("dependentTasks", []), (upstream, downstream)


def test_image_parameters_and_no_local_paths(compiled):
    _, job = compiled
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in executors.values() if "container" in e}
    assert images == {IMAGE}
    custom_config = _trainer_custom_config(job)
    # Every field of the model, so that the compiled job records the whole model it trains.
    assert ModelConfig.from_custom_config(custom_config) == dataclasses.replace(configs.MODEL,
                                                                               epochs=7)
    assert set(custom_config["model"]) == {f.name for f in dataclasses.fields(ModelConfig)}
    # The image must run the code the cache key was computed from.
    assert custom_config["source_fingerprint"] == step_source_fingerprint(configs.RUN_FN)
    text = json.dumps(job)
    assert os.getcwd() not in text and "/tmp/" not in text
    assert '"/pipeline/schemas/movielens-100k-ratings.pbtxt"' in text.replace('\\"', '"')
    assert f"{ROOT}/serving_model" in text and f"{ROOT}/tfds" in text


def test_dataflow_and_vertex_training_gpu_are_compiled_in(tmp_path):
    _, job = _compile(tmp_path, "--dataflow", "--dataflow-project", "acme",
                      "--dataflow-region", "europe-west4",
                      "--dataflow-temp-location", "gs://acme-tmp/beam",
                      "--vertex-training", "gpu", "--vertex-training-project", "acme",
                      "--vertex-training-region", "europe-west4")
    text = json.dumps(job)
    assert "--runner=DataflowRunner" in text and f"--sdk_container_image={IMAGE}" in text
    custom_config = _trainer_custom_config(job)
    assert custom_config["ai_platform_enable_vertex"] is True
    [pool] = custom_config["ai_platform_training_args"]["worker_pool_specs"]
    assert pool["machine_spec"]["accelerator_type"] == "NVIDIA_TESLA_T4"
    assert pool["container_spec"]["image_uri"] == IMAGE
    assert "google_cloud_ai_platform" in json.dumps(
        job["pipelineSpec"]["deploymentSpec"]["executors"]["Trainer_executor"])


@pytest.mark.parametrize("arguments, message", [
    (["--pipeline-name", "MovieLens_Recommender"], "is not valid for Kubeflow"),
    (["--image", " "], "--image must name"),
    (["--dataflow"], "--dataflow needs --dataflow-project"),
    (["--submit", "vertex"], "--submit vertex needs --project and --region"),
    (["--submit", "kfp"], "--submit kfp needs --endpoint"),
])
def test_bad_arguments_fail_with_a_clear_message(tmp_path, capsys, arguments, message):
    base = ["--image", IMAGE, "--pipeline-root", ROOT, "--output", str(tmp_path / "p.json")]
    assert kubeflow_v2_runner.main(base + arguments) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


def test_missing_image_is_refused(capsys):
    with pytest.raises(SystemExit):
        kubeflow_v2_runner.main(["--pipeline-root", ROOT])
    assert "--image" in capsys.readouterr().err


def test_a_non_positive_epoch_count_is_refused_by_the_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        kubeflow_v2_runner.main(["--image", IMAGE, "--pipeline-root", ROOT, "--epochs", "0"])
    assert exit_info.value.code == 2
    assert "argument --epochs: must be at least 1, got 0" in capsys.readouterr().err


def test_arguments_are_checked_without_importing_the_stack():
    script = ("import sys, kubeflow_v2_runner as runner\n"
              f"runner.check_args(runner.parse_args(['--image', {IMAGE!r}, '--pipeline-root', "
              f"{ROOT!r}, '--dataflow', '--dataflow-project', 'p', '--dataflow-region', 'r', "
              "'--dataflow-temp-location', 'gs://t']))\n"
              "print(sorted(m for m in ('tensorflow', 'tfx', 'tensorflow_datasets', 'apache_beam')"
              " if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.abspath(kubeflow_v2_runner.__file__)),
                            check=True)
    assert result.stdout.strip() == "[]"


@pytest.fixture
def server():
    recording = RecordingServer()
    yield recording
    recording.close()


def test_vertex_submission_sends_the_pipeline_job(compiled, server):
    path, _ = compiled
    args = kubeflow_v2_runner.parse_args([
        "--image", IMAGE, "--pipeline-root", ROOT, "--submit", "vertex", "--project", "acme",
        "--region", "europe-west4", "--service-account", "runner@acme.iam.gserviceaccount.com",
        "--label", "team=recsys", "--no-cache", "--api-endpoint", f"http://{server.address}"])
    name = kubeflow_v2_runner.submit_vertex(args, str(path), credentials=AnonymousCredentials())
    assert name == "projects/acme/locations/europe-west4/pipelineJobs/job-1"
    [request] = server.requests
    assert request["method"] == "POST"
    assert request["path"].startswith("/v1/projects/acme/locations/europe-west4/pipelineJobs")
    body = request["body"]
    assert body["serviceAccount"] == "runner@acme.iam.gserviceaccount.com"
    assert body["labels"]["team"] == "recsys"
    assert body["runtimeConfig"]["gcsOutputDirectory"] == ROOT
    tasks = body["pipelineSpec"]["root"]["dag"]["tasks"]
    assert all(task["cachingOptions"]["enableCache"] is False for task in tasks.values())


def test_vertex_without_credentials_fails_fast(compiled, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    args = kubeflow_v2_runner.parse_args([
        "--image", IMAGE, "--pipeline-root", ROOT, "--submit", "vertex", "--project", "acme",
        "--region", "europe-west4"])
    with pytest.raises(kubeflow_v2_runner.SubmitError, match="No Google Cloud credentials"):
        kubeflow_v2_runner.submit_vertex(args, str(compiled[0]))


def test_kfp_submission_creates_experiment_and_run(compiled, server, tmp_path):
    path, job = compiled
    copy = tmp_path / "pipeline.json"
    copy.write_text(path.read_text())
    args = kubeflow_v2_runner.parse_args([
        "--image", IMAGE, "--pipeline-root", ROOT, "--submit", "kfp",
        "--endpoint", f"http://{server.address}", "--experiment", "nightly"])
    assert kubeflow_v2_runner.submit_kfp(args, str(copy)) == "run-1"
    posts = [r for r in server.requests if r["method"] == "POST"]
    assert posts[0]["path"] == "/apis/v2beta1/experiments"
    assert posts[0]["body"]["display_name"] == "nightly"
    run = posts[1]["body"]
    assert posts[1]["path"] == "/apis/v2beta1/runs"
    assert run["experiment_id"] == "experiment-1"
    assert set(run["pipeline_spec"]["root"]["dag"]["tasks"]) == set(
        job["pipelineSpec"]["root"]["dag"]["tasks"])
    assert run["runtime_config"]["pipeline_root"] == ROOT


def test_kfp_unreachable_endpoint_fails_with_a_clear_message(compiled, tmp_path):
    copy = tmp_path / "pipeline.json"
    copy.write_text(compiled[0].read_text())
    args = kubeflow_v2_runner.parse_args([
        "--image", IMAGE, "--pipeline-root", ROOT, "--submit", "kfp",
        "--endpoint", "http://127.0.0.1:9"])
    with pytest.raises(kubeflow_v2_runner.SubmitError, match="could not be reached"):
        kubeflow_v2_runner.submit_kfp(args, str(copy))


def test_the_compiled_spec_runs_task_by_task_as_the_kfp_launcher_would(tmp_path, raw_dir):
    """Every task of the JSON a user submits, fed the executor input KFP's launcher builds
    (see tests/kfp_launcher.py), on data prepared where the spec's TFDS data dir points."""
    tfds_dir, root = tmp_path / "tfds", tmp_path / "root"
    for config in ("100k-ratings", "100k-movies"):
        tfds_source.prepare_from_raw_dir(config, str(raw_dir), str(tfds_dir))
    # One pass and thresholds any model meets: blessing on merit is the local runs' test.
    _, job = _compile(tmp_path, "--pipeline-root", str(root), "--tfds-data-dir", str(tfds_dir),
                      "--epochs", "1", "--min-top-100-accuracy", "0", "--max-rmse", "100")

    runs = {run.name: run for run in KfpLauncher(
        str(root), kubeflow_v2_runner.CONTAINER_PROJECT_DIR,
        str(PROJECT_ROOT)).run(job)}

    containers = {name for name, run in runs.items() if run.kind == "container"}
    assert containers == {"TfdsExampleGen", "ImportSchemaGen", "StatisticsGen",
                          "StrictExampleValidator", "Transform", "Trainer", "Evaluator",
                          "Pusher"}
    assert "components.example_gen.executor.Executor" in runs["TfdsExampleGen"].command
    # First run: no blessed model yet, so the resolvers hand the Evaluator no baseline.
    assert all(artifacts == [] for name, run in runs.items() if run.kind == "resolver"
               for artifacts in run.outputs.values())
    [examples] = runs["TfdsExampleGen"].outputs["examples"]
    assert json.loads(examples.metadata["split_names"]) == ["train", "eval", "movies"]
    assert examples.uri.startswith(str(root))
    [blessing] = runs["Evaluator"].outputs["blessing"]
    assert blessing.metadata["blessed"] == 1
    [pushed] = runs["Pusher"].outputs["pushed_model"]
    assert pushed.metadata["pushed"] == 1
    destination = pushed.metadata["pushed_destination"]
    assert destination.startswith(str(root / "serving_model"))
    assert os.path.exists(os.path.join(destination, "saved_model.pb"))
