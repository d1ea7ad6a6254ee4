"""TfdsExampleGen's executor: TFDS records -> tf.Examples, split reproducibly, in Beam."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import apache_beam as beam
import tensorflow_datasets as tfds
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.components.util import examples_utils

from components import features
from components.example_gen import tfds_source


def is_eval(record: dict, eval_fraction: float, seed: int) -> bool:
    """Deterministic random split: a rating goes to eval with probability `eval_fraction`.

    Hashes the rating's identity (user, movie, time) with the seed, so the assignment does not
    depend on reading order, worker count or Python's hash randomisation.
    """
    key = b"|".join([str(seed).encode(), record[features.USER_ID], record[features.MOVIE_ID],
                     str(int(record[features.TIMESTAMP])).encode()])
    bucket = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
    return bucket < eval_fraction * 2**64


def prepare_builders(dataset: str, data_dir: str | None, raw_dir: str | None):
    """TFDS builders for the ratings dataset and its movie catalogue, prepared on disk."""
    catalogue = tfds_source.catalogue_name(dataset)
    if raw_dir:
        if not data_dir:
            raise tfds_source.DataSourceError(
                "tfds_data_dir is required with raw_dir: it is where TFDS builds the dataset.")
        fingerprint = tfds_source.raw_dir_fingerprint(
            tfds_source.parse_dataset_name(dataset), raw_dir)
        data_dir = os.path.join(data_dir, f"raw-{fingerprint}")
        return tuple(tfds_source.prepare_from_raw_dir(name.split("/")[1], raw_dir, data_dir)
                     for name in (dataset, catalogue))
    builders = []
    for name in (dataset, catalogue):
        builder = tfds.builder(name, data_dir=data_dir)
        if not builder.is_prepared():
            try:
                builder.download_and_prepare()
            except Exception as error:
                raise tfds_source.DataSourceError(
                    f"TFDS could not download and prepare {name!r} into {builder.data_dir!r} "
                    f"({type(error).__name__}: {error}). Without internet, pass raw_dir, a "
                    "directory of the GroupLens files.") from error
        builders.append(builder)
    return tuple(builders)


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        eval_fraction = float(exec_properties["eval_fraction"])
        if not 0.0 < eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}.")
        seed = int(exec_properties["split_seed"])
        tfds.disable_progress_bar()
        ratings_builder, movies_builder = prepare_builders(
            exec_properties["dataset"], exec_properties.get("tfds_data_dir") or None,
            exec_properties.get("raw_dir") or None)

        examples = artifact_utils.get_single_instance(output_dict["examples"])
        split_names = [features.TRAIN_SPLIT, features.EVAL_SPLIT, features.MOVIES_SPLIT]
        examples.split_names = artifact_utils.encode_split_names(split_names)

        def write(pcollection, split: str):
            return (pcollection
                    | f"Serialize[{split}]" >> beam.Map(
                        lambda record: features.to_example(record).SerializeToString())
                    | f"Write[{split}]" >> beam.io.WriteToTFRecord(
                        os.path.join(artifact_utils.get_split_uri([examples], split),
                                     "data_tfrecord"),
                        file_name_suffix=".gz"))

        with self._make_beam_pipeline() as pipeline:
            ratings = (pipeline
                       | "ReadRatings" >> tfds.beam.ReadFromTFDS(ratings_builder, split="train")
                       | "RatingsToNumpy" >> beam.Map(tfds.as_numpy))
            train, evaluation = ratings | "Split" >> beam.Partition(
                lambda record, _: int(is_eval(record, eval_fraction, seed)), 2)
            write(train, features.TRAIN_SPLIT)
            write(evaluation, features.EVAL_SPLIT)
            movies = (pipeline
                      | "ReadMovies" >> tfds.beam.ReadFromTFDS(movies_builder, split="train")
                      | "MoviesToNumpy" >> beam.Map(tfds.as_numpy))
            write(movies, features.MOVIES_SPLIT)

        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, "tfrecords_gzip")
