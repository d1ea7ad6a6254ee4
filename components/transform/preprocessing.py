"""Transform's `preprocessing_fn`: vocabularies and model-ready features from raw MovieLens.

Every output depends on one group of raw features only (user or movie), so the saved transform
graph can be applied to movie features alone (the catalogue). Serving maps user ids with a table
of the user vocabulary instead (components/trainer/serving.py), which a test holds to this
transform.
"""

import tensorflow as tf
import tensorflow_transform as tft

from components import features

# One out-of-vocabulary bucket: users and titles not seen in training share it.
NUM_OOV_BUCKETS = 1


def _flat(tensor: tf.Tensor) -> tf.Tensor:
    return tf.reshape(tensor, [-1])


def genres_multi_hot(genres: tf.SparseTensor) -> tf.Tensor:
    """[batch, NUM_GENRES] float indicator of TFDS's genre class ids."""
    return tf.cast(tf.sparse.to_indicator(genres, features.NUM_GENRES), tf.float32)


def preprocessing_fn(inputs: dict) -> dict:
    return {
        features.USER_INDEX: tft.compute_and_apply_vocabulary(
            _flat(inputs[features.USER_ID]), num_oov_buckets=NUM_OOV_BUCKETS,
            vocab_filename=features.USER_VOCABULARY),
        features.MOVIE_INDEX: tft.compute_and_apply_vocabulary(
            _flat(inputs[features.MOVIE_TITLE]), num_oov_buckets=NUM_OOV_BUCKETS,
            vocab_filename=features.MOVIE_VOCABULARY),
        features.GENRES_MULTI_HOT: genres_multi_hot(inputs[features.MOVIE_GENRES]),
        features.RATING_LABEL: _flat(inputs[features.RATING]),
    }
