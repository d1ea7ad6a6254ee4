"""Runs a compiled KFP v2 pipeline spec task by task, as the Kubeflow / Vertex launcher would.

Contract followed:
- the ExecutorInput that a container task receives as `{{$}}`: kfp.pipeline_spec's
  `pipeline_spec.proto` (ExecutorInput.inputs.parameters / .artifacts, outputs.artifacts,
  outputs.output_file), and how TFX's container entry point reads it and writes its
  ExecutorOutput (tfx/orchestration/kubeflow/v2/container/kubeflow_v2_run_executor.py,
  kubeflow_v2_entrypoint_utils.py: parameters from `inputs.parameters` when no inputs spec is
  given, artifact ids hashed from artifact names, output metadata in `output_file`);
- task order, task roots (`<pipeline root>/<pipeline run>/<task>/`), output artifact URIs
  (`<task root>/<output key>`) and the `{{$}}` substitution: KFP's own local runner
  (kfp/local/graph_utils.py, executor_input_utils.py, placeholder_utils.py), whose helpers this
  calls; it cannot run TFX's specs itself (no `constantValue` parameters, no resolver tasks);
- resolver tasks (TFX compiles its latest-blessed-model resolver into two): the
  `outputArtifactQueries` filters, evaluated over the artifacts this launcher has recorded,
  latest first, as the Vertex metadata store answers them.

The image is stood in for by this process: its environment (TF_USE_LEGACY_KERAS, the project on
the path) is the test's, and the image's project directory is mapped to this checkout in
string parameters. The container command, TFX's entry point, runs in this process through the
`main` its `absl.app.run` calls (a fresh interpreter per task would add ~30 s of imports each).
"""

from __future__ import annotations

import dataclasses
import os
import re

from google.protobuf import json_format, struct_pb2
from kfp.local import executor_input_utils, graph_utils, placeholder_utils
from kfp.pipeline_spec import pipeline_spec_pb2

TFX_ENTRY_POINT = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"


@dataclasses.dataclass
class Recorded:
    """An output artifact as the metadata store holds it after its task."""
    artifact: pipeline_spec_pb2.RuntimeArtifact
    schema_title: str


@dataclasses.dataclass
class TaskRun:
    name: str
    kind: str  # container or resolver
    command: list[str]
    outputs: dict[str, list[pipeline_spec_pb2.RuntimeArtifact]]


