"""Reading a pipeline's ML Metadata store: runs, their executions, evaluation and push results."""

from __future__ import annotations

import dataclasses
import os

import tensorflow_model_analysis as tfma
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

from pipeline import run_guard

PIPELINE_RUN_CONTEXT = "pipeline_run"
NODE_CONTEXT = "node"
SQLITE_HEADER = b"SQLite format 3\x00"
STATE_NAMES = {value: name for name, value in metadata_store_pb2.Execution.State.items()}


class MetadataError(ValueError):
    """The store cannot be opened or does not hold what was asked for."""


def sqlite_config(path: str, read_only: bool = False) -> metadata_store_pb2.ConnectionConfig:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READONLY if read_only
        else metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
    return config


def open_store(path: str) -> metadata_store.MetadataStore:
    """Opens an existing ML Metadata sqlite file read-only."""
    if not os.path.isfile(path):
        raise MetadataError(f"No ML Metadata store at {path!r}.")
    with open(path, "rb") as handle:
        if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise MetadataError(f"{path!r} is not an SQLite file, so not an ML Metadata store "
                                "(the pipeline writes <output-dir>/metadata.sqlite).")
    try:
        store = metadata_store.MetadataStore(sqlite_config(path, read_only=True))
        store.get_context_types()
    except Exception as error:
        reason = str(error).rsplit(" query:", 1)[0]  # without the SQL statement that failed
        raise MetadataError(f"{path!r} is not an ML Metadata store ({reason}).") from error
    return store


@dataclasses.dataclass
class ComponentRun:
    component: str
    state: str  # MLMD's execution state, or ABANDONED: FAILED by run_guard after its run died
    seconds: float
    execution_id: int
    outputs: dict[str, list[metadata_store_pb2.Artifact]]


def run_contexts(store: metadata_store.MetadataStore) -> list[metadata_store_pb2.Context]:
    """Every pipeline run, oldest first."""
    return sorted(store.get_contexts_by_type(PIPELINE_RUN_CONTEXT),
                  key=lambda context: (context.create_time_since_epoch, context.id))


def latest_run_context(store: metadata_store.MetadataStore) -> metadata_store_pb2.Context:
    runs = run_contexts(store)
    if not runs:
        raise MetadataError("The store holds no pipeline run.")
    return runs[-1]


def find_run_context(store: metadata_store.MetadataStore,
                     reference: str | None) -> metadata_store_pb2.Context:
    """A run by context id or run name (as `runs` lists them); the latest when None."""
    if reference is None:
        return latest_run_context(store)
    for context in run_contexts(store):
        if reference in (str(context.id), context.name):
            return context
    raise MetadataError(f"No pipeline run {reference!r} in the store (see the `runs` command).")


def component_name(store: metadata_store.MetadataStore, execution_id: int) -> str:
    """The pipeline node that ran an execution (e.g. `Trainer`)."""
    for context in store.get_contexts_by_execution(execution_id):
        if context.type == NODE_CONTEXT:
            return context.name.split(".")[-1]
    [execution] = store.get_executions_by_id([execution_id])
    return execution.type


def _artifacts_by_event_key(store: metadata_store.MetadataStore, execution_id: int,
                            event_types: tuple) -> dict[str, list[metadata_store_pb2.Artifact]]:
    events = [e for e in store.get_events_by_execution_ids([execution_id])
              if e.type in event_types]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    by_key: dict[str, list[metadata_store_pb2.Artifact]] = {}
    for event in events:
        key = event.path.steps[0].key if event.path.steps else ""
        by_key.setdefault(key, []).append(artifacts[event.artifact_id])
    return by_key


OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)


