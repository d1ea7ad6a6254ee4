"""TfdsExampleGen: MovieLens ratings and movie catalogue from TensorFlow Datasets as tf.Examples.

Usage:

    example_gen = TfdsExampleGen(dataset="movielens/100k-ratings", eval_fraction=0.2,
                                 split_seed=42, tfds_data_dir="/data/tfds")

Output `examples` has three splits: `train` and `eval` (ratings, split by `split_protocol`:
at random but reproducibly in `split_seed` by default, by time, or MovieLens 100k's published
splits; see splits.py; `max_eval_ratings` caps the random protocol's eval split on a large
dataset), and `movies` (the whole catalogue, `movielens/<version>-movies`). The artifact
records the protocol and, where it has them, the cut-off time and how many eval ratings have a
user or title unseen in training.
With `raw_dir`, the TFDS datasets are first built from local GroupLens files by TFDS's own
builder (no internet needed), under `tfds_data_dir/raw-<fingerprint of the files>`.
"""

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.example_gen import executor, tfds_source
from components.source_fingerprint import step_source_fingerprint


class TfdsExampleGenSpec(ComponentSpec):
    PARAMETERS = {
        "dataset": ExecutionParameter(type=str),
        "eval_fraction": ExecutionParameter(type=float),
        "split_seed": ExecutionParameter(type=int),
        "split_protocol": ExecutionParameter(type=str, optional=True),
        "max_eval_ratings": ExecutionParameter(type=int, optional=True),
        "tfds_data_dir": ExecutionParameter(type=str, optional=True),
        "raw_dir": ExecutionParameter(type=str, optional=True),
        "raw_dir_fingerprint": ExecutionParameter(type=str, optional=True),
        # Not read by the executor: part of the cache key, so edited code runs again.
        "source_fingerprint": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {"examples": ChannelParameter(type=standard_artifacts.Examples)}


class TfdsExampleGen(base_beam_component.BaseBeamComponent):
    SPEC_CLASS = TfdsExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, dataset: str, eval_fraction: float, split_seed: int,
                 split_protocol: str = "random", max_eval_ratings: int | None = None,
                 tfds_data_dir: str | None = None, raw_dir: str | None = None):
        fingerprint = raw_dir and tfds_source.raw_dir_fingerprint(
            tfds_source.parse_dataset_name(dataset), raw_dir)
        super().__init__(spec=TfdsExampleGenSpec(
            dataset=dataset, eval_fraction=eval_fraction, split_seed=split_seed,
            split_protocol=split_protocol, max_eval_ratings=max_eval_ratings,
            tfds_data_dir=tfds_data_dir, raw_dir=raw_dir,
            raw_dir_fingerprint=fingerprint,
            source_fingerprint=step_source_fingerprint(f"{executor.__name__}.Executor"),
            examples=types.Channel(type=standard_artifacts.Examples)))