class KfpLauncher:
    def __init__(self, pipeline_root: str, image_project_dir: str, project_dir: str):
        self.pipeline_root = pipeline_root
        self.image_project_dir = image_project_dir.rstrip("/")
        self.project_dir = project_dir
        self.store: list[Recorded] = []  # every output artifact, oldest first

    def run(self, job: dict) -> list[TaskRun]:
        """Runs every task of a compiled PipelineJob JSON; raises on the first failure."""
        spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
        executors = json_format.MessageToDict(spec.deployment_spec)["executors"]
        tasks = dict(spec.root.dag.tasks)
        run_name = executor_input_utils.get_local_pipeline_resource_name(
            spec.pipeline_info.name)
        dependencies = {name: sorted(set(task.dependent_tasks) | {
            source.task_output_artifact.producer_task
            for source in task.inputs.artifacts.values()}) for name, task in tasks.items()}
        order = graph_utils.topological_sort(dependencies)
        outputs: dict[str, dict[str, list[pipeline_spec_pb2.RuntimeArtifact]]] = {}
        runs = []
        while order:
            name = order.pop()
            task = tasks[name]
            component = spec.components[task.component_ref.name]
            executor = executors[component.executor_label]
            inputs = {key: list(outputs[source.task_output_artifact.producer_task][
                source.task_output_artifact.output_artifact_key])
                for key, source in task.inputs.artifacts.items()}
            if "resolver" in executor:
                outputs[name] = self._resolve(executor["resolver"], inputs, component)
                runs.append(TaskRun(name, "resolver", [], outputs[name]))
                continue
            if "container" not in executor:
                raise NotImplementedError(f"Task {name}: executor kind {sorted(executor)}")
            task_root = executor_input_utils.construct_local_task_root(
                self.pipeline_root, run_name, name)
            executor_input = self._executor_input(task, component, inputs, run_name, task_root)
            command = placeholder_utils.replace_placeholders(
                [*executor["container"]["command"], *executor["container"]["args"]],
                json_format.MessageToDict(executor_input), run_name, name, self.pipeline_root,
                placeholder_utils.make_random_id())
            self._run_container_command(name, command)
            outputs[name] = self._read_executor_output(executor_input, component)
            runs.append(TaskRun(name, "container", command, outputs[name]))
        return runs

    def _parameter(self, value: pipeline_spec_pb2.Value) -> pipeline_spec_pb2.Value:
        """A task's constant parameter, with the image's project directory mapped here."""
        if value.WhichOneof("value") == "string_value":
            return pipeline_spec_pb2.Value(string_value=value.string_value.replace(
                f"{self.image_project_dir}/", f"{self.project_dir}/"))
        return value

    def _executor_input(self, task, component, inputs, run_name: str,
                        task_root: str) -> pipeline_spec_pb2.ExecutorInput:
        executor_input = pipeline_spec_pb2.ExecutorInput()
        for key, parameter in task.inputs.parameters.items():
            if not parameter.runtime_value.HasField("constant_value"):
                raise NotImplementedError(f"Parameter {key}: only constants are compiled here")
            executor_input.inputs.parameters[key].CopyFrom(
                self._parameter(parameter.runtime_value.constant_value))
        for key, artifacts in inputs.items():
            executor_input.inputs.artifacts[key].artifacts.extend(artifacts)
        for key, definition in component.output_definitions.artifacts.items():
            [artifact] = executor_input_utils.artifact_type_schema_to_artifact_list(
                key, definition.artifact_type, task_root).artifacts
            artifact.name = f"{run_name}/{task.task_info.name}/{key}"  # unique, as a store's
            executor_input.outputs.artifacts[key].artifacts.append(artifact)
        executor_input.outputs.output_file = os.path.join(task_root, "executor_output.json")
        return executor_input

    def _run_container_command(self, name: str, command: list[str]) -> None:
        if command[:3] != ["python", "-m", TFX_ENTRY_POINT]:
            raise NotImplementedError(f"Task {name}: unexpected container command {command[:3]}")
        from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

        kubeflow_v2_run_executor.main(kubeflow_v2_run_executor._parse_flags(command[3:]))

    def _read_executor_output(self, executor_input, component
                              ) -> dict[str, list[pipeline_spec_pb2.RuntimeArtifact]]:
        """The task's output artifacts with the metadata its ExecutorOutput reports."""
        with open(executor_input.outputs.output_file) as handle:
            executor_output = json_format.Parse(handle.read(),
                                                pipeline_spec_pb2.ExecutorOutput())
        outputs = {}
        for key, declared in executor_input.outputs.artifacts.items():
            [artifact] = declared.artifacts
            reported = executor_output.artifacts[key].artifacts
            if reported:
                artifact.metadata.CopyFrom(reported[0].metadata)
            title = _schema_title(component.output_definitions.artifacts[key].artifact_type)
            self.store.append(Recorded(artifact, title))
            outputs[key] = [artifact]
        return outputs

    def _resolve(self, resolver: dict, inputs, component
                 ) -> dict[str, list[pipeline_spec_pb2.RuntimeArtifact]]:
        resolved = {}
        for key, query in resolver["outputArtifactQueries"].items():
            text = _substitute_input_metadata(query["filter"], inputs)
            clauses = [_clause(c) for c in text.split(" AND ")] if text is not None else None
            matches = [r.artifact for r in reversed(self.store)
                       if clauses is not None and all(c(r) for c in clauses)]
            resolved[key] = matches[:1]
        return resolved


def _schema_title(artifact_type: pipeline_spec_pb2.ArtifactTypeSchema) -> str:
    if artifact_type.schema_title:
        return artifact_type.schema_title
    return re.search(r"^title: (\S+)", artifact_type.instance_schema, re.M).group(1)


def _substitute_input_metadata(text: str, inputs) -> str | None:
    """Fills `{{$.inputs.artifacts['KEY'].metadata['FIELD']}}`; None when KEY has no artifact."""
    pattern = r"\{\{\$\.inputs\.artifacts\['([^']+)'\]\.metadata\['([^']+)'\]\}\}"
    missing = False

    def value(match):
        nonlocal missing
        artifacts = inputs.get(match.group(1), [])
        if not artifacts:
            missing = True
            return ""
        return str(json_format.MessageToDict(artifacts[0].metadata)[match.group(2)])

    text = re.sub(pattern, value, text)
    return None if missing else text


def _clause(text: str):
    """One `field=value` condition of a resolver filter, as a predicate on a Recorded."""
    field, _, expected = text.partition("=")
    expected = expected.strip().strip('"')
    if field == "schema_title":
        return lambda recorded: recorded.schema_title == expected
    if field == "state":  # every recorded artifact is LIVE: its task succeeded
        return lambda recorded: expected == "LIVE"
    if field == "name":
        return lambda recorded: recorded.artifact.name == expected
    match = re.fullmatch(r"metadata\.(\w+)\.(number_value|string_value)", field)
    if not match:
        raise NotImplementedError(f"Resolver filter clause {text!r}")
    key, kind = match.groups()

    def check(recorded):
        metadata = recorded.artifact.metadata.fields
        if key not in metadata:
            return False
        value: struct_pb2.Value = metadata[key]
        return (value.number_value == float(expected) if kind == "number_value"
                else value.string_value == expected)

    return check
