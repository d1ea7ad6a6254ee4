"""The multi-task TFRS model: user and movie towers shared by a retrieval and a rating task.

Inputs are Transform's outputs (see components/transform/preprocessing.py): user_index [batch]
int64, movie_index [batch] int64 and the label rating [batch] float32; and the raw timestamp
[batch] int64 (seconds since the epoch), the time of the request: the rating's own time in
training and evaluation. Genres come from the catalogue, by movie index.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from components import features
from components.trainer.config import ModelConfig
from components.trainer.histories import UserHistories
from components.trainer.lazy_adam import LazyAdam

# History keys are user index * 2**32 + time, so one binary search finds a user's ratings before a
# time. MovieLens times (seconds since 1970) stay below 2**32 until 2106; request times outside
# [0, 2**32 - 1] are clamped (a request "at the end of time" sees the whole history).
_TIME_RANGE = 2**32
LATEST_TIME = _TIME_RANGE - 1


def clamp_time(time: tf.Tensor) -> tf.Tensor:
    return tf.clip_by_value(tf.cast(time, tf.int64), 0, LATEST_TIME)


# Optional columns of a batch: ratings the request carries beyond the stored history (a
# RatingWindow's four fields, each [batch, size]). Validation checks replay the slice's own
# earlier ratings through them (train.earlier_slice_ratings).
REQUEST_COLUMNS = ("request_movies", "request_times", "request_ratings", "request_valid")

# Training batches come in user chunks (train.user_chunks): USER_INDEX [chunks], the other
# columns [chunks, examples per chunk], and this one [chunks, examples per chunk], False where
# it pads a chunk. Its examples are training examples: each leaves its own title out.
CHUNK_SLOTS = "chunk_slots"


@dataclasses.dataclass(frozen=True)
class RatingWindow:
    """A window of each user's ratings, each [batch, size]: movie index, time (seconds since the
    epoch), rating (0: stars not given, left out of the rated term) and valid (False pads a
    shorter list, or marks an unknown title). Two kinds: the latest stored ratings before a
    request (UserTower.recent_ratings), and the ratings a request carries beyond the stored
    history (what the user just did); a title of the latter already in the stored ratings a
    term reads (the taste term's sample, the recent window) counts once there."""

    movies: tf.Tensor
    times: tf.Tensor
    ratings: tf.Tensor
    valid: tf.Tensor


def held(movies: tf.Tensor, other_movies: tf.Tensor, other_valid: tf.Tensor) -> tf.Tensor:
    """[batch, size] bool: each of `movies` [batch, size] is among the row's valid
    `other_movies` [batch, other]. Compared as int32 (movie indices are vocabulary positions),
    invalid ones replaced by a value no index takes: the [batch, size, other] comparison is
    most of what a request's ratings add to a validation batch; this way it took 5.2 against
    8.0 ms at [1,024, 64, 128] (2.3 against 4.2 at [1,024, 64, 64]), an ml-1m-shaped
    validation batch 29.9 against 32.3 ms (AMD EPYC, 2026-12-03)."""
    other = tf.where(other_valid, tf.cast(other_movies, tf.int32), tf.int32.min)
    return tf.reduce_any(tf.cast(movies, tf.int32)[:, :, None] == other[:, None, :], axis=2)


class HistoryTable(tf.Module):
    """The users' histories (histories.UserHistories) as variables, with the two bounded reads
    the user tower needs. Variables, not constants: a 25 M-rating history would exceed the 2 GB
    limit of a graph, and `assign` swaps in the served histories after training.

    Both reads cost O(batch * size), whatever the users' history lengths: the tower's cost per
    example is flat, where averaging whole histories made an epoch cost the sum over users of
    (ratings per user)^2.
    """

    def __init__(self, histories: UserHistories):
        super().__init__(name="history_table")

        def variable(values, dtype, name):
            return tf.Variable(tf.constant(values, dtype), trainable=False, shape=[None],
                               name=name)

        self.row_splits = variable(histories.row_splits, tf.int64, "row_splits")
        self.keys = variable(self._keys(histories), tf.int64, "keys")
        # Movie indices are vocabulary positions: int32 holds them in 4 bytes, not 8 (with the
        # int32 rated rows of the export, 20 bytes a served rating where it took 28).
        self.movies = variable(histories.movies, tf.int32, "movies")
        self.ratings = variable(histories.ratings, tf.float32, "ratings")

    @staticmethod
    def _keys(histories: UserHistories) -> np.ndarray:
        times = np.clip(histories.times, 0, LATEST_TIME)
        return histories.user_index_per_rating() * _TIME_RANGE + times

    def assign(self, histories: UserHistories) -> None:
        """Replaces the histories, e.g. with the served ones after training."""
        self.row_splits.assign(histories.row_splits)
        self.keys.assign(self._keys(histories))
        self.movies.assign(histories.movies.astype(np.int32))
        self.ratings.assign(histories.ratings)

    def ends(self, user_index: tf.Tensor, request_time: tf.Tensor) -> tf.Tensor:
        """The position after each user's last rating made strictly before `request_time`
        (both [batch]): the user's ratings before the request end there."""
        request_key = user_index * _TIME_RANGE + clamp_time(request_time)
        return tf.searchsorted(self.keys[None, :], request_key[None, :], side="left",
                               out_type=tf.int64)[0]

    def earlier(self, user_index: tf.Tensor, request_time: tf.Tensor, size: int):
        """The user's `size` latest ratings made strictly before `request_time`:
        (positions, valid) [batch, size], oldest first; invalid slots pad short histories."""
        end = self.ends(user_index, request_time)
        start = tf.gather(self.row_splits, user_index)
        positions = end[:, None] - size + tf.range(size, dtype=tf.int64)[None, :]
        valid = positions >= start[:, None]
        return tf.where(valid, positions, 0), valid

    def window(self, positions: tf.Tensor, valid: tf.Tensor) -> "RatingWindow":
        """The ratings at `positions` [batch, size] (as `earlier` and `spread` give them)."""
        # Gathered from the keys read whole, as `ends` reads them: a gather from the variable
        # itself (ResourceGather) puts it in copy-on-read mode for good, and every later
        # whole read then copies all of it (8 bytes a rating, each step and each request).
        return RatingWindow(self.movies_at(positions),
                            tf.gather(tf.convert_to_tensor(self.keys), positions) % _TIME_RANGE,
                            tf.gather(self.ratings, positions), valid)

    def movies_at(self, positions: tf.Tensor) -> tf.Tensor:
        """The movie indices (int64, as every lookup takes them) at `positions`."""
        return tf.cast(tf.gather(self.movies, positions), tf.int64)

    def spread(self, user_index: tf.Tensor, size: int):
        """Up to `size` of the user's ratings spread evenly over the whole history (all of them
        when the user has at most `size`): (positions, valid) [batch, size]."""
        start = tf.gather(self.row_splits, user_index)[:, None]
        count = tf.gather(self.row_splits, user_index + 1)[:, None] - start
        slot = tf.range(size, dtype=tf.int64)[None, :]
        offsets = tf.where(count > size, (2 * slot + 1) * count // (2 * size), slot)
        valid = slot < count
        return tf.where(valid, start + offsets, 0), valid


class TimeBucketWeights(tf.keras.layers.Layer):
    """A learnt positive weight per bucket of the time between a rating and the request.

    gaps [...] int64 seconds (> 0) -> weights [...]: exp of the bucket's learnt log-weight, all
    1 at initialisation. `boundaries` are the buckets' upper ends, in seconds.
    """

    def __init__(self, boundaries: tuple[float, ...], **kwargs):
        super().__init__(**kwargs)
        self.boundaries = tf.constant(boundaries, tf.float32)
        self.log_weights = tf.keras.layers.Embedding(len(boundaries) + 1, 1,
                                                     embeddings_initializer="zeros")

    def call(self, gaps: tf.Tensor) -> tf.Tensor:
        flat = tf.reshape(tf.cast(gaps, tf.float32), [-1])
        buckets = tf.reshape(tf.searchsorted(self.boundaries, flat, side="right"),
                             tf.shape(gaps))
        return tf.exp(self.log_weights(buckets)[..., 0])


# Catalogues up to this many titles: a weighted sum of embeddings is one matrix product with a
# dense [batch, titles] weight matrix, whose gradient is dense too. Its cost grows with the
# catalogue, the gather's with the history window: measured interleaved in one process, a
# 1,024-example step took 90 ms dense against 113 with a plain gather on ml-100k (1,664
# titles), and 159 against 142 on ml-1m-shaped data (3,706 titles). The same sums either way.
# Since the gathered route's gradient is dense (_gathered_sum_with_dense_gradient) it is 1 to
# 12 % cheaper at ml-100k's size (three A/Bs, 2026-12-03, docs/cost_and_scale.md), within the
# machine's spread; the product stays, so that ml-100k trains as every figure quoted for it was
# measured. (Measured before user chunks: in training these sums are now the taste term's and
# the validation checks'; the recent terms of a chunk are batched products over its shared
# window, UserTower.chunk_vectors.)
DENSE_SUM_MAX_ROWS = 2048
# Embedding tables up to this many rows are updated densely (see LazyAdam): at ml-100k's and
# ml-1m's sizes (at most 6,041 rows) lazy updates cost 2 to 5 % more a step; ml-25m's tables
# (59k titles, 162k users) are where they pay, 361 -> 212 ms a step (benchmarks/step_cost.py).
DENSE_UPDATE_MAX_ROWS = 32_768

HISTORY_SUM_PRECISIONS = ("auto", "float32", "bfloat16")


def cpu_multiplies_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 matrix tiles in hardware (Intel AMX) and TensorFlow's
    oneDNN kernels, which use them, are on (TF_ENABLE_ONEDNN_OPTS, on by default on x86 Linux).
    AVX-512 BF16 alone (AMD Zen 4) is not enough: there an ml-1m-shaped step was 6 % cheaper
    in bfloat16 and an ml-100k-shaped one 5 % dearer (benchmarks/step_cost.py, 2026-12-03)."""
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") == "0":
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return any(line.startswith("flags") and "amx_bf16" in line.split()
                       for line in cpuinfo)
    except OSError:
        return False


def bfloat16_history_sums(precision: str, num_movies: int) -> bool:
    """Whether training computes the history sums over `num_movies` titles in bfloat16
    (`ModelConfig.history_sum_precision`). "auto": on CPUs that multiply bfloat16 in hardware,
    for catalogues between DENSE_SUM_MAX_ROWS and DENSE_UPDATE_MAX_ROWS titles (ml-1m's 3.7k),
    where the sums are products of [batch, titles] weight matrices with the tables: 57 -> 42 ms
    a 1,024-example ml-1m-shaped step on AMX before user chunks, whose recent terms are summed
    in float32 (benchmarks/step_cost.py). At ml-100k's 1.7k titles
    float32 is kept on purpose: bfloat16 took 11 % off a step on AMX (23.3 -> 20.7 ms), about
    3 s of the Trainer, not worth moving every ml-100k figure the README quotes; "bfloat16"
    asks for it. Above 32,768 titles the sums are gathers."""
    if precision not in HISTORY_SUM_PRECISIONS:
        raise ValueError(f"history_sum_precision must be one of {HISTORY_SUM_PRECISIONS}, "
                         f"got {precision!r}.")
    if precision == "auto":
        return (DENSE_SUM_MAX_ROWS < num_movies + 1 <= DENSE_UPDATE_MAX_ROWS
                and cpu_multiplies_bfloat16())
    return precision == "bfloat16"


def weighted_sum(embedding: tf.keras.layers.Embedding, rows: tf.Tensor, weights: tf.Tensor,
                 in_bfloat16: bool = False) -> tf.Tensor:
    """rows [batch, size] int64, weights [batch, size] -> sum of weights * embedding rows
    [batch, dim]. `in_bfloat16`: for tables of at most DENSE_UPDATE_MAX_ROWS rows, the product
    of a bfloat16 weight matrix with the table rounded to bfloat16, accumulated in float32 (its
    gradients in bfloat16 too)."""
    if embedding.input_dim > DENSE_UPDATE_MAX_ROWS:
        return tf.reduce_sum(embedding(rows) * weights[..., None], axis=1)
    if in_bfloat16:
        width = embedding.input_dim
        table = embedding(tf.range(width, dtype=tf.int64))
        return tf.cast(tf.matmul(_dense_weight_matrix(rows, tf.cast(weights, tf.bfloat16), width),
                                 tf.cast(table, tf.bfloat16)), tf.float32)
    if embedding.input_dim > DENSE_SUM_MAX_ROWS:
        if not embedding.built:
            embedding.build(None)
        return _gathered_sum_with_dense_gradient(embedding.embeddings, rows, weights)
    width = embedding.input_dim
    return tf.matmul(_dense_weight_matrix(rows, weights, width),
                     embedding(tf.range(width, dtype=tf.int64)))


def _dense_weight_matrix(rows: tf.Tensor, weights: tf.Tensor, width: int | tf.Tensor) -> tf.Tensor:
    """[batch, width]: each example's weights at its rows (repeated rows add up). Built by a
    segment sum: measured a little faster than scatter_nd."""
    batch = tf.shape(rows, out_type=tf.int64)[0]
    cells = tf.reshape(tf.range(batch)[:, None] * width + rows, [-1])
    return tf.reshape(tf.math.unsorted_segment_sum(tf.reshape(weights, [-1]), cells,
                                                   batch * width), [batch, width])


def _gathered_sum_with_dense_gradient(table: tf.Variable, rows: tf.Tensor,
                                      weights: tf.Tensor) -> tf.Tensor:
    """The gather's weighted sum, whose gradient to `table` is built dense, as one product of
    the [batch, rows] weight matrix with the upstream gradient. The gather's own gradient is
    one row per read (batch x window rows), which the optimizer sums into the table by a
    segment sum, since tables this small are updated densely anyway: the same gradient, but at
    ml-1m's 3,706 titles that segment sum took most of a step (72-74 against 51-53 ms a
    1,024-example step, alternated, benchmarks/step_cost.py).

    The window's sum and its gradient to the weights are batched matrix products (einsum): an
    element-wise product summed over the window writes and reads a [batch, size, dim]
    intermediate, 67.2 against 58.4 ms a 1,024-example ml-1m-shaped step (medians of 8, the
    two alternated in one process, AMD EPYC, 2026-12-03). Not for the plain gather of larger
    tables: there the einsum's own gradient to the gathered rows made ml-25m's step dearer
    (136.2 against 124.3 ms)."""

    @tf.custom_gradient
    def gathered_sum(table, weights):
        gathered = tf.gather(table, rows)

        def gradient(upstream):
            upstream = tf.convert_to_tensor(upstream)  # a gather downstream makes it sparse
            dense_weights = _dense_weight_matrix(rows, weights,
                                                 tf.shape(table, out_type=tf.int64)[0])
            return (tf.matmul(dense_weights, upstream, transpose_a=True),
                    tf.einsum("bsd,bd->bs", gathered, upstream))

        return tf.einsum("bs,bsd->bd", weights, gathered), gradient

    return gathered_sum(table, weights)


class TasteHistoryMean(tf.keras.layers.Layer):
    """SVD++'s implicit term: the mean history embedding of up to `size` of the titles a user
    rated, spread over the whole history. Each training example leaves its own title out
    (`left_out_movie`); a request's own ratings (those not already in the sample) join the mean.

    user_index [batch] -> [batch, dim], computed once per distinct user of the batch (a batch
    holds many examples of each active user).
    """

    def __init__(self, history: HistoryTable, embedding: tf.keras.layers.Embedding, size: int,
                 **kwargs):
        super().__init__(**kwargs)
        self.history = history
        self.embedding = embedding
        self.size = size
        self.in_bfloat16 = False

    def call(self, user_index: tf.Tensor, left_out_movie: tf.Tensor | None = None,
             request: RatingWindow | None = None) -> tf.Tensor:
        users, example_user = tf.unique(user_index, out_idx=tf.int64)
        positions, valid = self.history.spread(users, self.size)
        movies = self.history.movies_at(positions)
        weights = tf.cast(valid, tf.float32)
        total = weighted_sum(self.embedding, movies, weights, self.in_bfloat16)
        total, count = tf.gather(total, example_user), tf.gather(tf.reduce_sum(weights, 1),
                                                                 example_user)
        if left_out_movie is not None:
            hits = tf.reduce_sum(tf.cast(
                (tf.gather(movies, example_user) == left_out_movie[:, None])
                & tf.gather(valid, example_user), tf.float32), axis=1)
            total -= hits[:, None] * self.embedding(left_out_movie)
            count -= hits
        if request is not None:
            added = tf.cast(request.valid & ~held(request.movies, tf.gather(movies, example_user),
                                                   tf.gather(valid, example_user)), tf.float32)
            total += weighted_sum(self.embedding, request.movies, added, self.in_bfloat16)
            count += tf.reduce_sum(added, axis=1)
        return tf.math.divide_no_nan(total, count[:, None])


class TimeWeightedMean(tf.keras.layers.Layer):
    """A mean of the embeddings of a user's recent ratings, each weighted by a weight learnt per
    bucket of its time before the request (TimeBucketWeights) and scaled by `scales`, if given.

    movies [batch, size], mask [batch, size] float (0 leaves a rating out), gaps [batch, size]
    seconds -> [batch, dim]; 0 where no rating is left.
    """

    def __init__(self, embedding: tf.keras.layers.Embedding, boundaries: tuple[float, ...],
                 **kwargs):
        super().__init__(**kwargs)
        self.time_weights = TimeBucketWeights(boundaries, name="time_weights")
        self.embedding = embedding
        self.in_bfloat16 = False

    def call(self, movies: tf.Tensor, mask: tf.Tensor, gaps: tf.Tensor,
             scales: tf.Tensor | None = None) -> tf.Tensor:
        weights = mask * self.time_weights(gaps)
        total = weighted_sum(self.embedding, movies,
                             weights if scales is None else weights * scales, self.in_bfloat16)
        return tf.math.divide_no_nan(total, tf.reduce_sum(weights, axis=1)[:, None])

    def over_chunks(self, movies: tf.Tensor, mask: tf.Tensor, gaps: tf.Tensor,
                    scales: tf.Tensor | None = None) -> tf.Tensor:
        """The same mean for chunks of examples that share one window of ratings: movies
        [chunks, rows] (the shared window), mask and gaps [chunks, examples, rows], scales
        [chunks, 1, rows] -> [chunks, examples, dim]. Each title is read once per chunk, not
        once per example, and the sums are batched products (always in float32)."""
        weights = mask * self.time_weights(gaps)
        total = tf.einsum("cer,crd->ced", weights if scales is None else weights * scales,
                          self.embedding(movies))
        return tf.math.divide_no_nan(total, tf.reduce_sum(weights, axis=2)[..., None])


class UserTower(tf.keras.Model):
    """user_index [batch], request_time [batch] int64 (and in training, the rated movie to leave
    out) -> (retrieval vector, rating vector), each [batch, dim + 1]. Index num_users is OOV.

    taste = the user's own embedding + the taste history term (TasteHistoryMean);
    retrieval vector = taste + the session term: a TimeWeightedMean of "session" embeddings of
    the user's `recent_history_size` latest ratings before the request;
    rating vector = taste + the rated term: a TimeWeightedMean, with weights of its own, of
    "rated" embeddings of the same ratings, each scaled by the rating's distance to the
    training mean rating (Koren's explicit neighbourhood term).
    The last component of each vector is a constant 1 that meets the movie bias in the dot
    product. Only ratings made strictly before the request enter the recent terms: a live
    system has no later ones. A request at LATEST_TIME (the user-id-only signatures: no request
    time) has no session to follow: its recent terms read `recent_history_size` ratings spread
    over the whole history instead, all in the oldest time bucket, so weighed uniformly.
    """

    def __init__(self, num_users: int, num_movies: int, config: ModelConfig,
                 histories: UserHistories):
        super().__init__(name="user_tower")
        self.recent_history_size = config.recent_history_size

        def embedding(rows: int, name: str) -> tf.keras.layers.Embedding:
            return tf.keras.layers.Embedding(rows, config.embedding_dim, name=name)

        self.user_embedding = embedding(num_users + 1, "user_embedding")
        self.history = HistoryTable(histories)
        # Fixed at training: the served histories must not shift what the model learnt.
        self.mean_rating = tf.constant(histories.mean_rating(), tf.float32)
        self.taste_history = TasteHistoryMean(
            self.history, embedding(num_movies + 1, "history_embedding"),
            config.taste_history_size, name="taste_history")
        boundaries = config.history_time_boundaries
        self.session_term = TimeWeightedMean(embedding(num_movies + 1, "session_embedding"),
                                             boundaries, name="session_term")
        self.rated_term = TimeWeightedMean(embedding(num_movies + 1, "rated_embedding"),
                                           boundaries, name="rated_term")

    def embedding_tables(self) -> list[tf.keras.layers.Embedding]:
        """The user's and the titles' embedding tables (those the L2 penalty applies to)."""
        return [self.user_embedding, self.taste_history.embedding, self.session_term.embedding,
                self.rated_term.embedding]

    def sum_histories_in_bfloat16(self, on: bool) -> None:
        """Whether the history terms' sums run in bfloat16 (weighted_sum) in the functions
        traced from now on: on for training, as build_model chooses; the serving module turns
        it off, so the served and evaluated model computes in float32."""
        for term in (self.taste_history, self.session_term, self.rated_term):
            term.in_bfloat16 = on

    @property
    def history_sums_in_bfloat16(self) -> bool:
        return self.taste_history.in_bfloat16

    def learnt_time_weights(self) -> dict[str, list[float]]:
        """Each recent term's learnt weight of a rating made 1 s before the request and at each
        bucket boundary (what the Trainer logs)."""
        terms = {"session": self.session_term, "rated": self.rated_term}
        return {name: term.time_weights(tf.concat(
                    [[1], tf.cast(term.time_weights.boundaries, tf.int64)], 0)).numpy().tolist()
                for name, term in terms.items()}

    def recent_ratings(self, user_index: tf.Tensor, request_time: tf.Tensor,
                       request: RatingWindow | None = None) -> RatingWindow:
        """The user's `recent_history_size` latest ratings before the request (stored, and the
        request's own, if given); at LATEST_TIME, ratings spread over the whole history."""
        positions, valid = self.history.earlier(user_index, request_time,
                                                self.recent_history_size)
        # No request time: no session to follow, the whole history speaks.
        untimed = (clamp_time(request_time) >= LATEST_TIME)[:, None]
        spread_positions, spread_valid = self.history.spread(user_index,
                                                             self.recent_history_size)
        positions = tf.where(untimed, spread_positions, positions)
        recent = self.history.window(positions, tf.where(untimed, spread_valid, valid))
        if request is None:
            return recent
        return self._merge_recent(recent, request, clamp_time(request_time))

    def vectors(self, user_index: tf.Tensor, request_time: tf.Tensor,
                left_out_movie: tf.Tensor | None = None,
                request: RatingWindow | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """(the retrieval task's user vector, with the session term; the rating task's, with
        the rated term instead), each [batch, dim + 1]. `request`: ratings the request
        carries, merged with the stored history (the recent terms read the latest
        `recent_history_size` of both made before the request)."""
        taste = self.user_embedding(user_index)
        taste += self.taste_history(user_index, left_out_movie=left_out_movie, request=request)
        recent = self.recent_ratings(user_index, request_time, request)
        valid = tf.cast(recent.valid, tf.float32)
        gaps = clamp_time(request_time)[:, None] - recent.times
        retrieval = taste + self.session_term(recent.movies, valid, gaps)
        # A request's rating of 0 gives no stars: its title counts, its stars do not.
        stars_given = valid * tf.cast(recent.ratings > 0, tf.float32)
        rating = taste + self.rated_term(recent.movies, stars_given, gaps,
                                         scales=recent.ratings - self.mean_rating)
        return _with_bias_one(retrieval), _with_bias_one(rating)

    def chunk_vectors(self, chunk_user: tf.Tensor, times: tf.Tensor, movies: tf.Tensor,
                      slots: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The training examples' `vectors` (each leaving its own title out), for a batch of
        user chunks (train.user_chunks): chunk_user [chunks], each chunk's examples' times and
        movies [chunks, examples], `slots` [chunks, examples] (False pads a chunk) -> the
        two vectors of the valid slots, in row-major order, each [valid slots, dim + 1].

        A chunk's examples are ratings of one user close in time, whose recent windows end
        within a few positions of each other: the recent terms read one window of ratings
        per chunk (its examples' windows together) and mask it per example, where `vectors`
        reads a window per example. The same vectors (up to float rounding), for requests
        with times (training examples have theirs), at a fraction of the reads: a chunk of 4
        examples reads at most 64 + 7 ratings, not 4 x 64."""
        slot_user = tf.broadcast_to(chunk_user[:, None], tf.shape(slots))
        example_user = tf.boolean_mask(slot_user, slots)
        taste = self.user_embedding(example_user) + self.taste_history(
            example_user, left_out_movie=tf.boolean_mask(movies, slots))
        ends = tf.reshape(self.history.ends(tf.reshape(slot_user, [-1]), tf.reshape(times, [-1])),
                          tf.shape(times))
        size = self.recent_history_size
        # Every valid slot's window lies in [first - size, last): padded slots repeat a
        # chunk's first example (train.user_chunks), so they widen nothing.
        first = tf.reduce_min(ends, axis=1, keepdims=True)
        width = size + tf.reduce_max(ends - first)
        positions = first - size + tf.range(width, dtype=tf.int64)[None, :]
        start = tf.gather(self.history.row_splits, chunk_user)[:, None]
        in_window = ((positions[:, None, :] >= tf.maximum(ends - size, start)[:, :, None])
                     & (positions[:, None, :] < ends[:, :, None]))
        last = tf.shape(tf.convert_to_tensor(self.history.keys), out_type=tf.int64)[0] - 1
        window = self.history.window(tf.clip_by_value(positions, 0, last), positions >= start)
        valid = tf.cast(in_window, tf.float32)
        gaps = clamp_time(times)[:, :, None] - window.times[:, None, :]
        session = self.session_term.over_chunks(window.movies, valid, gaps)
        stars_given = valid * tf.cast(window.ratings > 0, tf.float32)[:, None, :]
        rated = self.rated_term.over_chunks(
            window.movies, stars_given, gaps,
            scales=(window.ratings - self.mean_rating)[:, None, :])
        retrieval = taste + tf.boolean_mask(session, slots)
        rating = taste + tf.boolean_mask(rated, slots)
        return _with_bias_one(retrieval), _with_bias_one(rating)

    def _merge_recent(self, recent: RatingWindow, request: RatingWindow,
                      request_time: tf.Tensor) -> RatingWindow:
        """The latest `recent_history_size` of the stored window's ratings and the request's
        made before the request (ties broken by movie index, as the stored order does)."""
        earlier = (request.valid & (clamp_time(request.times) < request_time[:, None])
                   & ~held(request.movies, recent.movies, recent.valid))
        movies = tf.concat([recent.movies, request.movies], axis=1)
        times = tf.concat([recent.times, clamp_time(request.times)], axis=1)
        ratings = tf.concat([recent.ratings, tf.cast(request.ratings, tf.float32)], axis=1)
        valid = tf.concat([recent.valid, earlier], axis=1)
        order_key = tf.where(valid, times * (self.session_term.embedding.input_dim + 1) + movies,
                             -1)
        _, latest = tf.math.top_k(order_key, k=self.recent_history_size)
        return RatingWindow(*(tf.gather(column, latest, batch_dims=1)
                              for column in (movies, times, ratings, valid)))

    def call(self, inputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """The retrieval task's user vector at the request time (features.TIMESTAMP)."""
        return self.vectors(inputs[features.USER_INDEX], inputs[features.TIMESTAMP])[0]


def _with_bias_one(vector: tf.Tensor) -> tf.Tensor:
    """`vector` with a constant last component 1, which meets the movie bias in a dot
    product."""
    return tf.concat([vector, tf.ones_like(vector[:, :1])], axis=1)


TITLE_EMBEDDING = "title_embedding"


def build_movie_tower(num_movies: int, config: ModelConfig) -> tf.keras.Model:
    """movie_index [batch], genres_multi_hot [batch, 21] -> movie embedding [batch, dim + 1].

    The genre term gives titles unseen in training (the shared OOV index) an embedding of their
    own kind; the last component is the movie's learnt popularity bias.
    """
    movie_index = tf.keras.Input(shape=(), dtype=tf.int64, name=features.MOVIE_INDEX)
    genres = tf.keras.Input(shape=(features.NUM_GENRES,), dtype=tf.float32,
                            name=features.GENRES_MULTI_HOT)
    title_embedding = tf.keras.layers.Embedding(num_movies + 1, config.embedding_dim,
                                                name=TITLE_EMBEDDING)(movie_index)
    genre_embedding = tf.keras.layers.Dense(config.embedding_dim, use_bias=False,
                                            name="genre_embedding")(genres)
    embedding = tf.keras.layers.Add(name="movie_embedding")([title_embedding, genre_embedding])
    bias = tf.keras.layers.Embedding(num_movies + 1, 1, embeddings_initializer="zeros",
                                     name="movie_bias")(movie_index)
    output = tf.keras.layers.Concatenate(name="movie_vector")([embedding, bias])
    return tf.keras.Model({features.MOVIE_INDEX: movie_index, features.GENRES_MULTI_HOT: genres},
                          output, name="movie_tower")


def build_rating_head(config: ModelConfig) -> tf.keras.Model:
    """(user embedding, movie embedding) -> predicted rating [batch]."""
    user = tf.keras.Input(shape=(config.embedding_dim + 1,), name="user_embedding")
    movie = tf.keras.Input(shape=(config.embedding_dim + 1,), name="movie_embedding")
    hidden = tf.keras.layers.Concatenate()([user, movie])
    for units in config.rating_hidden_units:
        hidden = tf.keras.layers.Dense(units, activation="relu")(hidden)
        if config.rating_dropout:
            hidden = tf.keras.layers.Dropout(config.rating_dropout)(hidden)
    rating = tf.keras.layers.Reshape(())(tf.keras.layers.Dense(1)(hidden))
    return tf.keras.Model([user, movie], rating, name="rating_head")


# Added to a score to leave it out of a softmax: exp(score - max) is 0 for any score
# a model reaches, and the sum stays finite (dtype.min would overflow to -inf).
_NO_SCORE = -1e30


class MultiTaskRecommender(tfrs.Model):
    """Joint retrieval (softmax over movie embeddings) and rating regression.

    loss = retrieval_weight * mean softmax cross-entropy + rating_weight * mean squared error.
    Both are per-example means (TFRS sums the retrieval loss over the batch by default, which
    drowns the rating task). The softmax runs over every vocabulary movie, or over a uniform
    sample of `catalogue_softmax_size` of them for larger catalogues: a new sample for each
    training batch, one fixed sample for every validation batch. `movie_genres`
    [num_movies, NUM_GENRES] are the vocabulary movies' genres (the OOV index gets none).
    Top-k metrics over the whole catalogue are the Evaluator's job.
    """

    def __init__(self, user_tower: UserTower, movie_tower: tf.keras.Model,
                 rating_head: tf.keras.Model, config: ModelConfig, movie_genres: np.ndarray):
        super().__init__()
        self.user_tower = user_tower
        self.movie_tower = movie_tower
        self.rating_head = rating_head
        self.retrieval_weight = config.retrieval_weight
        self.rating_weight = config.rating_weight
        self.temperature = config.temperature
        self.vocabulary_genres = tf.constant(movie_genres, dtype=tf.float32)
        self.movie_genres = tf.concat(
            [self.vocabulary_genres, tf.zeros([1, features.NUM_GENRES])], axis=0)
        self.catalogue_softmax_size = config.catalogue_softmax_size
        self.sample_catalogue = len(movie_genres) > config.catalogue_softmax_size
        # Early stopping and the learning-rate cuts compare the validation loss between
        # checks: scored against one fixed sample, it moves with the weights alone. A new
        # sample per batch, as in training, put the loss of the same weights on 100k
        # ml-1m-shaped validation ratings anywhere from 8.6775 to 8.6803 in five evaluations,
        # as much as a check improves it late in training.
        shuffled = np.random.default_rng(config.seed).permutation(len(movie_genres))
        self.validation_sample = tf.constant(shuffled[:config.catalogue_softmax_size], tf.int64)
        self.rating_task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(),
            metrics=[tf.keras.metrics.RootMeanSquaredError(name="rmse")])
        self.evaluated_loss = tf.keras.metrics.Mean(name="loss")

    def call(self, inputs: Mapping[str, tf.Tensor], training: bool = False):
        """(user vector at the request time, movie vector, predicted rating). Inputs with the
        REQUEST_COLUMNS are asked as a live request is: with those ratings beside the stored
        history; inputs in user chunks (CHUNK_SLOTS) give their valid slots' outputs."""
        movie_index = inputs[features.MOVIE_INDEX]
        if CHUNK_SLOTS in inputs:
            user_embedding, rating_vector = self.user_tower.chunk_vectors(
                inputs[features.USER_INDEX], inputs[features.TIMESTAMP], movie_index,
                inputs[CHUNK_SLOTS])
            movie_index = tf.boolean_mask(movie_index, inputs[CHUNK_SLOTS])
        else:
            request = (RatingWindow(*(inputs[name] for name in REQUEST_COLUMNS))
                       if REQUEST_COLUMNS[0] in inputs else None)
            # Every training example is in its user's history, which must not hold it.
            user_embedding, rating_vector = self.user_tower.vectors(
                inputs[features.USER_INDEX], inputs[features.TIMESTAMP],
                left_out_movie=movie_index if training else None, request=request)
        movie_embedding = self.movie_tower({
            features.MOVIE_INDEX: movie_index,
            features.GENRES_MULTI_HOT: tf.gather(self.movie_genres, movie_index)})
        return user_embedding, movie_embedding, self.rating_head(
            [rating_vector, movie_embedding])

    def _sampled_retrieval_loss(self, user_embedding: tf.Tensor, movie_embedding: tf.Tensor,
                                movie_index: tf.Tensor, training: bool = True) -> tf.Tensor:
        """Mean sampled-softmax cross-entropy of the rated movie against a uniform sample of
        the vocabulary shared by the batch (the rated movie itself left out of the sample):
        a new one in training, `validation_sample` otherwise."""
        num_movies = self.vocabulary_genres.shape[0]
        if training:
            sample = tf.random.shuffle(tf.range(num_movies, dtype=tf.int64))[
                :self.catalogue_softmax_size]
        else:
            sample = self.validation_sample
        candidates = self.movie_tower({
            features.MOVIE_INDEX: sample,
            features.GENRES_MULTI_HOT: tf.gather(self.vocabulary_genres, sample)})
        user_embedding /= self.temperature  # [batch, dim], not the [batch, sample] scores
        positive = tf.reduce_sum(user_embedding * movie_embedding, axis=1)
        # The rated title, where the sample holds it, is no negative: its slot, found by
        # index, gets a score no exp reaches (a [batch, sample] comparison and select, and
        # their gradient, cost 3.5 ms a step at ml-1m's sizes).
        sample_size = tf.shape(sample, out_type=tf.int64)[0]
        slot_of_movie = tf.scatter_nd(sample[:, None], tf.range(1, sample_size + 1),
                                      [num_movies + 1]) - 1
        slot = tf.gather(slot_of_movie, movie_index)
        negatives = (tf.matmul(user_embedding, candidates, transpose_b=True)
                     + tf.one_hot(slot, tf.cast(sample_size, tf.int32), on_value=_NO_SCORE,
                                  off_value=0.0))
        # Each of an example's sampled negatives stands for (num_movies - 1) / (its number of
        # negatives) titles of the full softmax's sum.
        count = tf.cast(sample_size - tf.cast(slot >= 0, tf.int64), tf.float32)
        log_sum = tf.reduce_logsumexp(
            tf.stack([positive, tf.reduce_logsumexp(negatives, axis=1)
                      + tf.math.log((num_movies - 1) / count)], axis=1), axis=1)
        return tf.reduce_mean(log_sum - positive)

    def _catalogue_retrieval_loss(self, user_embedding: tf.Tensor,
                                  movie_index: tf.Tensor) -> tf.Tensor:
        """Mean softmax cross-entropy of the rated movie against every vocabulary movie."""
        catalogue = self.movie_tower({
            features.MOVIE_INDEX: tf.range(tf.shape(self.vocabulary_genres,
                                                    out_type=tf.int64)[0]),
            features.GENRES_MULTI_HOT: self.vocabulary_genres})
        logits = tf.matmul(user_embedding / self.temperature, catalogue, transpose_b=True)
        # logsumexp minus the target's logit: the cross-entropy, a third faster than TF's fused
        # sparse_softmax_cross_entropy_with_logits kernel on CPU.
        return tf.reduce_mean(tf.reduce_logsumexp(logits, axis=1)
                              - tf.gather(logits, movie_index, batch_dims=1))

    # Traced as written: the model has no Python control flow on tensors for AutoGraph to
    # convert, and converting its source took 1.2 to 1.4 s of the first training step's 3.1 to
    # 3.3 on ml-100k (the same graph: the weights after three checks bitwise equal).
    @tf.autograph.experimental.do_not_convert
    def compute_loss(self, inputs: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        user_embedding, movie_embedding, rating = self(inputs, training=training)
        movie_index, labels = inputs[features.MOVIE_INDEX], inputs[features.RATING_LABEL]
        if CHUNK_SLOTS in inputs:
            movie_index, labels = (tf.boolean_mask(column, inputs[CHUNK_SLOTS])
                                   for column in (movie_index, labels))
        if self.sample_catalogue:
            retrieval_loss = self._sampled_retrieval_loss(user_embedding, movie_embedding,
                                                          movie_index, training)
        else:
            retrieval_loss = self._catalogue_retrieval_loss(user_embedding, movie_index)
        rating_loss = self.rating_task(labels=labels, predictions=rating)
        return self.retrieval_weight * retrieval_loss + self.rating_weight * rating_loss

    def test_step(self, inputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """The loss (and RMSE) over every example evaluated so far: what early stopping and
        the learning-rate cuts compare as `val_loss`. TFRS's test_step returns each batch's own
        loss, and Keras' evaluate reports its last step's logs, so the validation loss was the
        last, partial batch's alone (802 of ml-100k's 7,970 validation ratings)."""
        loss = self.compute_loss(inputs, training=False)
        self.evaluated_loss.update_state(
            loss, sample_weight=tf.shape(inputs[features.MOVIE_INDEX])[0])
        return {metric.name: metric.result() for metric in self.metrics}


def build_model(num_users: int, num_movies: int, config: ModelConfig, movie_genres: np.ndarray,
                user_histories: UserHistories) -> MultiTaskRecommender:
    """The compiled model, for training (its history sums in `config.history_sum_precision`).
    `movie_genres` [num_movies, NUM_GENRES] (genres by movie index); `user_histories` what each
    user rated in training (the history terms read them)."""
    tf.keras.utils.set_random_seed(config.seed)
    for name in ("taste_history_size", "recent_history_size", "catalogue_softmax_size"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}.")
    model = MultiTaskRecommender(UserTower(num_users, num_movies, config, user_histories),
                                 build_movie_tower(num_movies, config),
                                 build_rating_head(config), config, movie_genres)
    model.user_tower.sum_histories_in_bfloat16(
        bfloat16_history_sums(config.history_sum_precision, num_movies))
    model.compile(optimizer=LazyAdam(
        config.learning_rate, l2=config.l2_regularization,
        l2_tables=[*model.user_tower.embedding_tables(),
                   model.movie_tower.get_layer(TITLE_EMBEDDING)],
        dense_max_rows=DENSE_UPDATE_MAX_ROWS))
    return model
