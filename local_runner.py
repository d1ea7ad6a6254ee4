"""Runs the pipeline on this machine with TFX's LocalDagRunner and prints a summary.

    python local_runner.py --demo                       # built-in MovieLens-shaped sample
    python local_runner.py --raw-dir path/to/ml-100k    # local GroupLens files (no internet)
    python local_runner.py                              # TFDS downloads movielens/100k-ratings

ML Metadata is kept at <output-dir>/metadata.sqlite and blessed models are pushed to
<output-dir>/serving_model/<version>/. A second identical run reuses cached components.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import TYPE_CHECKING

from absl import logging as absl_logging

from components import stack
from components.example_gen import splits, tfds_source
from pipeline import configs, run_guard, runner_args

if TYPE_CHECKING:
    from tfx.orchestration.pipeline import Pipeline

PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))

DEMO_SIZE = {"num_users": 300, "num_movies": 400, "ratings_per_user": 40}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The flags, checked before the stack is imported: a wrong one fails at once."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="output",
                        help="pipeline root; holds metadata.sqlite and serving_model/")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--raw-dir", help="directory of raw GroupLens files (u.data, ...)")
    source.add_argument("--demo", action="store_true",
                        help="generate and use a small MovieLens-shaped sample")
    parser.add_argument("--tfds-data-dir",
                        help="TFDS data directory (default: <output-dir>/tfds)")
    parser.add_argument("--dataset", default=configs.DATASET,
                        help=f"TFDS MovieLens ratings config (default {configs.DATASET})")
    parser.add_argument("--split", default=configs.SPLIT_PROTOCOL,
                        help="split protocol: random (default), time, time:Q (cut-off at the Q "
                             "quantile of the timestamps), or MovieLens 100k's canonical:u1 ... "
                             "canonical:u5, canonical:ua, canonical:ub")
    parser.add_argument("--epochs", type=runner_args.positive_int, default=configs.MODEL.epochs,
                        help="passes at most (early stopping may end training sooner)")
    parser.add_argument("--beam-workers", type=runner_args.positive_int, default=1,
                        help="Beam DirectRunner workers; above 1, worker processes "
                             "(multi_processing mode) for ExampleGen, StatisticsGen, Transform "
                             "and Evaluator")
    parser.add_argument("--min-top-100-accuracy", type=float,
                        default=configs.MIN_TOP_100_ACCURACY, help="blessing threshold")
    parser.add_argument("--max-rmse", type=float, default=configs.MAX_RMSE,
                        help="blessing threshold")
    args = parser.parse_args(argv)
    if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
        parser.error(f"argument --output-dir: {args.output_dir!r} exists and is not a directory")
    flag = "--dataset"
    try:
        version = tfds_source.parse_dataset_name(args.dataset)
        if args.raw_dir:
            flag = "--raw-dir"
            tfds_source.check_raw_dir(version, args.raw_dir)
        flag = "--split"
        args.split = runner_args.split_protocol(args.split, args.dataset)
    except (tfds_source.DataSourceError, splits.SplitProtocolError) as error:
        parser.error(f"argument {flag}: {error}")
    return args


class _ProgressFilter(logging.Filter):
    """Keeps LocalDagRunner's per-component progress lines, this project's own log lines (e.g.
    the Trainer's learnt time weights) and real errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR or record.pathname.startswith(
                os.path.join(PROJECT_DIR, "components", "")):
            return True
        message = record.getMessage()
        if message.startswith("Component ") and message.endswith(("running.", "finished.")):
            record.msg, record.args = f"{time.strftime('%H:%M:%S')} {message}", ()
            return True
        return False


def show_progress() -> None:
    """Prints one line as each component starts and ends, and nothing else of the libraries'."""
    stack.quiet_library_logs()
    # Through absl's verbosity flag, not the logger's level: TensorFlow's SavedModel export
    # silences absl for a moment and then restores the flag's value.
    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logger = logging.getLogger("absl")
    absl_logger.propagate = False
    if not any(isinstance(f, _ProgressFilter) for h in absl_logger.handlers for f in h.filters):
        handler = logging.StreamHandler(sys.stdout)
        handler.addFilter(_ProgressFilter())
        absl_logger.addHandler(handler)


def beam_pipeline_args(workers: int) -> list[str]:
    if workers < 1:
        raise ValueError(f"--beam-workers must be at least 1, got {workers}.")
    if workers == 1:
        return configs.BEAM_PIPELINE_ARGS
    # Worker processes import this project's modules (the components' Beam code).
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (PROJECT_DIR, os.environ.get("PYTHONPATH")) if p)
    return ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]


