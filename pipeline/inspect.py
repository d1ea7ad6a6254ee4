"""Inspect the pipeline's runs, artifacts, metrics and lineage in ML Metadata, without a notebook.

    python -m pipeline.inspect --metadata output/metadata.sqlite runs
    python -m pipeline.inspect artifacts [--run RUN] [--type Model]
    python -m pipeline.inspect metrics [--run RUN] [--compare RUN_A RUN_B]
    python -m pipeline.inspect lineage pushed|ARTIFACT_ID

RUN is a run's id or name as `runs` lists them (default: the latest run). Every sub-command
takes --json for scripts. The store is opened read-only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from typing import Any

from ml_metadata.proto import metadata_store_pb2

from components import stack
from pipeline import metadata, run_guard

ARTIFACT_STATES = {v: k for k, v in metadata_store_pb2.Artifact.State.items()}
# Artifact properties worth showing in `artifacts` (the split's, among them).
ARTIFACT_PROPERTIES = ("split_names", "split_protocol", "split_rule", "split_cutoff_time",
                       "eval_ratings", "eval_ratings_of_unseen_users",
                       "eval_ratings_of_unseen_titles", "blessed", "pushed", "pushed_destination",
                       "pushed_version", "span", "payload_format")
# Execution properties worth showing in a lineage (the rest are TFX internals).
LINEAGE_PROPERTIES = ("dataset", "eval_fraction", "max_eval_ratings", "split_seed",
                      "split_protocol", "raw_dir",
                      "raw_dir_fingerprint", "source_fingerprint",
                      "tfds_data_dir", "schema_file", "preprocessing_fn", "run_fn",
                      "custom_config", "module_path", "push_destination")


def _time(milliseconds: int) -> str:
    return datetime.datetime.fromtimestamp(milliseconds / 1000, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S")


def _value(value: metadata_store_pb2.Value) -> Any:
    kind = value.WhichOneof("value")
    if kind == "proto_value":
        return str(value.proto_value)
    if kind == "struct_value":
        return json.loads(json.dumps(dict(value.struct_value)))
    return getattr(value, kind) if kind else None


def _properties(item) -> dict[str, Any]:
    merged = {name: _value(v) for name, v in item.custom_properties.items()}
    merged.update({name: _value(v) for name, v in item.properties.items()})
    return merged


def describe_artifact(store, artifact: metadata_store_pb2.Artifact) -> dict[str, Any]:
    [artifact_type] = store.get_artifact_types_by_id([artifact.type_id])
    return {"id": artifact.id, "type": artifact_type.name, "uri": artifact.uri,
            "state": ARTIFACT_STATES.get(artifact.state, "UNKNOWN"),
            "created": _time(artifact.create_time_since_epoch),
            "properties": {k: v for k, v in _properties(artifact).items()
                           if k not in ("tfx_version", "is_external", "state")}}


# ---- sub-commands: each returns data (for --json) and its readable table -------------------

def runs_command(store, args) -> tuple[Any, str]:
    run_alive = run_guard.run_in_progress(os.path.dirname(os.path.abspath(args.metadata)))
    rows = []
    for context in metadata.run_contexts(store):
        components = metadata.component_runs(store, context)
        executions = store.get_executions_by_context(context.id)
        start = min((e.create_time_since_epoch for e in executions),
                    default=context.create_time_since_epoch)
        end = max((e.last_update_time_since_epoch for e in executions), default=start)
        states = {c.state for c in components}
        if states & {"RUNNING", "NEW"} and not run_alive:
            states.add("ABANDONED")  # its process is gone; the next run will mark it so
        state = ("ABANDONED" if "ABANDONED" in states else "FAILED" if "FAILED" in states else
                 "RUNNING" if states & {"RUNNING", "NEW"} else "COMPLETE")
        rows.append({
            "id": context.id, "name": context.name, "started": _time(start),
            "seconds": round((end - start) / 1000, 1), "state": state,
            "executed": [c.component for c in components if c.state == "COMPLETE"],
            "cached": [c.component for c in components if c.state == "CACHED"],
            "failed": [c.component for c in components if c.state == "FAILED"],
            "abandoned": [c.component for c in components
                          if c.state in ("ABANDONED", "RUNNING", "NEW") and state == "ABANDONED"],
        })
    lines = [f"{'id':>4}  {'run':<28} {'started (UTC)':<20} {'state':<9} {'seconds':>8}  "
             "executed / cached"]
    for row in rows:
        lines.append(f"{row['id']:>4}  {row['name']:<28} {row['started']:<20} {row['state']:<9} "
                     f"{row['seconds']:>8}  {len(row['executed'])} / {len(row['cached'])}"
                     + (f"  failed: {', '.join(row['failed'])}" if row["failed"] else "")
                     + (f"  abandoned: {', '.join(row['abandoned'])}" if row["abandoned"]
                        else ""))
    return rows, "\n".join(lines)


def artifacts_command(store, args) -> tuple[Any, str]:
    context = metadata.find_run_context(store, args.run)
    rows, seen = [], set()
    for component in metadata.component_runs(store, context):
        for key, artifacts in component.outputs.items():
            for artifact in artifacts:
                described = describe_artifact(store, artifact)
                if artifact.id in seen or (args.type and described["type"] != args.type):
                    continue
                seen.add(artifact.id)
                rows.append({"component": component.component, "output": key, **described})
    if args.type and not rows:
        known = sorted(t.name for t in store.get_artifact_types())
        raise metadata.MetadataError(
            f"No {args.type!r} artifact in run {context.name}; artifact types: {known}.")
    lines = [f"{'id':>4}  {'type':<22} {'component':<30} {'state':<8} {'created (UTC)':<20} uri"]
    for row in rows:
        lines.append(f"{row['id']:>4}  {row['type']:<22} {row['component']:<30} "
                     f"{row['state']:<8} {row['created']:<20} {row['uri']}")
        interesting = {k: v for k, v in row["properties"].items()
                       if k in ARTIFACT_PROPERTIES}
        if interesting:
            lines.append(" " * 6 + ", ".join(f"{k}={v}" for k, v in interesting.items()))
    return rows, "\n".join(lines)


def run_metrics(store, reference: str | None) -> dict[str, Any]:
    context = metadata.find_run_context(store, reference)
    evaluator = next((c for c in metadata.component_runs(store, context)
                      if c.component == "Evaluator" and c.outputs.get("evaluation")), None)
    if evaluator is None:
        raise metadata.MetadataError(f"Run {context.name} has no evaluation.")
    evaluation = evaluator.outputs["evaluation"][0]
    blessing = evaluator.outputs["blessing"][0]
    return {"run": context.name, "evaluation_uri": evaluation.uri,
            "blessed": blessing.custom_properties["blessed"].int_value == 1,
            "metrics": metadata.evaluation_metrics(evaluation.uri)}


def metrics_command(store, args) -> tuple[Any, str]:
    if args.compare:
        first, second = (run_metrics(store, ref) for ref in args.compare)
        names = sorted(set(first["metrics"]) | set(second["metrics"]))
        data = {"runs": [first["run"], second["run"]],
                "blessed": [first["blessed"], second["blessed"]],
                "metrics": {n: [first["metrics"].get(n), second["metrics"].get(n)]
                            for n in names}}
        lines = [f"{'metric':<28} {first['run']:>28} {second['run']:>28} {'change':>10}"]
        for name, (a, b) in data["metrics"].items():
            change = f"{b - a:+.4f}" if a is not None and b is not None else ""
            lines.append(f"{name:<28} {_number(a):>28} {_number(b):>28} {change:>10}")
        lines.append(f"{'blessed':<28} {str(first['blessed']):>28} {str(second['blessed']):>28}")
        return data, "\n".join(lines)
    data = run_metrics(store, args.run)
    lines = [f"run {data['run']}  ({data['evaluation_uri']})"]
    lines += [f"{name:<28} {_number(value):>10}" for name, value in data["metrics"].items()]
    lines.append(f"{'blessed':<28} {str(data['blessed']):>10}")
    return data, "\n".join(lines)


def _compact(value: Any) -> str:
    """One line for a property, JSON strings (TFX's serialized protos, dicts) included."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def latest_pushed_model(store) -> metadata_store_pb2.Artifact:
    pushed = [a for a in store.get_artifacts_by_type("PushedModel")
              if a.custom_properties["pushed"].int_value == 1]
    if not pushed:
        raise metadata.MetadataError("No model has been pushed.")
    return max(pushed, key=lambda a: (a.create_time_since_epoch, a.id))


def lineage_command(store, args) -> tuple[Any, str]:
    """Walks from an artifact back through the executions that produced its inputs."""
    if args.artifact == "pushed":
        start = latest_pushed_model(store)
    else:
        if not args.artifact.isdigit():
            raise metadata.MetadataError(f"Expected an artifact id or 'pushed', got "
                                         f"{args.artifact!r}.")
        found = store.get_artifacts_by_id([int(args.artifact)])
        if not found:
            raise metadata.MetadataError(f"No artifact with id {args.artifact}.")
        start = found[0]
    steps, queue, visited = [], [start], set()
    while queue:
        artifact = queue.pop(0)
        execution = metadata.producing_execution(store, artifact.id)
        if execution is None or execution.id in visited:
            continue
        visited.add(execution.id)
        inputs = metadata.execution_inputs(store, execution.id)
        outputs = metadata.execution_outputs(store, execution.id)
        properties = {k: v for k, v in _properties(execution).items()
                      if k in LINEAGE_PROPERTIES and v not in (None, "", "null")}
        steps.append({
            "execution_id": execution.id,
            "component": metadata.component_name(store, execution.id),
            "state": metadata.STATE_NAMES[execution.last_known_state],
            "started": _time(execution.create_time_since_epoch),
            "properties": properties,
            "inputs": {key: [describe_artifact(store, a) for a in artifacts]
                       for key, artifacts in inputs.items()},
            "outputs": {key: [describe_artifact(store, a) for a in artifacts]
                        for key, artifacts in outputs.items()},
        })
        queue.extend(a for artifacts in inputs.values() for a in artifacts)
    described = describe_artifact(store, start)
    lines = [f"{described['type']} {described['id']}: {described['uri']}"]
    for step in steps:
        lines.append(f"<- {step['component']} (execution {step['execution_id']}, "
                     f"{step['state']}, {step['started']} UTC)")
        for name, value in step["properties"].items():
            text = _compact(value)
            lines.append(f"     {name}: {text if len(text) < 120 else text[:117] + '...'}")
        for key, artifacts in step["inputs"].items():
            for artifact in artifacts:
                lines.append(f"     in  {key}: {artifact['type']} {artifact['id']} "
                             f"{artifact['uri']}")
    return {"artifact": described, "lineage": steps}, "\n".join(lines)


COMMANDS = {"runs": runs_command, "artifacts": artifacts_command, "metrics": metrics_command,
            "lineage": lineage_command}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.inspect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metadata", default="output/metadata.sqlite",
                        help="ML Metadata sqlite file (default: output/metadata.sqlite)")
    commands = parser.add_subparsers(dest="command", required=True)
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="print JSON")
    commands.add_parser("runs", parents=[json_flag], help="every pipeline run")
    artifacts = commands.add_parser("artifacts", parents=[json_flag],
                                    help="the artifacts of a run")
    artifacts.add_argument("--run", help="run id or name (default: latest)")
    artifacts.add_argument("--type", help="artifact type, e.g. Model, Examples, PushedModel")
    metrics = commands.add_parser("metrics", parents=[json_flag],
                                  help="the Evaluator's metrics and blessing")
    metrics.add_argument("--run", help="run id or name (default: latest)")
    metrics.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"))
    lineage = commands.add_parser("lineage", parents=[json_flag],
                                  help="where an artifact came from")
    lineage.add_argument("artifact", help="artifact id, or 'pushed' for the served model")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    stack.quiet_library_logs()
    try:
        store = metadata.open_store(args.metadata)
        data, table = COMMANDS[args.command](store, args)
    except metadata.MetadataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(data, indent=2, default=str) if args.json else table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
