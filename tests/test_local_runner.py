"""local_runner's flags that need no pipeline run."""

import os

import pytest

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
