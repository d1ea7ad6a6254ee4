"""An item-based neighbourhood rating model (Koren's kNN with baselines, "Factorization meets the
neighborhood", 2008; scikit-surprise's KNNBaseline with its `pearson_baseline` similarity),
blended with the rating head's prediction.

Its errors are not the neural model's: on ml-100k's validation slice, a least-squares blend of
the two took 0.005 to 0.006 off the rating head's RMSE (seeds 42 and 43), more than a second
neural model did (benchmarks/results/tuning.md, round 24). Fitted in numpy after training, on
the same fit part of the training ratings; served from dense tables:

    estimate(u, i) = mu + b_u + b_i + sum_j s_ij (r_uj - mu - b_u - b_j) / sum_j s_ij

over the `size` titles j the user rated (stored history, spread as the taste term's, and the
request's own ratings) most similar to i, those of positive similarity only. b_u and b_i: the
baselines (alternating least squares); s_ij: the Pearson correlation of the two titles'
baseline residuals over their common raters, shrunk by `shrinkage` towards 0. Similarities are
kept for the `max_titles` most rated titles (every title of ml-100k and ml-1m): a dense table
whose size does not grow with the catalogue beyond that; other titles get their baseline.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from components.trainer.histories import UserHistories
from components.trainer.model import HistoryTable, RatingWindow, held


@dataclasses.dataclass(frozen=True)
class Baselines:
    mean: float
    user_bias: np.ndarray  # [num_users + 1] float32, the OOV user last (0)
    movie_bias: np.ndarray  # [num_movies + 1] float32, the OOV title last (0)


def fit_baselines(users: np.ndarray, movies: np.ndarray, ratings: np.ndarray, num_users: int,
                  num_movies: int, user_regularization: float = 15.0,
                  movie_regularization: float = 10.0, epochs: int = 10) -> Baselines:
    """mu + b_u + b_i by alternating least squares, titles first (surprise's BaselineOnly
    with its defaults)."""
    ratings = np.asarray(ratings, np.float64)
    mean = float(ratings.mean()) if len(ratings) else 0.0
    user_count = np.bincount(users, minlength=num_users + 1)
    movie_count = np.bincount(movies, minlength=num_movies + 1)
    user_bias = np.zeros(num_users + 1)
    movie_bias = np.zeros(num_movies + 1)
    for _ in range(epochs):
        movie_bias = np.bincount(movies, ratings - mean - user_bias[users],
                                 minlength=num_movies + 1) / (movie_regularization + movie_count)
        user_bias = np.bincount(users, ratings - mean - movie_bias[movies],
                                minlength=num_users + 1) / (user_regularization + user_count)
    return Baselines(mean, user_bias.astype(np.float32), movie_bias.astype(np.float32))


def pearson_baseline_similarities(users: np.ndarray, slots: np.ndarray, residuals: np.ndarray,
                                  num_slots: int, shrinkage: float,
                                  users_per_chunk: int = 8_192) -> np.ndarray:
    """[num_slots, num_slots] float32: the shrunk Pearson correlation of the residuals of each
    pair of slots over the users who rated both (1 on the diagonal, 0 without a common rater).
    Dense products over chunks of users: the cost is users x slots^2, whatever the activity."""
    products = np.zeros((num_slots, num_slots), np.float32)
    squares = np.zeros((num_slots, num_slots), np.float32)
    common = np.zeros((num_slots, num_slots), np.float32)
    order = np.argsort(users, kind="stable")
    users, slots, residuals = users[order], slots[order], residuals[order]
    distinct, first = np.unique(users, return_index=True)
    bounds = np.append(first, len(users))
    for start in range(0, len(distinct), users_per_chunk):
        stop = min(start + users_per_chunk, len(distinct))
        rows = slice(bounds[start], bounds[stop])
        local = np.searchsorted(distinct[start:stop], users[rows])
        shape = (stop - start, num_slots)
        residual = np.zeros(shape, np.float32)
        residual[local, slots[rows]] = residuals[rows]
        rated = np.zeros(shape, np.float32)
        rated[local, slots[rows]] = 1.0
        products += residual.T @ residual
        squares += np.square(residual).T @ rated
        common += rated.T @ rated
    with np.errstate(divide="ignore", invalid="ignore"):
        correlation = products / np.sqrt(squares * squares.T)
    similarity = np.where(np.isfinite(correlation) & (common > 0), correlation, 0.0)
    similarity *= np.maximum(common - 1, 0) / (np.maximum(common - 1, 0) + shrinkage)
    np.fill_diagonal(similarity, 1.0)
    return similarity.astype(np.float32)


class ItemNeighbourhood(tf.Module):
    """The fitted model as variables (exported with the serving module)."""

    def __init__(self, baselines: Baselines, slot_of_movie: np.ndarray, similarity: np.ndarray,
                 size: int, history_size: int):
        super().__init__()
        self.size = size
        self.history_size = history_size
        self.mean = tf.constant(baselines.mean, tf.float32)
        self.user_bias = tf.Variable(baselines.user_bias, trainable=False, name="user_bias")
        self.movie_bias = tf.Variable(baselines.movie_bias, trainable=False, name="movie_bias")
        # Titles without a slot read the last one, a zero row and column.
        self.slot_of_movie = tf.Variable(slot_of_movie.astype(np.int32), trainable=False,
                                         name="slot_of_movie")
        # In half precision: a correlation needs no more digits, and ml-1m's 3.7k titles take
        # 26 MiB of the export instead of 52.
        padded = np.zeros([len(similarity) + 1] * 2, np.float16)
        padded[:-1, :-1] = similarity
        self.similarity = tf.Variable(padded, trainable=False, name="similarity")

    @classmethod
    def fit(cls, histories: UserHistories, num_movies: int, size: int, history_size: int,
            shrinkage: float, max_titles: int) -> "ItemNeighbourhood":
        """Fitted on the ratings of `histories` (the users' fit-part histories)."""
        users = histories.user_index_per_rating()
        movies, ratings = histories.movies, histories.ratings
        baselines = fit_baselines(users, movies, ratings, histories.num_users - 1, num_movies)
        counts = np.bincount(movies, minlength=num_movies + 1)[:num_movies]
        kept = np.argsort(-counts, kind="stable")[:max_titles]
        kept = kept[counts[kept] > 0]
        slot_of_movie = np.full(num_movies + 1, len(kept), np.int64)
        slot_of_movie[kept] = np.arange(len(kept))
        slots = slot_of_movie[movies]
        with_slot = slots < len(kept)
        residuals = (ratings - baselines.mean - baselines.user_bias[users]
                     - baselines.movie_bias[movies])
        similarity = pearson_baseline_similarities(users[with_slot], slots[with_slot],
                                                   residuals[with_slot].astype(np.float32),
                                                   len(kept), shrinkage)
        return cls(baselines, slot_of_movie, similarity, size, history_size)

    def rate(self, history: HistoryTable, user_index: tf.Tensor, movie_index: tf.Tensor,
             request: RatingWindow | None = None) -> tf.Tensor:
        """[B] the estimated ratings of titles `movie_index` by users `user_index`, from up to
        `history_size` of their stored ratings spread over the history and the ratings with
        stars that the request carries (those not among the stored ones read)."""
        window = history.window(*history.spread(user_index, self.history_size))
        movies, ratings, valid = window.movies, window.ratings, window.valid
        if request is not None:
            added = (request.valid & (request.ratings > 0)
                     & ~held(request.movies, movies, valid))
            movies = tf.concat([movies, request.movies], axis=1)
            ratings = tf.concat([ratings, tf.cast(request.ratings, tf.float32)], axis=1)
            valid = tf.concat([valid, added], axis=1)
        return self.estimate(user_index, movie_index, movies, ratings, valid)

    def estimate(self, user_index: tf.Tensor, movie_index: tf.Tensor, movies: tf.Tensor,
                 ratings: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
        """[B] the estimated ratings of titles `movie_index` [B] by users `user_index` [B],
        from their ratings `ratings` [B, W] of titles `movies` [B, W] (where `valid`)."""
        baseline = self.mean + tf.gather(self.user_bias, user_index)
        slots = tf.gather(self.slot_of_movie, movies)
        similarity = tf.cast(tf.gather_nd(self.similarity, tf.stack(
            [tf.broadcast_to(tf.gather(self.slot_of_movie, movie_index)[:, None],
                             tf.shape(slots)), slots], axis=-1)), tf.float32)
        # The `size` most similar of the valid ratings, then those of positive similarity.
        nearest, positions = tf.math.top_k(tf.where(valid, similarity, -1.0),
                                           k=tf.minimum(self.size, tf.shape(similarity)[1]))
        nearest = tf.maximum(nearest, 0.0)
        residuals = (tf.gather(ratings, positions, batch_dims=1) - baseline[:, None]
                     - tf.gather(self.movie_bias, tf.gather(movies, positions, batch_dims=1)))
        weighted = tf.math.divide_no_nan(tf.reduce_sum(nearest * residuals, axis=1),
                                         tf.reduce_sum(nearest, axis=1))
        return baseline + tf.gather(self.movie_bias, movie_index) + weighted
