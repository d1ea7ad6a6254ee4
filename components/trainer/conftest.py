"""Transform's real graph on tiny in-memory data, for the Trainer's tests."""

import os

import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

from components import features
from components.transform import preprocessing

# Raw rating features as ExampleGen writes them, for tests that run Transform and the Trainer.
RATING_SPEC = {
    features.USER_ID: tf.io.FixedLenFeature([1], tf.string),
    features.MOVIE_TITLE: tf.io.FixedLenFeature([1], tf.string),
    features.MOVIE_GENRES: tf.io.VarLenFeature(tf.int64),
    features.RATING: tf.io.FixedLenFeature([1], tf.float32),
    features.TIMESTAMP: tf.io.FixedLenFeature([1], tf.int64),
}


@pytest.fixture(scope="session")
def analyze_transform(tmp_path_factory):
    """A function: raw rows (dicts of lists) and their feature spec -> the TFTransformOutput of
    `preprocessing_fn` analysed over them, laid out as TFX's Transform writes it."""

    def analyze(rows: list[dict], feature_spec: dict[str, tf.io.FixedLenFeature]
                ) -> tft.TFTransformOutput:
        transform_dir = str(tmp_path_factory.mktemp("transform"))
        metadata = dataset_metadata.DatasetMetadata(
            schema_utils.schema_from_feature_spec(feature_spec))
        with tft_beam.Context(temp_dir=str(tmp_path_factory.mktemp("tft")),
                              force_tf_compat_v1=False):
            transform_fn = (rows, metadata) | tft_beam.AnalyzeDataset(
                preprocessing.preprocessing_fn)
            _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
        metadata_io.write_metadata(metadata, os.path.join(
            transform_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
        return tft.TFTransformOutput(transform_dir)

    return analyze


def serialize(rows: list[dict]) -> list[bytes]:
    """Raw rows (dicts of lists of bytes, floats or ints) as serialized tf.Examples."""
    def feature(values):
        if isinstance(values[0], bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        if isinstance(values[0], float):
            return tf.train.Feature(float_list=tf.train.FloatList(value=values))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    return [tf.train.Example(features=tf.train.Features(feature={
        name: feature(values) for name, values in row.items()})).SerializeToString()
            for row in rows]


@pytest.fixture(scope="session")
def analyze_ratings(analyze_transform):
    """A function: raw rating rows (RATING_SPEC's features) -> (the TFTransformOutput of
    `preprocessing_fn` analysed over them, the rows as serialized tf.Examples)."""

    def analyze(rows: list[dict]) -> tuple[tft.TFTransformOutput, list[bytes]]:
        return analyze_transform(rows, RATING_SPEC), serialize(rows)

    return analyze