def build_pipeline(args: argparse.Namespace) -> Pipeline:
    import schemas
    from components.example_gen import synthetic
    from pipeline import metadata
    from pipeline.pipeline import create_pipeline

    output_dir = os.path.abspath(args.output_dir)
    raw_dir = args.raw_dir and os.path.abspath(args.raw_dir)
    if args.demo:
        raw_dir = str(synthetic.write_movielens_100k(os.path.join(output_dir, "demo_raw"),
                                                     **DEMO_SIZE))
    return create_pipeline(
        **runner_args.shared_pipeline_args(args.epochs, args.min_top_100_accuracy, args.max_rmse,
                                           args.split),
        pipeline_name=configs.PIPELINE_NAME,
        pipeline_root=output_dir,
        dataset=args.dataset,
        schema_path=schemas.schema_path(args.dataset),
        serving_model_dir=os.path.join(output_dir, "serving_model"),
        tfds_data_dir=os.path.abspath(args.tfds_data_dir or os.path.join(output_dir, "tfds")),
        raw_dir=raw_dir,
        metadata_connection_config=metadata.sqlite_config(
            os.path.join(output_dir, "metadata.sqlite")),
        beam_pipeline_args=beam_pipeline_args(args.beam_workers),
    )


# Exit statuses, for scripts (README "Exit status").
PUSHED = 0  # the run completed and its model is blessed (pushed now, or by an identical run)
FAILED = 1  # a component failed; its error is printed
# 2: a flag or input file is wrong, nothing ran (argparse's usage error)
NOT_BLESSED = 3  # the run completed, the model missed a blessing threshold: nothing pushed
BUSY = 75  # another run holds the output directory (sysexits' EX_TEMPFAIL: try again later)


def summary(metadata_path: str) -> tuple[str, int]:
    """A table of the latest run (each component's state and time, metrics, blessing with the
    thresholds missed, push) and the run's exit status."""
    from pipeline import metadata

    by_component = metadata.latest_component_runs(metadata_path)
    runs = list(by_component.values())
    lines = [f"{'component':<32} {'state':<10} {'seconds':>8}"]
    lines += [f"{run.component:<32} {run.state:<10} {run.seconds:>8.1f}" for run in runs]
    lines.append(f"{'total':<32} {'':<10} {sum(run.seconds for run in runs):>8.1f}")
    status = NOT_BLESSED
    evaluator = by_component.get("Evaluator")
    if evaluator and evaluator.outputs.get("evaluation"):
        evaluation_uri = evaluator.outputs["evaluation"][0].uri
        values = metadata.evaluation_metrics(evaluation_uri)
        lines.append("")
        lines += [f"{name:<32} {value:.4f}" for name, value in sorted(values.items())]
        blessing = evaluator.outputs["blessing"][0]
        blessed = blessing.custom_properties["blessed"].int_value == 1
        lines.append(f"{'blessed':<32} {blessed}")
        if blessed:
            status = PUSHED
        else:
            lines += [f"  failed threshold: {failure}"
                      for failure in metadata.failed_thresholds(evaluation_uri)]
    pusher = by_component.get("Pusher")
    if pusher and pusher.outputs.get("pushed_model"):
        pushed = pusher.outputs["pushed_model"][0].custom_properties
        destination = (pushed["pushed_destination"].string_value
                       if pushed["pushed"].int_value else "not pushed")
        lines.append(f"{'pushed to':<32} {destination}")
    return "\n".join(lines), status


def run(args: argparse.Namespace) -> int:
    """Runs the pipeline; the caller holds the output directory's run lock."""
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    metadata_path = os.path.join(args.output_dir, "metadata.sqlite")
    for dead in run_guard.abandon_dead_executions(metadata_path, os.path.abspath(args.output_dir)):
        print(f"Marked {dead.component} (execution {dead.execution_id}) of a run that ended "
              f"unfinished as FAILED; removed its partial outputs: {dead.removed or 'none'}")
    stack.register_scann_ops()  # the Evaluator and tests load models in this process
    show_progress()
    started = time.time()
    try:
        LocalDagRunner().run(build_pipeline(args))
    except Exception as error:  # the message names the problem and, inside a run, its component
        print(f"\nPipeline failed: {type(error).__name__}: {error}", file=sys.stderr)
        return FAILED
    print(f"\nPipeline finished in {time.time() - started:.0f} s\n")
    table, status = summary(metadata_path)
    print(table)
    if status == NOT_BLESSED:
        print(f"\nThe model was not blessed: nothing pushed (exit status {NOT_BLESSED}).")
    return status


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    stack.one_thread_per_op(configs.ONE_THREAD_PER_OP_MAX_CORES)
    try:
        with run_guard.exclusive_run(args.output_dir):
            return run(args)
    except run_guard.OutputDirBusy as error:
        print(f"error: {error}", file=sys.stderr)
        return BUSY


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
