"""Transform's real graph on tiny in-memory data, for the Trainer's tests."""

import os

import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

from components.transform import preprocessing


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
