"""TfdsExampleGen's executor: TFDS records -> tf.Examples, split reproducibly, in Beam.

TFDS stores each example as a tf.Example already, so they are copied as they are. Each Beam
element is one shard of a TFDS split. Its worker reads the shard's records with tf.data in
batches, parses only the fields the split rule hashes (in C++), and streams each record into its
output split's own gzipped TFRecord file: memory stays bounded by a batch whatever the dataset's
size, no record is decoded in Python, and shards run in parallel on Dataflow.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any, Iterator

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from components import features, rating_slices
from components.example_gen import splits, tfds_source

READ_BATCH_SIZE = 8192
# Ratings per Beam element: each shard is read, split and written by one worker.
RATINGS_PER_SHARD = 1_000_000
FILE_PREFIX = "data_tfrecord"


def eval_mask(user_ids: np.ndarray, movie_titles: np.ndarray, timestamps: np.ndarray,
              eval_fraction: float, seed: int) -> np.ndarray:
    """The random protocol: each rating goes to eval with probability `eval_fraction`, by a
    hash of its identity salted with the seed (rating_slices, the Trainer's rule too)."""
    return rating_slices.in_slice(user_ids, movie_titles, timestamps, eval_fraction,
                                  rating_slices.EVAL_SALT.format(seed=seed)).numpy()


# The fields the split rules read.
SPLIT_FIELDS = {features.USER_ID: tf.io.FixedLenFeature([], tf.string),
                features.MOVIE_ID: tf.io.FixedLenFeature([], tf.string),
                features.MOVIE_TITLE: tf.io.FixedLenFeature([], tf.string),
                features.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64)}


@dataclasses.dataclass(frozen=True)
class SplitRule:
    """Which ratings go to eval, decided per batch from SPLIT_FIELDS (see splits.py)."""

    protocol: splits.Protocol
    eval_fraction: float
    seed: int
    cutoff_time: int | None = None  # TIME
    eval_keys: frozenset[bytes] = frozenset()  # CANONICAL: `user|movie` of the test ratings

    def is_eval(self, parsed: dict[str, np.ndarray]) -> np.ndarray:
        users, movies = parsed[features.USER_ID], parsed[features.MOVIE_ID]
        if self.protocol.kind == splits.TIME:
            return parsed[features.TIMESTAMP] >= self.cutoff_time
        if self.protocol.kind == splits.CANONICAL:
            return np.fromiter((b"|".join(pair) in self.eval_keys
                                for pair in zip(users, movies, strict=True)),
                               dtype=bool, count=len(users))
        return eval_mask(users, parsed[features.MOVIE_TITLE], parsed[features.TIMESTAMP],
                         self.eval_fraction, self.seed)


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

    def __init__(self, builder_dir: str, split_dirs: dict[str, str], rule: SplitRule | None):
        self.builder_dir = builder_dir
        self.split_dirs = split_dirs
        self.rule = rule

    def process(self, shard: tuple[int, int, str]):
        index, count, tfds_split = shard
        builder = tfds.builder_from_directory(self.builder_dir)
        name = f"{FILE_PREFIX}-{index:05d}-of-{count:05d}.gz"
        writers = {split: tf.io.TFRecordWriter(os.path.join(directory, name), options="GZIP")
                   for split, directory in self.split_dirs.items()}
        written = dict.fromkeys(writers, 0)
        try:
            fields = SPLIT_FIELDS if self.rule is not None else {}
            for records, parsed in read_batches(builder, tfds_split, fields):
                if self.rule is None:
                    [split] = writers
                    targets = [split] * len(records)
                else:
                    targets = np.where(self.rule.is_eval(parsed), features.EVAL_SPLIT,
                                       features.TRAIN_SPLIT)
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


def u_data_path(data_dir: str | None, raw_dir: str | None) -> str:
    """MovieLens 100k's u.data: in the raw directory, or where TFDS extracted its download."""
    if raw_dir:
        return os.path.join(raw_dir, "u.data")
    pattern = os.path.join(data_dir or tfds.core.constants.DATA_DIR, "downloads", "extracted",
                           "*", "ml-100k", "u.data")
    found = sorted(tf.io.gfile.glob(pattern))
    return found[0] if found else pattern


