"""One pipeline store for the end-to-end and inspection tests: three runs on a small sample.

The first run trains, blesses and pushes a model; the second, with a top-100 accuracy threshold
no model can meet, reuses every cached component, re-evaluates and pushes nothing; the third,
identical to the first, executes nothing.
"""

import dataclasses
from pathlib import Path

import pytest

import local_runner
from components.example_gen import synthetic
from pipeline import metadata

SMALL = {"num_users": 120, "num_movies": 150, "ratings_per_user": 30}


@dataclasses.dataclass
class PipelineStore:
    output_dir: Path
    raw_dir: Path
    blessed_run: metadata.metadata_store_pb2.Context
    rejected_run: metadata.metadata_store_pb2.Context
    repeated_run: metadata.metadata_store_pb2.Context

    @property
    def path(self) -> str:
        return str(self.output_dir / "metadata.sqlite")

    def store(self):
        return metadata.open_store(self.path)

    def components(self, run) -> dict[str, metadata.ComponentRun]:
        return {c.component: c for c in metadata.component_runs(self.store(), run)}


@pytest.fixture(scope="session")
def raw_dir(tmp_path_factory) -> Path:
    return synthetic.write_movielens_100k(tmp_path_factory.mktemp("raw"), seed=7, **SMALL)


@pytest.fixture(scope="session")
def pipeline_store(tmp_path_factory, raw_dir) -> PipelineStore:
    output_dir = tmp_path_factory.mktemp("run")
    arguments = ["--output-dir", str(output_dir), "--raw-dir", str(raw_dir)]
    assert local_runner.main(arguments) == 0
    store = metadata.open_store(str(output_dir / "metadata.sqlite"))
    blessed_run = metadata.latest_run_context(store)
    assert local_runner.main([*arguments, "--min-top-100-accuracy", "1.01"]) == 0
    rejected_run = metadata.latest_run_context(metadata.open_store(
        str(output_dir / "metadata.sqlite")))
    assert local_runner.main(arguments) == 0
    repeated_run = metadata.latest_run_context(metadata.open_store(
        str(output_dir / "metadata.sqlite")))
    return PipelineStore(output_dir, raw_dir, blessed_run, rejected_run, repeated_run)