def component_runs(store: metadata_store.MetadataStore,
                   run_context: metadata_store_pb2.Context) -> list[ComponentRun]:
    """The executions of one pipeline run, in execution order, with their output artifacts."""
    runs = []
    for execution in sorted(store.get_executions_by_context(run_context.id), key=lambda e: e.id):
        seconds = (execution.last_update_time_since_epoch
                   - execution.create_time_since_epoch) / 1000.0
        state = ("ABANDONED" if run_guard.ABANDONED_PROPERTY in execution.custom_properties
                 else STATE_NAMES[execution.last_known_state])
        runs.append(ComponentRun(component_name(store, execution.id), state, seconds,
                                 execution.id, execution_outputs(store, execution.id)))
    return runs


def latest_component_runs(metadata_path: str) -> dict[str, ComponentRun]:
    """The latest pipeline run of the store at `metadata_path`, by component, in execution
    order."""
    store = open_store(metadata_path)
    return {run.component: run for run in component_runs(store, latest_run_context(store))}


def execution_inputs(store: metadata_store.MetadataStore,
                     execution_id: int) -> dict[str, list[metadata_store_pb2.Artifact]]:
    return _artifacts_by_event_key(store, execution_id, INPUT_EVENTS)


def execution_outputs(store: metadata_store.MetadataStore,
                      execution_id: int) -> dict[str, list[metadata_store_pb2.Artifact]]:
    return _artifacts_by_event_key(store, execution_id, OUTPUT_EVENTS)


def producing_execution(store: metadata_store.MetadataStore,
                        artifact_id: int) -> metadata_store_pb2.Execution | None:
    """The execution that first output an artifact (a cached execution re-outputs it later)."""
    ids = sorted(e.execution_id for e in store.get_events_by_artifact_ids([artifact_id])
                 if e.type in OUTPUT_EVENTS)
    return store.get_executions_by_id(ids[:1])[0] if ids else None


def split_files(examples: metadata_store_pb2.Artifact, split: str) -> str:
    """The file pattern of one split of an Examples artifact, by TFX's own split helpers."""
    artifact = standard_artifacts.Examples()
    artifact.set_mlmd_artifact(examples)
    return io_utils.all_files_pattern(artifact_utils.get_split_uri([artifact], split))


def evaluation_metrics(evaluation_uri: str) -> dict[str, float]:
    """The Evaluator's overall-slice metrics of the candidate model, by metric name."""
    metrics = {}
    for metrics_for_slice in tfma.load_metrics(evaluation_uri):
        if metrics_for_slice.slice_key.single_slice_keys:
            continue
        for key_and_value in metrics_for_slice.metric_keys_and_values:
            if key_and_value.key.is_diff or key_and_value.key.model_name.endswith("baseline"):
                continue
            value = key_and_value.value
            metrics[key_and_value.key.name] = (
                value.double_value.value if value.HasField("double_value")
                else value.bounded_value.value.value)
    return metrics


def failed_thresholds(evaluation_uri: str) -> list[str]:
    """Each blessing threshold the candidate model missed: metric, value, bound, and whether the
    bound was absolute or a change against the baseline (the latest blessed model)."""
    failures = []
    for per_slice in tfma.load_validation_result(evaluation_uri).metric_validations_per_slice:
        for failure in per_slice.failures:
            value = failure.metric_value.double_value.value
            threshold = failure.metric_threshold
            if failure.metric_key.is_diff:
                change = threshold.change_threshold
                higher_is_better = (change.direction
                                    == tfma.MetricDirection.HIGHER_IS_BETTER)
                bound = f"{'>=' if higher_is_better else '<='} {change.absolute.value:+.4f}"
                failures.append(f"{failure.metric_key.name}: change {value:+.4f} against the "
                                f"baseline, needs {bound}")
                continue
            bounds = threshold.value_threshold
            needs = [f"{sign} {getattr(bounds, field).value:.4f}"
                     for sign, field in ((">=", "lower_bound"), ("<=", "upper_bound"))
                     if bounds.HasField(field)]
            failures.append(f"{failure.metric_key.name}: {value:.4f}, needs "
                            f"{' and '.join(needs)} (absolute)")
    return failures
