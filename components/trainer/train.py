"""Trainer's `run_fn`: trains the multi-task model and exports the serving module.

Reads ExampleGen's raw examples and applies Transform's graph in the input pipeline, so the
same graph serves training, the catalogue and raw-input serving.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from components import features
from components.trainer import model as model_lib
from components.trainer import serving

MODEL_INPUTS = (features.USER_INDEX, features.MOVIE_INDEX, features.GENRES_MULTI_HOT,
                features.RATING_LABEL)


def split_file_pattern(train_file_pattern: str, split: str) -> str:
    """The files of another split of the same Examples artifact (`.../Split-<name>/*`).

    TFX hands run_fn only the train and eval splits; the catalogue split sits beside them.
    """
    split_dir = os.path.dirname(train_file_pattern)
    return os.path.join(os.path.dirname(split_dir), f"Split-{split}",
                        os.path.basename(train_file_pattern))


def read_records(file_patterns: list[str]) -> tf.data.Dataset:
    files = sorted(path for pattern in file_patterns for path in tf.io.gfile.glob(pattern))
    return tf.data.TFRecordDataset(files, compression_type="GZIP")


def is_validation(records: tf.Tensor, fraction: float) -> tf.Tensor:
    """Deterministic membership of serialized examples in the validation slice."""
    return tf.strings.to_hash_bucket_fast(records, 10_000) < int(round(fraction * 10_000))


def transformed_dataset(records: tf.data.Dataset,
                        tf_transform_output: tft.TFTransformOutput) -> tf.data.Dataset:
    """Unbatched, cached model inputs: raw examples parsed and put through Transform's graph."""
    transform = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()

    def parse_and_transform(batch):
        transformed = transform(tf.io.parse_example(batch, raw_spec))
        return {name: transformed[name] for name in MODEL_INPUTS}

    return records.batch(8192).map(parse_and_transform).unbatch().cache()


def user_histories(dataset: tf.data.Dataset, num_users: int) -> list[list[int]]:
    """For each user index (OOV last), the movie indices rated in `dataset`, sorted."""
    rated: list[set[int]] = [set() for _ in range(num_users + 1)]
    for batch in dataset.batch(65536):
        for user, movie in zip(batch[features.USER_INDEX].numpy(),
                               batch[features.MOVIE_INDEX].numpy()):
            rated[user].add(int(movie))
    return [sorted(movies) for movies in rated]


def rated_catalogue_rows(histories: list[list[int]], movie_vocabulary: list[bytes],
                         catalogue_titles: np.ndarray) -> list[list[int]]:
    """The histories as catalogue rows (titles outside the vocabulary dropped)."""
    row_of_title = {title: row for row, title in enumerate(catalogue_titles)}
    row_of_movie_index = [row_of_title.get(title, -1) for title in movie_vocabulary] + [-1]
    return [sorted(row_of_movie_index[m] for m in movies if row_of_movie_index[m] >= 0)
            for movies in histories]


def train_module(train_file_patterns: list[str], tf_transform_output: tft.TFTransformOutput,
                 config: model_lib.ModelConfig, log_dir: str | None = None
                 ) -> serving.RecommenderModule:
    """Trains the model on the given raw training examples; returns the serving module."""
    user_vocabulary = tf_transform_output.vocabulary_by_name(features.USER_VOCABULARY)
    movie_vocabulary = tf_transform_output.vocabulary_by_name(features.MOVIE_VOCABULARY)
    records = read_records(train_file_patterns)
    fit_part = transformed_dataset(
        records.filter(lambda r: ~is_validation(r, config.validation_fraction)),
        tf_transform_output)
    validation = transformed_dataset(
        records.filter(lambda r: is_validation(r, config.validation_fraction)),
        tf_transform_output)
    catalogue_titles, catalogue_genres = serving.read_catalogue(
        split_file_pattern(train_file_patterns[0], features.MOVIES_SPLIT))
    # Everything the user rated in the training split counts as seen, validation included.
    histories = user_histories(fit_part.concatenate(validation), len(user_vocabulary))
    rated_rows = rated_catalogue_rows(histories, movie_vocabulary, catalogue_titles)
    if not any(rated_rows):
        raise ValueError(f"No training examples in {train_file_patterns}.")

    movie_frequencies = np.zeros(len(movie_vocabulary) + 1)
    for batch in fit_part.batch(65536):
        np.add.at(movie_frequencies, batch[features.MOVIE_INDEX].numpy(), 1)
    model = model_lib.build_model(len(user_vocabulary), len(movie_vocabulary), config,
                                  movie_frequencies, histories)
    callbacks = [tf.keras.callbacks.EarlyStopping(
        monitor="val_total_loss", patience=config.early_stopping_patience,
        restore_best_weights=True)]
    if log_dir:
        callbacks.append(tf.keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"))
    model.fit(
        fit_part.shuffle(200_000, seed=config.seed, reshuffle_each_iteration=True)
        .batch(config.batch_size).prefetch(tf.data.AUTOTUNE),
        validation_data=validation.batch(config.batch_size),
        epochs=config.epochs, verbose=2, callbacks=callbacks)
    return serving.RecommenderModule(
        tf_transform_output, model.user_tower, model.movie_tower, model.rating_head,
        catalogue_titles, catalogue_genres, rated_rows, config.top_k)


def run_fn(fn_args: FnArgs) -> None:
    module = train_module(fn_args.train_files, tft.TFTransformOutput(fn_args.transform_output),
                          model_lib.ModelConfig.from_custom_config(fn_args.custom_config),
                          log_dir=fn_args.model_run_dir)
    module.save(fn_args.serving_model_dir)
