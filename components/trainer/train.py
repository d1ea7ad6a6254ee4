"""Trainer's `run_fn`: trains the multi-task model and exports the serving module.

Reads ExampleGen's raw examples and applies Transform's graph in the input pipeline, so the
same graph serves training, the catalogue and raw-input serving.
"""

from __future__ import annotations

import os

from absl import logging
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
    """Unbatched, cached model inputs: raw examples parsed and put through Transform's graph,
    and the raw timestamp (the request time: nothing for Transform to learn from it)."""
    transform = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()

    def parse_and_transform(batch):
        raw = tf.io.parse_example(batch, raw_spec)
        transformed = transform(raw)
        inputs = {name: transformed[name] for name in (*MODEL_INPUTS, features.USER_DEMOGRAPHICS)
                  if name in transformed}
        inputs[features.TIMESTAMP] = tf.reshape(raw[features.TIMESTAMP], [-1])
        return inputs

    return records.batch(8192).map(parse_and_transform).unbatch().cache()


def user_histories(dataset: tf.data.Dataset, num_users: int) -> model_lib.UserHistories:
    """For each user index (OOV last), the movies rated in `dataset`, when and how, in time
    order."""
    rated: list[list[tuple[int, int, float]]] = [[] for _ in range(num_users + 1)]
    for batch in dataset.batch(65536):
        for user, movie, time, rating in zip(batch[features.USER_INDEX].numpy(),
                                             batch[features.MOVIE_INDEX].numpy(),
                                             batch[features.TIMESTAMP].numpy(),
                                             batch[features.RATING_LABEL].numpy()):
            rated[user].append((int(time), int(movie), float(rating)))
    ordered = [sorted(rows) for rows in rated]
    return model_lib.UserHistories([[movie for _, movie, _ in rows] for rows in ordered],
                                   [[time for time, _, _ in rows] for rows in ordered],
                                   [[rating for _, _, rating in rows] for rows in ordered])


def user_demographics(dataset: tf.data.Dataset, num_users: int) -> np.ndarray | None:
    """[num_users + 1, 3] demographic indices per user index (None where the dataset has no
    demographics). Users without examples, and the OOV user, get each feature's extra
    "unknown" index."""
    if features.USER_DEMOGRAPHICS not in dataset.element_spec:
        return None
    table = np.tile(np.array(features.DEMOGRAPHIC_SIZES, dtype=np.int64), (num_users + 1, 1))
    for batch in dataset.batch(65536):
        table[batch[features.USER_INDEX].numpy()] = batch[features.USER_DEMOGRAPHICS].numpy()
    return table


def rated_catalogue_rows(histories: model_lib.UserHistories, movie_vocabulary: list[bytes],
                         catalogue_titles: np.ndarray) -> list[list[int]]:
    """The titles each user rated as sorted, distinct catalogue rows (titles outside the
    vocabulary dropped)."""
    row_of_title = {title: row for row, title in enumerate(catalogue_titles)}
    row_of_movie_index = [row_of_title.get(title, -1) for title in movie_vocabulary] + [-1]
    return [sorted({row_of_movie_index[m] for m in movies if row_of_movie_index[m] >= 0})
            for movies in histories.movies]


def genres_by_movie_index(tf_transform_output: tft.TFTransformOutput,
                          catalogue_titles: np.ndarray, catalogue_genres: tf.RaggedTensor,
                          num_movies: int) -> np.ndarray:
    """[num_movies, NUM_GENRES] genre indicators of each vocabulary movie, through Transform's
    graph (rows of titles absent from the catalogue stay zero)."""
    transformed = tf_transform_output.transform_features_layer()({
        features.MOVIE_TITLE: tf.reshape(tf.constant(list(catalogue_titles), tf.string), [-1, 1]),
        features.MOVIE_GENRES: catalogue_genres.to_sparse()})
    table = np.zeros((num_movies, features.NUM_GENRES), dtype=np.float32)
    indices = transformed[features.MOVIE_INDEX].numpy()
    in_vocabulary = indices < num_movies
    table[indices[in_vocabulary]] = transformed[features.GENRES_MULTI_HOT].numpy()[in_vocabulary]
    return table


def train_module(train_file_patterns: list[str], tf_transform_output: tft.TFTransformOutput,
                 config: model_lib.ModelConfig, log_dir: str | None = None,
                 serve_validation_ratings: bool = True) -> serving.RecommenderModule:
    """Trains the model on the given raw training examples; returns the serving module.

    Training sees only the fit part's ratings, in the loss and in the users' histories, so the
    validation slice stays unseen. The served histories (the history term, and the rated
    titles that `_unrated` metrics leave out) add the validation slice's ratings, unless
    `serve_validation_ratings` is False: tuning scores the module on that slice.
    """
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
    fit_histories = user_histories(fit_part, len(user_vocabulary))
    if not any(fit_histories.movies):
        raise ValueError(f"No training examples in {train_file_patterns}.")
    served_histories = fit_histories
    if serve_validation_ratings:
        served_histories = fit_histories.merged(user_histories(validation,
                                                               len(user_vocabulary)))

    movie_frequencies = np.zeros(len(movie_vocabulary) + 1)
    for batch in fit_part.batch(65536):
        np.add.at(movie_frequencies, batch[features.MOVIE_INDEX].numpy(), 1)
    model = model_lib.build_model(
        len(user_vocabulary), len(movie_vocabulary), config, movie_frequencies, fit_histories,
        genres_by_movie_index(tf_transform_output, catalogue_titles, catalogue_genres,
                              len(movie_vocabulary)),
        user_demographics(fit_part.concatenate(validation), len(user_vocabulary)))
    callbacks = [tf.keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.early_stopping_patience,
        restore_best_weights=True)]
    if log_dir:
        callbacks.append(tf.keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"))
    model.fit(
        fit_part.shuffle(200_000, seed=config.seed, reshuffle_each_iteration=True)
        .batch(config.batch_size).prefetch(tf.data.AUTOTUNE),
        validation_data=validation.batch(config.batch_size),
        epochs=config.epochs, verbose=2, callbacks=callbacks)
    for term, weights in model.user_tower.learnt_time_weights().items():
        logging.info("Learnt %s term weights, by time before the request (from 1 s, %s s): %s",
                     term, config.history_time_boundaries, [float(f"{w:.4g}") for w in weights])
    if config.user_history:
        model.user_tower.set_history(served_histories)
    return serving.RecommenderModule(
        tf_transform_output, model.user_tower, model.movie_tower, model.rating_head,
        catalogue_titles, catalogue_genres,
        rated_catalogue_rows(served_histories, movie_vocabulary, catalogue_titles),
        config.top_k)


def run_fn(fn_args: FnArgs) -> None:
    module = train_module(fn_args.train_files, tft.TFTransformOutput(fn_args.transform_output),
                          model_lib.ModelConfig.from_custom_config(fn_args.custom_config),
                          log_dir=fn_args.model_run_dir)
    module.save(fn_args.serving_model_dir)
