"""TfdsExampleGen's executor: TFDS records -> tf.Examples, split reproducibly, in Beam.

TFDS stores each example as a tf.Example already, so they are copied as they are. Each Beam
element is one shard of a TFDS split. Its worker reads the shard's records with tf.data in
batches, parses only the fields the split rule hashes (in C++), and streams each record into its
output split's own gzipped TFRecord file: memory stays bounded by a batch whatever the dataset's
size, no record is decoded in Python, and shards run in parallel on Dataflow.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from typing import Any, Iterator

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.components.util import examples_utils

from components import features
from components.example_gen import tfds_source

READ_BATCH_SIZE = 8192
# Ratings per Beam element: each shard is read, split and written by one worker.
RATINGS_PER_SHARD = 1_000_000
FILE_PREFIX = "data_tfrecord"


def eval_mask(user_ids: np.ndarray, movie_ids: np.ndarray, timestamps: np.ndarray,
              eval_fraction: float, seed: int) -> np.ndarray:
    """Deterministic random split: each rating goes to eval with probability `eval_fraction`.

    Hashes the rating's identity (user, movie, time) with the seed, so the assignment does not
    depend on reading order, batching, worker count or Python's hash randomisation.
    """
    prefix, bound = str(seed).encode() + b"|", eval_fraction * 2**64
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(b"|".join([prefix[:-1], user, movie,
                                                     str(int(time)).encode()]),
                                        digest_size=8).digest(), "big") < bound
         for user, movie, time in zip(user_ids, movie_ids, timestamps, strict=True)),
        dtype=bool, count=len(user_ids))


# The fields eval_mask hashes.
SPLIT_FIELDS = {features.USER_ID: tf.io.FixedLenFeature([], tf.string),
                features.MOVIE_ID: tf.io.FixedLenFeature([], tf.string),
                features.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64)}


def read_batches(builder: tfds.core.DatasetBuilder, split: str,
                 fields: dict[str, tf.io.FixedLenFeature]
                 ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """The TFDS split's serialized tf.Examples in batches, each with its parsed `fields`."""
    files = [tf.data.TFRecordDataset(instruction.filename).skip(instruction.skip)
             .take(instruction.take)
             for instruction in builder.info.splits[split].file_instructions]
    dataset = functools.reduce(tf.data.Dataset.concatenate, files).batch(READ_BATCH_SIZE)
    dataset = dataset.map(lambda records: (
        records, tf.io.parse_example(records, fields) if fields else {}))
    return iter(dataset.prefetch(2).as_numpy_iterator())


class WriteShard(beam.DoFn):
    """Reads one shard of a TFDS split and writes its tf.Examples to each output split's own
    file; yields (output split, examples written)."""

    def __init__(self, builder_dir: str, split_dirs: dict[str, str], eval_fraction: float | None,
                 seed: int):
        self.builder_dir = builder_dir
        self.split_dirs = split_dirs
        self.eval_fraction = eval_fraction
        self.seed = seed

    def process(self, shard: tuple[int, int, str]):
        index, count, tfds_split = shard
        builder = tfds.builder_from_directory(self.builder_dir)
        name = f"{FILE_PREFIX}-{index:05d}-of-{count:05d}.gz"
        writers = {split: tf.io.TFRecordWriter(os.path.join(directory, name), options="GZIP")
                   for split, directory in self.split_dirs.items()}
        written = dict.fromkeys(writers, 0)
        try:
            fields = SPLIT_FIELDS if self.eval_fraction is not None else {}
            for records, parsed in read_batches(builder, tfds_split, fields):
                if self.eval_fraction is None:
                    [split] = writers
                    targets = [split] * len(records)
                else:
                    is_eval = eval_mask(parsed[features.USER_ID], parsed[features.MOVIE_ID],
                                        parsed[features.TIMESTAMP], self.eval_fraction,
                                        self.seed)
                    targets = np.where(is_eval, features.EVAL_SPLIT, features.TRAIN_SPLIT)
                for record, split in zip(records, targets, strict=True):
                    writers[split].write(record)
                    written[split] += 1
        finally:
            for writer in writers.values():
                writer.close()
        yield from written.items()


def shards(builder: tfds.core.DatasetBuilder, per_shard: int) -> list[tuple[int, int, str]]:
    """(index, count, TFDS sub-split) covering the builder's `train` split."""
    count = max(1, math.ceil(builder.info.splits["train"].num_examples / per_shard))
    return [(index, count, split)
            for index, split in enumerate(tfds.even_splits("train", n=count))]


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
        with tfds_source.build_lock(data_dir or tfds.core.constants.DATA_DIR, name):
            builder = tfds.builder(name, data_dir=data_dir)
            if not builder.is_prepared():
                try:
                    builder.download_and_prepare()
                except Exception as error:
                    raise tfds_source.DataSourceError(
                        f"TFDS could not download and prepare {name!r} into "
                        f"{builder.data_dir!r} ({type(error).__name__}: {error}). Without "
                        "internet, pass raw_dir, a directory of the GroupLens files.") from error
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
        split_dirs = {split: artifact_utils.get_split_uri([examples], split)
                      for split in split_names}
        for directory in split_dirs.values():
            tf.io.gfile.makedirs(directory)

        with self._make_beam_pipeline() as pipeline:
            for label, builder, outputs, fraction in (
                    ("Ratings", ratings_builder, (features.TRAIN_SPLIT, features.EVAL_SPLIT),
                     eval_fraction),
                    ("Movies", movies_builder, (features.MOVIES_SPLIT,), None)):
                _ = (pipeline
                     | f"{label}Shards" >> beam.Create(shards(builder, RATINGS_PER_SHARD))
                     | f"Write{label}" >> beam.ParDo(WriteShard(
                         builder.data_dir, {split: split_dirs[split] for split in outputs},
                         fraction, seed)))

        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, "tfrecords_gzip")
