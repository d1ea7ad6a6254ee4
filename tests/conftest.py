"""One pipeline store for the end-to-end and inspection tests: four runs on a small sample.

The first run trains, blesses and pushes a model; the second, with a top-100 accuracy threshold
no model can meet, reuses every cached component, re-evaluates and pushes nothing; the third,
a separate process training for one more epoch, is killed with SIGKILL in its Trainer, while a
run started beside it is refused; the fourth, identical to the first, marks the killed run's
Trainer abandoned and executes nothing.
"""

import contextlib
import dataclasses
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import local_runner
from components.example_gen import synthetic
from pipeline import configs, metadata

SMALL = {"num_users": 120, "num_movies": 150, "ratings_per_user": 30}


@dataclasses.dataclass
class KilledRun:
    run: metadata.metadata_store_pb2.Context
    partial_model: Path  # the Trainer's output directory when the run was killed
    beside_exit_code: int  # of the run started while it held the output directory
    beside_error: str
    abandoned_message: str  # what the next run printed about it


def _kill_in_the_trainer(arguments: list[str]) -> tuple[Path, int, str]:
    """Runs the pipeline in a child process until its Trainer has created its output directory,
    starts a second run into the same output directory, then kills the child with SIGKILL."""
    output_dir = Path(arguments[arguments.index("--output-dir") + 1])
    models_before = set((output_dir / "Trainer" / "model").iterdir())
    child = subprocess.Popen(
        [sys.executable, "local_runner.py", *arguments, "--epochs", str(configs.MODEL.epochs + 1)],
        cwd=local_runner.PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for line in child.stdout:
            if "Component Trainer is running." in line:
                break
        else:
            raise AssertionError(f"the run ended before its Trainer (exit {child.wait()})")
        deadline = time.monotonic() + 120
        while not (partial := set((output_dir / "Trainer" / "model").iterdir()) - models_before):
            assert time.monotonic() < deadline, "the Trainer never created its output directory"
            time.sleep(0.2)
        with contextlib.redirect_stderr(io.StringIO()) as beside_error:
            beside_exit_code = local_runner.main(arguments)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    return partial.pop(), beside_exit_code, beside_error.getvalue()


@dataclasses.dataclass
class PipelineStore:
    output_dir: Path
    raw_dir: Path
    blessed_run: metadata.metadata_store_pb2.Context
    rejected_run: metadata.metadata_store_pb2.Context
    rejected_output: str  # what the rejected run printed
    killed: KilledRun
    repeated_run: metadata.metadata_store_pb2.Context

    @property
    def path(self) -> str:
        return str(self.output_dir / "metadata.sqlite")

    def store(self):
        return metadata.open_store(self.path)

    def components(self, run) -> dict[str, metadata.ComponentRun]:
        return {c.component: c for c in metadata.component_runs(self.store(), run)}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items):
    """Under `pytest -n ... --dist loadgroup` (make test): one worker builds the pipeline store
    and runs every test using it; the other tests go to workers a module at a time, so each
    module-scoped fixture (a saved model, a TFDS build) is built once."""
    for item in items:
        group = ("pipeline_store" if "pipeline_store" in item.fixturenames
                 else item.nodeid.split("::")[0])
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def raw_dir(tmp_path_factory) -> Path:
    return synthetic.write_movielens_100k(tmp_path_factory.mktemp("raw"), seed=7, **SMALL)


@pytest.fixture(scope="session")
def pipeline_store(tmp_path_factory, raw_dir) -> PipelineStore:
    output_dir = tmp_path_factory.mktemp("run")
    metadata_path = str(output_dir / "metadata.sqlite")
    arguments = ["--output-dir", str(output_dir), "--raw-dir", str(raw_dir)]

    def latest_run():
        return metadata.latest_run_context(metadata.open_store(metadata_path))

    assert local_runner.main(arguments) == local_runner.PUSHED
    blessed_run = latest_run()
    with contextlib.redirect_stdout(io.StringIO()) as rejected_output:
        assert (local_runner.main([*arguments, "--min-top-100-accuracy", "1.01"])
                == local_runner.NOT_BLESSED)
    rejected_run = latest_run()
    partial_model, beside_exit_code, beside_error = _kill_in_the_trainer(arguments)
    killed_run = latest_run()
    with contextlib.redirect_stdout(io.StringIO()) as repeated_output:
        assert local_runner.main(arguments) == local_runner.PUSHED
    repeated_run = latest_run()
    killed = KilledRun(killed_run, partial_model, beside_exit_code, beside_error,
                       repeated_output.getvalue())
    return PipelineStore(output_dir, raw_dir, blessed_run, rejected_run,
                         rejected_output.getvalue(), killed, repeated_run)
