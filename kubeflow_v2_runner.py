"""Compiles the pipeline for Kubeflow Pipelines 2.x / Vertex AI Pipelines; optionally submits it.

    python kubeflow_v2_runner.py --image IMAGE --pipeline-root gs://BUCKET/root
    python kubeflow_v2_runner.py ... --submit vertex --project P --region R [--service-account SA]
    python kubeflow_v2_runner.py ... --submit kfp --endpoint https://HOST [--experiment NAME]

The graph is the one `local_runner.py` runs (same `create_pipeline`); only flags differ. Step code
is referenced by import path and baked into IMAGE (see Dockerfile), so compiling needs no network.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import TYPE_CHECKING

import schemas
from components import stack
from components.example_gen import tfds_source
from pipeline import configs, runner_args

if TYPE_CHECKING:
    from tfx.orchestration.pipeline import Pipeline

# Where the Dockerfile puts the project inside the image.
CONTAINER_PROJECT_DIR = "/pipeline"
KFP_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")


class SubmitError(RuntimeError):
    """Submission cannot proceed (credentials, endpoint); the message says what to do."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", required=True,
                        help="container image of the components (built from the Dockerfile)")
    parser.add_argument("--pipeline-root", required=True,
                        help="where runs write artifacts: gs://... for Vertex, or any path the "
                             "cluster mounts")
    parser.add_argument("--output", default="pipeline.json", help="compiled pipeline file")
    parser.add_argument("--pipeline-name", default=configs.PIPELINE_NAME)
    parser.add_argument("--dataset", default=configs.DATASET)
    parser.add_argument("--tfds-data-dir",
                        help="TFDS data directory (default: <pipeline-root>/tfds)")
    parser.add_argument("--split", default=configs.SPLIT_PROTOCOL,
                        help="split protocol: random, time, time:Q, canonical:u1 ... (as "
                             "local_runner.py)")
    parser.add_argument("--epochs", type=runner_args.positive_int, default=configs.MODEL.epochs)
    parser.add_argument("--min-top-100-accuracy", type=float,
                        default=configs.MIN_TOP_100_ACCURACY)
    parser.add_argument("--max-rmse", type=float, default=configs.MAX_RMSE)

    dataflow = parser.add_argument_group("Dataflow (ExampleGen, StatisticsGen, Transform, "
                                         "Evaluator on Beam's DataflowRunner)")
    dataflow.add_argument("--dataflow", action="store_true")
    dataflow.add_argument("--dataflow-project")
    dataflow.add_argument("--dataflow-region")
    dataflow.add_argument("--dataflow-temp-location", help="gs://... for staging")
    dataflow.add_argument("--dataflow-max-workers", type=runner_args.positive_int, default=10)

    training = parser.add_argument_group("Vertex AI Training for the Trainer")
    training.add_argument("--vertex-training", choices=["cpu", "gpu"])
    training.add_argument("--vertex-training-project")
    training.add_argument("--vertex-training-region")
    training.add_argument("--vertex-training-machine-type")
    training.add_argument("--vertex-training-accelerator", default="NVIDIA_TESLA_T4")

    submit = parser.add_argument_group("submission")
    submit.add_argument("--submit", choices=["vertex", "kfp"])
    submit.add_argument("--project", help="Vertex: Google Cloud project")
    submit.add_argument("--region", help="Vertex: region, e.g. europe-west4")
    submit.add_argument("--service-account", help="Vertex: service account to run as")
    submit.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                        help="Vertex: run label (repeatable)")
    submit.add_argument("--no-cache", action="store_true", help="disable step caching")
    submit.add_argument("--endpoint", help="KFP: API endpoint, e.g. https://HOST")
    submit.add_argument("--experiment", default="movielens", help="KFP: experiment name")
    submit.add_argument("--api-endpoint", help=argparse.SUPPRESS)  # tests: a local server
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    if not KFP_NAME.fullmatch(args.pipeline_name):
        raise ValueError(f"Pipeline name {args.pipeline_name!r} is not valid for Kubeflow: use "
                         "lower-case letters, digits and '-', starting with a letter or digit "
                         "(at most 128 characters).")
    if not args.image.strip():
        raise ValueError("--image must name the components' container image.")
    tfds_source.parse_dataset_name(args.dataset)
    args.split = runner_args.split_protocol(args.split, args.dataset)
    if args.dataflow:
        missing = [flag for flag, value in (
            ("--dataflow-project", args.dataflow_project),
            ("--dataflow-region", args.dataflow_region),
            ("--dataflow-temp-location", args.dataflow_temp_location)) if not value]
        if missing:
            raise ValueError(f"--dataflow needs {', '.join(missing)}.")
    if args.vertex_training and not (args.vertex_training_project and
                                     args.vertex_training_region):
        raise ValueError("--vertex-training needs --vertex-training-project and "
                         "--vertex-training-region.")
    if args.submit == "vertex" and not (args.project and args.region):
        raise ValueError("--submit vertex needs --project and --region.")
    if args.submit == "kfp" and not args.endpoint:
        raise ValueError("--submit kfp needs --endpoint.")


def beam_pipeline_args(args: argparse.Namespace) -> list[str]:
    if not args.dataflow:
        return configs.BEAM_PIPELINE_ARGS
    return ["--runner=DataflowRunner", f"--project={args.dataflow_project}",
            f"--region={args.dataflow_region}", f"--temp_location={args.dataflow_temp_location}",
            f"--max_num_workers={args.dataflow_max_workers}",
            # Workers run the same image, so our preprocessing code and ScaNN ops are there.
            f"--sdk_container_image={args.image}", "--experiments=use_runner_v2"]


