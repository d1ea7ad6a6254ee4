"""local_runner's flags and log filter, which need no pipeline run."""

import logging
import os
import subprocess
import sys

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
        absl_logging.set_verbosity(absl_logging.WARNING)  # whatever an earlier test left
        local_runner.show_progress()
        previous = absl_logging.get_verbosity()  # what TF's SavedModel export does
        absl_logging.set_verbosity(absl_logging.FATAL)
        absl_logging.set_verbosity(previous)
        assert absl_logger.isEnabledFor(logging.INFO)
    finally:
        absl_logging.set_verbosity(saved[0])
        absl_logger.propagate, absl_logger.handlers[:] = saved[1], saved[2]


@pytest.mark.parametrize("arguments, message", [
    (["--epochs", "0"], "argument --epochs: must be at least 1, got 0"),
    (["--beam-workers", "-1"], "argument --beam-workers: must be at least 1, got -1"),
    (["--dataset", "movielens/3m-ratings"], "Unknown TFDS dataset 'movielens/3m-ratings'"),
    (["--raw-dir", "{incomplete}"], "has no 'u.user'"),
    (["--raw-dir", "{no_ratings}"], "u.data' holds no ratings"),
    (["--output-dir", "{a_file}"], "exists and is not a directory"),
    (["--split", "time:2"], "argument --split: Split protocol 'time:2': the cut-off quantile"),
    (["--split", "canonical:u1", "--dataset", "movielens/1m-ratings"],
     "argument --split: Split protocol 'canonical:u1' is MovieLens 100k's own"),
])
def test_argument_errors_are_named_before_anything_is_written(tmp_path, capsys, arguments,
                                                              message):
    incomplete, no_ratings = tmp_path / "incomplete", tmp_path / "no_ratings"
    a_file = tmp_path / "a_file"
    for directory, names in ((incomplete, ("u.data", "u.item")),
                             (no_ratings, ("u.data", "u.item", "u.user"))):
        directory.mkdir()
        for name in names:
            (directory / name).write_text("\n" if name == "u.data" else "1|x\n")
    a_file.write_text("")
    arguments = [a.format(incomplete=incomplete, no_ratings=no_ratings, a_file=a_file)
                 for a in arguments]
    if "--output-dir" not in arguments:
        arguments += ["--output-dir", str(tmp_path / "out")]

    with pytest.raises(SystemExit) as exit_info:
        local_runner.main(arguments)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_flags_are_checked_without_importing_the_stack():
    script = ("import sys, local_runner\n"
              "local_runner.parse_args(['--demo'])\n"
              "print(sorted(m for m in ('tensorflow', 'tfx', 'tensorflow_datasets', 'apache_beam')"
              " if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=local_runner.PROJECT_DIR, check=True)
    assert result.stdout.strip() == "[]"
