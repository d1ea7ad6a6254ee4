"""The movie catalogue, read once from ExampleGen's `movies` split and put through Transform once.

It owns the bridge between the two index spaces: catalogue rows (one per distinct title, what
the served signatures return and ScaNN indexes) and movie indices (Transform's title
vocabulary, what the model's embeddings are indexed by; titles seen in no training rating share
the out-of-vocabulary index `num_movies`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from components import features
from components.trainer.histories import UserHistories


def read_titles_and_genres(file_pattern: str) -> tuple[np.ndarray, tf.RaggedTensor]:
    """Unique titles [N] and their genre ids [N, None] from ExampleGen's `movies` split files.

    MovieLens has a few titles under two movie ids; retrieval works on titles, so the first
    occurrence is kept.
    """
    spec = {features.MOVIE_TITLE: tf.io.FixedLenFeature([], tf.string),
            features.MOVIE_GENRES: tf.io.RaggedFeature(tf.int64)}
    files = tf.io.gfile.glob(file_pattern)
    if not files:
        raise FileNotFoundError(f"No movie catalogue files match {file_pattern!r}.")
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096).map(
        lambda records: tf.io.parse_example(records, spec))
    titles, genres, seen = [], [], set()
    for batch in dataset:
        for title, genre_ids in zip(batch[features.MOVIE_TITLE].numpy(),
                                    batch[features.MOVIE_GENRES].to_list(), strict=True):
            if title not in seen:
                seen.add(title)
                titles.append(title)
                genres.append(genre_ids)
    return np.array(titles, dtype=object), tf.ragged.constant(genres, dtype=tf.int64,
                                                              ragged_rank=1)


def recent_popularity(items: np.ndarray, times: np.ndarray, num_items: int,
                      days: float) -> np.ndarray:
    """[num_items] float32: each item's log share of the ratings (`items`, `times`: one per
    rating) made in the `days` days up to the latest one, the items rated as often (none
    included) ordered by their share of all the ratings: log((recent + prior) / (recent total
    + 1)), prior the item's Laplace-smoothed share of all ratings (it sums to 1 over the
    items, so it weighs as one rating and only breaks ties)."""
    all_counts = np.bincount(items, minlength=num_items).astype(np.float64)
    prior = (all_counts + 1.0) / (all_counts.sum() + num_items)
    if not len(items):
        return np.log(prior).astype(np.float32)
    recent = times >= times.max() - days * 86_400
    recent_counts = np.bincount(items[recent], minlength=num_items)
    return np.log((recent_counts + prior) / (recent.sum() + 1.0)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class ColdStart:
    """How users unseen in training are answered: `scores` [N] rank the catalogue
    (Catalogue.recent_popularity_scores), `ratings` [N + 1] rate its titles and, last, a title
    outside it (Catalogue.shrunk_mean_ratings)."""

    scores: np.ndarray
    ratings: np.ndarray


@dataclasses.dataclass(frozen=True)
class Catalogue:
    """N titles and what Transform made of them, plus row N: an unknown title (the OOV index,
    no genres), so that any title can be rated through the shared OOV embedding."""

    titles: np.ndarray  # [N] bytes
    movie_index: np.ndarray  # [N + 1] int64: each row's movie index
    genres_multi_hot: np.ndarray  # [N + 1, NUM_GENRES] float32
    num_movies: int  # the vocabulary's size, which is also the OOV index

    @classmethod
    def from_titles(cls, titles: np.ndarray, genres: tf.RaggedTensor,
                    tf_transform_output: tft.TFTransformOutput) -> "Catalogue":
        transformed = tf_transform_output.transform_features_layer()({
            features.MOVIE_TITLE: tf.reshape(tf.constant([*titles, b""], tf.string), [-1, 1]),
            features.MOVIE_GENRES: tf.concat(
                [genres, tf.ragged.constant([[]], dtype=tf.int64)], axis=0).to_sparse()})
        return cls(titles, transformed[features.MOVIE_INDEX].numpy(),
                   transformed[features.GENRES_MULTI_HOT].numpy(),
                   tf_transform_output.vocabulary_size_by_name(features.MOVIE_VOCABULARY))

    @classmethod
    def read(cls, file_pattern: str, tf_transform_output: tft.TFTransformOutput) -> "Catalogue":
        return cls.from_titles(*read_titles_and_genres(file_pattern), tf_transform_output)

    def __len__(self) -> int:
        return len(self.titles)

    def _in_vocabulary(self) -> np.ndarray:
        """[N] bool: the titles that have a movie index of their own."""
        return self.movie_index[:-1] < self.num_movies

    def genres_by_movie_index(self) -> np.ndarray:
        """[num_movies, NUM_GENRES] genre indicators of each vocabulary movie (rows of titles
        absent from the catalogue stay zero)."""
        table = np.zeros((self.num_movies, features.NUM_GENRES), dtype=np.float32)
        kept = self._in_vocabulary()
        table[self.movie_index[:-1][kept]] = self.genres_multi_hot[:-1][kept]
        return table

    def _row_of_movie(self) -> np.ndarray:
        """[num_movies + 1] int64: each movie index's catalogue row, -1 where none."""
        row_of_movie = np.full(self.num_movies + 1, -1, dtype=np.int64)
        kept = self._in_vocabulary()
        row_of_movie[self.movie_index[:-1][kept]] = np.flatnonzero(kept)
        return row_of_movie

    def rated_rows(self, histories: UserHistories) -> tf.RaggedTensor:
        """The titles each user rated, as sorted, distinct catalogue rows (movies outside the
        catalogue dropped), [num_users + 1, None]."""
        row_splits, rows = histories.distinct_rows(self._row_of_movie())
        return tf.RaggedTensor.from_row_splits(rows, row_splits)

    def _rated_rows_and_kept(self, histories: UserHistories) -> tuple[np.ndarray, np.ndarray]:
        """(the catalogue row of each rating of `histories`, which of them have one)."""
        rows = self._row_of_movie()[histories.movies]
        kept = rows >= 0
        return rows[kept], kept

    def recent_popularity_scores(self, histories: UserHistories, days: float) -> np.ndarray:
        """[N] float32: `recent_popularity` of the catalogue's titles in `histories`."""
        rows, kept = self._rated_rows_and_kept(histories)
        return recent_popularity(rows, histories.times[kept], len(self), days)

    def shrunk_mean_ratings(self, histories: UserHistories, shrinkage: float) -> np.ndarray:
        """[N + 1] float32: each title's mean rating in `histories`, shrunk towards the mean of
        all of them as if it had `shrinkage` more ratings at that mean (the global mean plus
        the title's bias, a biases-only model's answer for an unknown user); last, for a title
        outside the catalogue, the mean of all."""
        if shrinkage <= 0:
            raise ValueError(f"cold_start_rating_shrinkage must be positive, got {shrinkage}.")
        mean = histories.mean_rating()
        rows, kept = self._rated_rows_and_kept(histories)
        counts = np.bincount(rows, minlength=len(self))
        deviations = np.bincount(rows, weights=histories.ratings[kept] - mean,
                                 minlength=len(self))
        return np.append(mean + deviations / (counts + shrinkage), mean).astype(np.float32)

    def cold_start(self, histories: UserHistories, days: float, shrinkage: float) -> ColdStart:
        return ColdStart(self.recent_popularity_scores(histories, days),
                         self.shrunk_mean_ratings(histories, shrinkage))
