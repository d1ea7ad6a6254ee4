import tempfile

import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from components import features
from components.transform import preprocessing

RAW_SPEC = {
    features.USER_ID: tf.io.FixedLenFeature([1], tf.string),
    features.MOVIE_TITLE: tf.io.FixedLenFeature([1], tf.string),
    features.MOVIE_GENRES: tf.io.VarLenFeature(tf.int64),
    features.RATING: tf.io.FixedLenFeature([1], tf.float32),
}
RAW = [
    {"user_id": [b"7"], "movie_title": [b"Heat (1995)"], "movie_genres": [1, 6],
     "user_rating": [4.0]},
    {"user_id": [b"7"], "movie_title": [b"Fargo (1996)"], "movie_genres": [6],
     "user_rating": [5.0]},
    {"user_id": [b"9"], "movie_title": [b"Fargo (1996)"], "movie_genres": [6, 7],
     "user_rating": [3.0]},
]


def _analyze_and_transform(raw=RAW, spec=RAW_SPEC):
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    with tft_beam.Context(temp_dir=tempfile.mkdtemp(), force_tf_compat_v1=False):
        (transformed, _), transform_fn = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(
            preprocessing.preprocessing_fn)
    return transformed


def test_vocabularies_index_by_frequency_and_outputs_are_model_ready():
    rows = _analyze_and_transform()
    # The most frequent value gets index 0: user 7 (2 ratings), Fargo (2 ratings).
    assert [row[features.USER_INDEX] for row in rows] == [0, 0, 1]
    assert [row[features.MOVIE_INDEX] for row in rows] == [1, 0, 0]
    assert [row[features.RATING_LABEL] for row in rows] == [4.0, 5.0, 3.0]
    genres = [list(row[features.GENRES_MULTI_HOT]) for row in rows]
    assert all(len(g) == features.NUM_GENRES for g in genres)
    assert [i for i, v in enumerate(genres[0]) if v] == [1, 6]
    assert [i for i, v in enumerate(genres[2]) if v] == [6, 7]
    assert set(rows[0]) == {features.USER_INDEX, features.MOVIE_INDEX,
                            features.GENRES_MULTI_HOT, features.RATING_LABEL}


def test_genres_multi_hot_ignores_order_and_duplicates():
    genres = tf.sparse.from_dense(tf.constant([[3, 1, 3], [0, 0, 0]], dtype=tf.int64))
    dense = preprocessing.genres_multi_hot(genres).numpy()
    assert dense.shape == (2, features.NUM_GENRES)
    assert list(dense[0].nonzero()[0]) == [1, 3] and list(dense[1].nonzero()[0]) == []