def vertex_job_spec(args: argparse.Namespace) -> dict | None:
    """A Vertex AI CustomJob spec for the Trainer: one worker, CPU or GPU, our image."""
    if not args.vertex_training:
        return None
    gpu = args.vertex_training == "gpu"
    machine = {"machine_type": args.vertex_training_machine_type
               or ("n1-standard-8" if gpu else "n1-standard-16")}
    if gpu:
        machine.update(accelerator_type=args.vertex_training_accelerator, accelerator_count=1)
    return {"project": args.vertex_training_project, "worker_pool_specs": [
        {"machine_spec": machine, "replica_count": 1,
         "container_spec": {"image_uri": args.image}}]}


def build_pipeline(args: argparse.Namespace) -> Pipeline:
    from pipeline.pipeline import create_pipeline

    root = args.pipeline_root.rstrip("/")
    schema = os.path.relpath(schemas.schema_path(args.dataset), os.path.dirname(
        os.path.dirname(schemas.__file__)))
    return create_pipeline(
        **runner_args.shared_pipeline_args(args.epochs, args.min_top_100_accuracy, args.max_rmse,
                                           args.split),
        pipeline_name=args.pipeline_name,
        pipeline_root=root,
        dataset=args.dataset,
        schema_path=f"{CONTAINER_PROJECT_DIR}/{schema}",
        serving_model_dir=f"{root}/serving_model",
        tfds_data_dir=args.tfds_data_dir or f"{root}/tfds",
        beam_pipeline_args=beam_pipeline_args(args),
        vertex_training_region=args.vertex_training_region,
        vertex_training_job_spec=vertex_job_spec(args),
        baseline_excludes_candidate=False,  # KFP compiles only TFX's stock resolver strategies
    )


def compile_pipeline(args: argparse.Namespace) -> str:
    """Writes the pipeline JSON; returns its path."""
    from tfx import v1 as tfx

    output = os.path.abspath(args.output)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=args.image),
        output_dir=os.path.dirname(output), output_filename=os.path.basename(output))
    runner.run(build_pipeline(args), write_out=True)
    return output


def _labels(pairs: list[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise ValueError(f"--label expects KEY=VALUE, got {pair!r}.")
        labels[key] = value
    return labels


def vertex_pipeline_job(args: argparse.Namespace, pipeline_file: str):
    """The Vertex AI PipelineJob that `--submit vertex` creates, from the compiled JSON."""
    from google.cloud import aiplatform_v1

    with open(pipeline_file) as handle:
        job = aiplatform_v1.PipelineJob.from_json(handle.read(), ignore_unknown_fields=False)
    job.display_name = args.pipeline_name
    job.runtime_config.gcs_output_directory = args.pipeline_root
    job.labels.update(_labels(args.label))
    if args.service_account:
        job.service_account = args.service_account
    if args.no_cache:
        for task in job.pipeline_spec["root"]["dag"]["tasks"].values():
            task["cachingOptions"] = {**task.get("cachingOptions", {}), "enableCache": False}
    return job


def submit_vertex(args: argparse.Namespace, pipeline_file: str, credentials=None) -> str:
    """Creates the pipeline job on Vertex AI Pipelines; returns its resource name."""
    import google.auth
    from google.auth import exceptions as auth_exceptions
    from google.cloud import aiplatform_v1

    job = vertex_pipeline_job(args, pipeline_file)
    if credentials is None:
        try:
            credentials, _ = google.auth.default()
        except auth_exceptions.DefaultCredentialsError as error:
            raise SubmitError(
                "No Google Cloud credentials: run `gcloud auth application-default login` or "
                f"set GOOGLE_APPLICATION_CREDENTIALS ({error}).") from error
    client = aiplatform_v1.PipelineServiceClient(
        credentials=credentials, transport="rest",
        client_options={"api_endpoint": args.api_endpoint
                        or f"https://{args.region}-aiplatform.googleapis.com"})
    try:
        created = client.create_pipeline_job(
            parent=f"projects/{args.project}/locations/{args.region}", pipeline_job=job,
            timeout=60)
    except Exception as error:
        raise SubmitError(f"Vertex AI refused or could not be reached: {error}") from error
    return created.name


def submit_kfp(args: argparse.Namespace, pipeline_file: str) -> str:
    """Submits to a Kubeflow Pipelines endpoint; returns the run id."""
    import kfp

    # TFX writes a Vertex PipelineJob; the KFP client takes the PipelineSpec inside it, as YAML
    # (of which JSON is a subset).
    with open(pipeline_file) as handle:
        job = json.load(handle)
    spec_file = os.path.splitext(pipeline_file)[0] + ".kfp.yaml"
    with open(spec_file, "w") as handle:
        json.dump(job["pipelineSpec"], handle, indent=1)
    try:
        client = kfp.Client(host=args.endpoint)
        run = client.create_run_from_pipeline_package(
            spec_file, arguments={}, run_name=args.pipeline_name,
            experiment_name=args.experiment, enable_caching=not args.no_cache,
            pipeline_root=args.pipeline_root)
    except Exception as error:
        raise SubmitError(f"Kubeflow Pipelines at {args.endpoint} refused or could not be "
                          f"reached: {type(error).__name__}: {error}") from error
    return run.run_id


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    stack.quiet_library_logs()
    try:
        check_args(args)
        pipeline_file = compile_pipeline(args)
        with open(pipeline_file) as handle:
            tasks = json.load(handle)["pipelineSpec"]["root"]["dag"]["tasks"]
        print(f"Compiled {len(tasks)} tasks to {pipeline_file}")
        if args.submit == "vertex":
            print(f"Submitted to Vertex AI Pipelines: {submit_vertex(args, pipeline_file)}")
        elif args.submit == "kfp":
            print(f"Submitted to Kubeflow Pipelines, run {submit_kfp(args, pipeline_file)}")
    except (ValueError, SubmitError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
