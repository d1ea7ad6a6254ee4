"""local_runner's flags and log filter, which need no pipeline run."""

import logging
import os

import pytest
from absl import logging as absl_logging

import local_runner
from pipeline import configs


def test_one_beam_worker_runs_in_process():
    assert local_runner.beam_pipeline_args(1) == configs.BEAM_PIPELINE_ARGS


def test_more_workers_switch_to_multi_processing_with_the_project_importable(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    args = local_runner.beam_pipeline_args(3)
    assert args == ["--direct_running_mode=multi_processing", "--direct_num_workers=3"]
    project_dir = os.path.dirname(os.path.abspath(local_runner.__file__))
    assert os.environ["PYTHONPATH"].split(os.pathsep) == [project_dir, "/elsewhere"]


def test_zero_workers_is_refused():
    with pytest.raises(ValueError, match="--beam-workers must be at least 1"):
        local_runner.beam_pipeline_args(0)


def _record(pathname: str, message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("absl", level, pathname, 1, message, (), None)


def test_progress_shows_component_lines_own_lines_and_errors_only():
    keep = local_runner._ProgressFilter().filter
    library = "/site-packages/tfx/orchestration/launcher.py"
    assert keep(_record(library, "Component Trainer is running."))
    assert keep(_record(library, "Beam failed", logging.ERROR))
    assert not keep(_record(library, "Generating examples"))
    trainer = os.path.join(local_runner.PROJECT_DIR, "components", "trainer", "train.py")
    assert keep(_record(trainer, "Learnt session term weights"))


def test_progress_survives_tensorflow_silencing_absl_for_a_moment():
    absl_logger = logging.getLogger("absl")
    saved = (absl_logging.get_verbosity(), absl_logger.propagate, list(absl_logger.handlers))
    try:
        local_runner.show_progress()
        previous = absl_logging.get_verbosity()  # what TF's SavedModel export does
        absl_logging.set_verbosity(absl_logging.FATAL)
        absl_logging.set_verbosity(previous)
        assert absl_logger.isEnabledFor(logging.INFO)
    finally:
        absl_logging.set_verbosity(saved[0])
        absl_logger.propagate, absl_logger.handlers[:] = saved[1], saved[2]