def split_rule(protocol: splits.Protocol, eval_fraction: float, seed: int,
               ratings_builder: tfds.core.DatasetBuilder, data_dir: str | None,
               raw_dir: str | None, max_eval_ratings: int | None = None
               ) -> tuple[SplitRule, dict[str, int | str]]:
    """The rule, and what to record of it on the Examples artifact."""
    if protocol.kind == splits.RANDOM:
        eval_fraction = splits.capped_eval_fraction(
            eval_fraction, ratings_builder.info.splits["train"].num_examples, max_eval_ratings)
    recorded: dict[str, int | str] = {
        "split_protocol": str(protocol),
        "split_rule": (f"{protocol} eval_fraction={eval_fraction:.6g} seed={seed} "
                       f"{rating_slices.RULE_NAME}" if protocol.kind == splits.RANDOM
                       else str(protocol))}
    if protocol.kind == splits.CANONICAL:
        keys, counts = splits.canonical_eval_keys(u_data_path(data_dir, raw_dir), protocol.name)
        return SplitRule(protocol, eval_fraction, seed, eval_keys=keys), {**recorded, **counts}
    if protocol.kind == splits.TIME:
        names = (features.USER_ID, features.MOVIE_ID, features.TIMESTAMP)
        columns = {name: [] for name in names}
        for _, parsed in read_batches(ratings_builder, "train",
                                      {name: SPLIT_FIELDS[name] for name in names}):
            for name in names:
                columns[name].append(parsed[name])
        users, movies, times = (np.concatenate(columns[name]) for name in names)
        cutoff = splits.time_cutoff(times, protocol.quantile)
        counts = splits.unseen_counts(users, movies, times >= cutoff)
        return (SplitRule(protocol, eval_fraction, seed, cutoff_time=cutoff),
                {**recorded, "split_cutoff_time": cutoff, **counts})
    return SplitRule(protocol, eval_fraction, seed), recorded


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        eval_fraction = float(exec_properties["eval_fraction"])
        if not 0.0 < eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}.")
        max_eval_ratings = exec_properties.get("max_eval_ratings")
        if max_eval_ratings is not None and int(max_eval_ratings) < 1:
            raise ValueError(f"max_eval_ratings must be at least 1, got {max_eval_ratings}.")
        seed = int(exec_properties["split_seed"])
        protocol = splits.parse_protocol(exec_properties.get("split_protocol") or splits.RANDOM,
                                         eval_fraction, exec_properties["dataset"])
        tfds.disable_progress_bar()
        data_dir = exec_properties.get("tfds_data_dir") or None
        raw_dir = exec_properties.get("raw_dir") or None
        ratings_builder, movies_builder = prepare_builders(exec_properties["dataset"], data_dir,
                                                           raw_dir)
        rule, recorded = split_rule(
            protocol, eval_fraction, seed, ratings_builder, data_dir, raw_dir,
            None if max_eval_ratings is None else int(max_eval_ratings))

        examples = artifact_utils.get_single_instance(output_dict["examples"])
        split_names = [features.TRAIN_SPLIT, features.EVAL_SPLIT, features.MOVIES_SPLIT]
        examples.split_names = artifact_utils.encode_split_names(split_names)
        split_dirs = {split: artifact_utils.get_split_uri([examples], split)
                      for split in split_names}
        for directory in split_dirs.values():
            tf.io.gfile.makedirs(directory)

        with self._make_beam_pipeline() as pipeline:
            for label, builder, outputs, shard_rule in (
                    ("Ratings", ratings_builder, (features.TRAIN_SPLIT, features.EVAL_SPLIT),
                     rule),
                    ("Movies", movies_builder, (features.MOVIES_SPLIT,), None)):
                _ = (pipeline
                     | f"{label}Shards" >> beam.Create(shards(builder, RATINGS_PER_SHARD))
                     | f"Write{label}" >> beam.ParDo(WriteShard(
                         builder.data_dir, {split: split_dirs[split] for split in outputs},
                         shard_rule)))
        for name, value in recorded.items():
            if isinstance(value, str):
                examples.set_string_custom_property(name, value)
            else:
                examples.set_int_custom_property(name, value)

        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, "tfrecords_gzip")
