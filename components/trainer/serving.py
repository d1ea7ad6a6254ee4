"""The exported SavedModel: towers, rating head, Transform graph, catalogue and ScaNN index.

The Keras training model is not exported as such: it takes Transform's outputs (indices, not
raw strings), holds training-only parts (the losses, the sampled softmax) and has no catalogue
or index. `RecommenderModule` holds only what answering needs, with these signatures:

- serving_default(user_id [B] string) -> titles [B, k], scores [B, k]: ScaNN over the catalogue.
- at_time(user_id, timestamp [B] int64) -> titles, scores: the same for requests at the given
  times (seconds since the epoch), which weigh the ratings made shortly before more (see below).
- at_time_with_recent(user_id, timestamp, recent_titles [B, M] string, recent_timestamps
  [B, M] int64, recent_ratings [B, M] float32) -> titles, scores: `at_time` with ratings the
  user made since the export carried by the request, merged with the stored history ("" pads
  shorter lists; a rating of 0 means no stars given: the title counts, its stars do not).
- unrated(user_id) -> titles, scores: the same among the titles the user has not rated in
  training (what a product shows).
- brute_force(user_id) -> titles, scores: the same as serving_default, exact.
- rating(user_id [B], movie_title [B]) -> rating [B] (within the training ratings' lowest
  and highest stars), known_user [B] and known_title [B] (bool: the user was in training,
  the title is in the catalogue; unknown ones are rated through the shared out-of-vocabulary
  embedding); rating_at_time(user_id, movie_title, timestamp) the same for requests at the
  given times.
- user_embedding(user_id) -> embedding [B, D]: the query vector that serving_default searches
  with (score = its dot product with a title's vector), for search outside the model (a vector
  database, a larger catalogue: benchmarks/serving.py searches 1 M synthetic titles with it).
- catalogue_scores(user_id) -> scores [B, N], titles [N]: exact scores of every title (for
  offline analysis and benchmarks); catalogue_scores_at_time(user_id, timestamp) the same at
  the given request times; catalogue_scores_with_recent(user_id, timestamp, recent_*) and
  rating_with_recent(user_id, movie_title, timestamp, recent_*) the same with the request's
  ratings, as at_time_with_recent takes them (offline replays of what a live product would
  have answered).
- evaluation(examples [B] serialized tf.Example) -> per-example metrics read by the Evaluator:
  top_K_accuracy and top_K_accuracy_unrated (the held-out title is among the user's K
  best-scored titles of the whole catalogue, exact scores; `_unrated` leaves out the titles the
  user rated in training), squared_error and rating, scann_recall_at_10 (overlap of ScaNN's
  top 10 with the exact top 10).

Users unseen in training (no stored rating) whose request carries no rating of theirs (the
cold start) are ranked by recent popularity (ModelConfig.cold_start_popularity_days), not by
their untrained user vector: every signature that ranks or scores titles answers them with
`cold_start_scores`, each title's log share of the latest training ratings, in place of dot
products, and every rating signature with `cold_start_ratings`, each title's shrunk mean
training rating (`user_embedding` still returns their vector).

Every input is a batch, shape [B]; another rank, or inputs of different lengths, fail with
the input named. An empty batch gives empty outputs of the documented shapes ([0, k] for
titles and scores). Request times are clamped into [0, model.LATEST_TIME]: before 1970 means
before every rating, beyond 2106 (int64 max included) after all of them.

Request time: `evaluation` scores each example at its own timestamp, and the `_at_time`
signatures at the given ones (the session term, see ModelConfig's history_time_boundaries).
The signatures that take user ids alone (`rating` included) ask as of model.LATEST_TIME: the
exported histories are frozen at training time, so "now" is far from every rating in them
anyway, and the session and rated terms weigh the user's latest ratings uniformly.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf
import tensorflow_transform as tft
from scann import scann_ops

from components import evaluation_contract as contract
from components import features, stack
from components.trainer import model as model_lib
from components.trainer.catalogue import Catalogue, ColdStart
from components.trainer.neighbourhood import ItemNeighbourhood


def scann_parameters(num_candidates: int) -> dict:
    """ScaNN tree sizes scaled to the catalogue: sqrt(N) leaves, as many searched as hold about
    30,000 titles but at most three quarters of them (at least 20, or all), up to the best
    1,000 candidates re-scored exactly (SCANN_RESCORED_PER_NEIGHBOUR).

    Recall is bought with a wide search while it is cheap: on ml-100k (41 leaves), searching
    half the leaves gave 96.5 % to 99.8 % of the exact top 10 depending on the index's k-means
    (it is not seeded), three quarters 99.4 % to 99.96 %. Measured with the ml-100k model's
    users over clustered synthetic catalogues, the leaves' k-means trained on every title
    (`ScannIndex`), two builds each: at 59k titles 30 of 243 leaves found 98.3 % of the exact
    top 10, 50 99.5 %, 120 99.8 % (0.04, 0.045 and 0.065 ms a search); at 1 M titles 30 of
    1,000 leaves found 97.9 % (0.1 ms). `make bench-serving` measures recall@10 and speed at
    1 M titles over several builds.
    """
    num_leaves = max(1, round(math.sqrt(num_candidates)))
    leaves_holding_30k = math.ceil(30_000 * num_leaves / num_candidates)
    to_search = max(min(math.ceil(num_leaves * 3 / 4), leaves_holding_30k),
                    min(num_leaves, 20))
    return {"num_leaves": num_leaves, "num_leaves_to_search": to_search,
            "num_reordering_candidates": min(num_candidates, 1_000)}


# Asymmetric hashing's block width: with 4 dimensions a block, a search of 30 of 1 M titles'
# 1,000 leaves took 0.105 ms against 0.149 with 2, at the same recall@10 (0.978; the exact
# re-scoring of the best 1,000 makes up for the coarser codes). At 1,682 clustered titles
# (31 of 41 leaves), eight builds each: recall@10 0.9947 on average against 0.9963 with 2, the
# builds spread over 0.985 to 1.0.
SCANN_DIMENSIONS_PER_BLOCK = 4
# A search re-scores exactly this many of the codes' best candidates per neighbour it returns
# (the top 10: 500), up to the index's `num_reordering_candidates`, which deeper searches (the
# unrated signature's) use whole. At 1 M clustered titles, three builds: 500 re-scored found
# 96.9 to 97.9 % of the exact top 10, 0.02 to 0.05 ms sooner than 1,000 (98.0 to 98.3 %);
# 300: 95.7 to 96.4 %. At 59k titles 500 found 98.8 to 99.2 %; at 1,682 all that 1,000 find.
SCANN_RESCORED_PER_NEIGHBOUR = 50


class ScannIndex(tf.Module):
    """A ScaNN index of the candidate vectors [N, D] (dot-product scores) answering k
    neighbours by default; rows are returned as indices into `candidates`.

    Built with ScaNN's TF ops as TFRS's ScaNN layer builds it, with one difference that decides
    recall at large catalogues: the tree's k-means is trained on every candidate, where the
    layer leaves ScaNN's default sample of 100,000 (at 1 M titles, 100 sampled titles a leaf:
    leaves so rough that one build's recall@10 ranged from 0.93 to 0.97). The index of 1 M
    titles then builds in 19 s instead of 12; MovieLens catalogues (at most 62k titles) are
    smaller than the default sample anyway.
    """

    def __init__(self, candidates: tf.Tensor, k: int):
        super().__init__()
        num_candidates = int(candidates.shape[0])
        parameters = scann_parameters(num_candidates)
        searcher = (
            scann_ops.builder(candidates, k, "dot_product")
            .tree(num_leaves=parameters["num_leaves"],
                  num_leaves_to_search=parameters["num_leaves_to_search"],
                  training_sample_size=num_candidates)
            .score_ah(SCANN_DIMENSIONS_PER_BLOCK)
            .reorder(parameters["num_reordering_candidates"])
            .build())  # a fresh shared name each build: indexes never share a searcher
        self.state = searcher.serialize_to_module()
        self.k = k
        self.max_k = parameters["num_reordering_candidates"]  # ScaNN answers at most these

    def __call__(self, queries: tf.Tensor, k: int | tf.Tensor | None = None
                 ) -> tuple[tf.Tensor, tf.Tensor]:
        """([B, k] scores, [B, k] int32 rows) of the queries [B, D], best first; at most
        `max_k`, the exact re-scoring's depth."""
        k = self.k if k is None else k
        searcher = scann_ops.searcher_from_module(self.state)
        result = searcher.search_batched_parallel(
            queries, final_num_neighbors=k, pre_reorder_num_neighbors=self.rescored(k))
        return result.distances, result.indices

    def rescored(self, k: int | tf.Tensor) -> tf.Tensor:
        """How many candidates a search for k neighbours re-scores exactly."""
        return tf.minimum(k * SCANN_RESCORED_PER_NEIGHBOUR, self.max_k)


def recall_at_k(scores: tf.Tensor, found_rows: tf.Tensor) -> tf.Tensor:
    """[B] float: the fraction of each row's k found catalogue rows ([B, k]) that are among the
    k best of its exact `scores` ([B, N]). The exact top k all score at least the lowest of the
    found rows (k titles do), so only those candidates are ranked, not the whole catalogue
    (tf.math.top_k over 59k titles took a third of the evaluation's time)."""
    found_scores = tf.gather(scores, found_rows, batch_dims=1)
    k = tf.shape(found_rows)[1]
    candidates = tf.where(scores >= tf.reduce_min(found_scores, axis=1, keepdims=True))
    candidate_scores = tf.RaggedTensor.from_value_rowids(
        tf.gather_nd(scores, candidates), candidates[:, 0],
        nrows=tf.shape(scores, out_type=tf.int64)[0]).to_tensor(default_value=-math.inf)
    # k columns of padding: top_k needs k columns, even in an empty batch.
    padding = tf.fill([tf.shape(scores)[0], k], -math.inf)
    kth_best = tf.math.top_k(tf.concat([candidate_scores, padding], axis=1), k=k).values[:, -1:]
    return tf.reduce_mean(tf.cast(found_scores >= kth_best, tf.float32), axis=1)


def signature(input_signature: list[tf.TensorSpec]):
    """A traced method of the module. Autograph off: no method has control flow on tensors
    (tf.cond is explicit), and converting their source took a third of the export's time."""
    return tf.function(input_signature=input_signature, autograph=False)


def batch_inputs(**inputs: tf.Tensor) -> list[tf.Tensor]:
    """The inputs, checked when the signature runs (a SavedModel signature does not enforce its
    input shapes): each of rank 1 (the error names the input) and all of one length."""
    checked = [tf.ensure_shape(tensor, [None]) for tensor in inputs.values()]
    names = " and ".join(inputs)
    with tf.control_dependencies([
            tf.debugging.assert_equal(tf.shape(tensor)[0], tf.shape(checked[0])[0],
                                      message=f"{names} must have the same length")
            for tensor in checked[1:]]):
        return [tf.identity(tensor) for tensor in checked]


# The request's own ratings, [B, M] ("" pads titles; a rating of 0: no stars given).
_RECENT_SPECS = (tf.TensorSpec([None, None], tf.string, name="recent_titles"),
                 tf.TensorSpec([None, None], tf.int64, name="recent_timestamps"),
                 tf.TensorSpec([None, None], tf.float32, name="recent_ratings"))


@dataclasses.dataclass(frozen=True)
class _Untracked:
    """Keras models held by a tf.Module without becoming part of its SavedModel's object graph
    (a dataclass is not trackable)."""

    user_tower: model_lib.UserTower
    rating_head: tf.keras.Model


# The blend (head, neighbourhood, constant) that rates by the rating head alone.
HEAD_ALONE = (1.0, 0.0, 0.0)


class RecommenderModule(tf.Module):
    """What the pushed model serves; built once after training (train.train_module)."""

    def __init__(self, tf_transform_output: tft.TFTransformOutput, user_tower: tf.keras.Model,
                 movie_tower: tf.keras.Model, rating_head: tf.keras.Model,
                 catalogue: Catalogue, rated_rows: tf.RaggedTensor, top_k: int,
                 rating_range: tuple[float, float], cold_start: ColdStart | None = None,
                 neighbourhood: ItemNeighbourhood | None = None,
                 blend: tuple[float, float, float] = HEAD_ALONE):
        """`rating_range`: the lowest and highest stars of the training ratings; predicted
        ratings are clipped to it. `cold_start`: how cold-start requests are answered (None:
        through the user's untrained vector, as the others). `neighbourhood` and `blend`: the
        served rating is blend[0] * the head's + blend[1] * the neighbourhood model's +
        blend[2] (train.fitted_blend)."""
        super().__init__()
        users = tf_transform_output.vocabulary_by_name(features.USER_VOCABULARY)
        self.num_users = len(users)
        # TFT's vocabulary as a table (its one OOV bucket: the index after the vocabulary), not
        # TFT's transform layer, which runs the whole preprocessing graph on default-filled
        # features to map a user id: 0.05 ms a call against 0.02.
        self.user_to_index = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(users, tf.string), tf.range(self.num_users, dtype=tf.int64)),
            default_value=self.num_users)
        # The Keras models' variables are tracked, not the models: tracked as Keras layers,
        # the export would also trace and serialize each layer's call functions for Keras' own
        # loader, which nothing loads this model with (3 of ml-100k's 7.7 s export).
        self._keras_models = _Untracked(user_tower=user_tower, rating_head=rating_head)
        self.history = user_tower.history
        # Served and evaluated in float32, whatever precision training summed histories in.
        user_tower.sum_histories_in_bfloat16(False)
        self.raw_feature_spec = tf_transform_output.raw_feature_spec()
        self.top_k = top_k
        self.lowest_rating, self.highest_rating = (float(stars) for stars in rating_range)
        self.neighbourhood = neighbourhood
        self.blend = tf.constant(blend, tf.float32)

        num_candidates = len(catalogue)
        self.catalogue_titles = tf.constant(list(catalogue.titles), dtype=tf.string)
        # Row N embeds an unknown title (OOV index, no genres), for `rating` on any title.
        self.movie_embeddings = tf.Variable(
            movie_tower({features.MOVIE_INDEX: catalogue.movie_index,
                         features.GENRES_MULTI_HOT: catalogue.genres_multi_hot}),
            trainable=False, name="movie_embeddings")
        # The movie index of each catalogue row (row N, an unknown title: the OOV index).
        self.movie_index_of_row = tf.Variable(catalogue.movie_index, trainable=False,
                                              name="movie_index_of_row")
        self.title_to_row = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                self.catalogue_titles, tf.range(num_candidates, dtype=tf.int64)),
            default_value=num_candidates)
        # Variables, not graph constants: at 25 M ratings a constant exceeds the graph's 2 GB.
        # The rows as int32, half the memory of int64 (cast when a batch's are read).
        self.rated_row_splits = tf.Variable(rated_rows.row_splits, trainable=False,
                                            name="rated_row_splits")
        self.rated_row_values = tf.Variable(tf.cast(rated_rows.values, tf.int32),
                                            trainable=False, name="rated_row_values")

        # A request without a time is asked as of LATEST_TIME, where each user's vectors
        # depend on the user alone: computed once here (OOV row included), those signatures
        # look them up instead of reading the user's history on every call.
        retrieval, rating = self._vectors_of_every_user(self.num_users + 1)
        self.latest_retrieval_vectors = tf.Variable(retrieval, trainable=False,
                                                    name="latest_retrieval_vectors")
        self.latest_rating_vectors = tf.Variable(rating, trainable=False,
                                                 name="latest_rating_vectors")
        # What the signatures read of the user tower and the rating head (every variable of the
        # tower exists once it has run, just above).
        self.trained_variables = [*user_tower.variables, *rating_head.variables]

        self.cold_start = cold_start is not None
        if self.cold_start:
            self.cold_start_scores = tf.Variable(cold_start.scores, trainable=False,
                                                 name="cold_start_scores")
            self.cold_start_ratings = tf.Variable(cold_start.ratings, trainable=False,
                                                  name="cold_start_ratings")
            # Graph constants, as small as k: the per-call cost stays a gather and a select.
            self.cold_start_top_scores, self.cold_start_top_rows = tf.math.top_k(
                cold_start.scores, k=min(num_candidates, max(top_k, contract.SCANN_RECALL_K)))
            row_splits = self.history.row_splits
            self.without_stored_rating = tf.Variable(row_splits[1:] == row_splits[:-1],
                                                     trainable=False,
                                                     name="without_stored_rating")

        self.scann = ScannIndex(self.movie_embeddings[:num_candidates],
                                k=max(top_k, contract.SCANN_RECALL_K))

    @property
    def user_tower(self) -> model_lib.UserTower:
        return self._keras_models.user_tower

    @property
    def rating_head(self) -> tf.keras.Model:
        return self._keras_models.rating_head

    def _vectors_of_every_user(self, num_rows: int, chunk: int = 4_096
                               ) -> tuple[tf.Tensor, tf.Tensor]:
        """(retrieval, rating) vectors of user indices 0..num_rows-1 at LATEST_TIME."""
        parts = []
        for start in range(0, num_rows, chunk):
            user_index = tf.range(start, min(start + chunk, num_rows), dtype=tf.int64)
            parts.append(self._tower_vectors(
                user_index, tf.fill(tf.shape(user_index),
                                    tf.constant(model_lib.LATEST_TIME, tf.int64))))
        return tuple(tf.concat(vectors, axis=0) for vectors in zip(*parts, strict=True))

    # The user tower traced once for every signature that reads histories (tracing it into
    # each of them made up most of the export's time).
    @signature([tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.int64)])
    def _tower_vectors(self, user_index, request_time):
        return self.user_tower.vectors(user_index, request_time)

    @signature([tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.int64),
                tf.TensorSpec([None, None], tf.int64), tf.TensorSpec([None, None], tf.int64),
                tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None, None], tf.bool)])
    def _tower_vectors_with_request(self, user_index, request_time, movies, times, ratings,
                                    valid):
        return self.user_tower.vectors(
            user_index, request_time,
            request=model_lib.RatingWindow(movies, times, ratings, valid))

    def _user_index(self, user_id: tf.Tensor) -> tf.Tensor:
        return self.user_to_index.lookup(tf.reshape(user_id, [-1]))

    @property
    def rated_rows(self) -> tf.RaggedTensor:
        return tf.RaggedTensor.from_row_splits(self.rated_row_values, self.rated_row_splits,
                                               validate=False)

    def _user_vectors(self, user_id: tf.Tensor, timestamp: tf.Tensor | None = None
                      ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(retrieval vector, rating vector, user index) at the request times (LATEST_TIME
        when None: looked up)."""
        user_index = self._user_index(user_id)
        if timestamp is None:
            return (tf.gather(self.latest_retrieval_vectors, user_index),
                    tf.gather(self.latest_rating_vectors, user_index), user_index)
        retrieval, rating = self._tower_vectors(user_index, tf.reshape(timestamp, [-1]))
        return retrieval, rating, user_index

    def _user_embedding(self, user_id: tf.Tensor,
                        timestamp: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        retrieval, _, user_index = self._user_vectors(user_id, timestamp)
        return retrieval, user_index

    def _cold(self, user_index: tf.Tensor, request: model_lib.RatingWindow | None = None,
              request_time: tf.Tensor | None = None) -> tf.Tensor:
        """[B] bool: the cold-start requests, by users without a stored rating when the module
        was built (unseen in training: the OOV index, or, when tuning, a user of the
        validation slice alone) whose request carries no rating (of a known title) made
        before it."""
        if not self.cold_start:
            return tf.zeros_like(user_index, dtype=tf.bool)
        cold = tf.gather(self.without_stored_rating, user_index)
        if request is not None:
            earlier = request.valid & (model_lib.clamp_time(request.times)
                                       < model_lib.clamp_time(request_time)[:, None])
            cold &= ~tf.reduce_any(earlier, axis=1)
        return cold

    def _exact_scores(self, user_embedding: tf.Tensor, cold: tf.Tensor) -> tf.Tensor:
        """[B, N]: each title's dot product with the user vector, or its cold-start score."""
        scores = tf.matmul(user_embedding, self.movie_embeddings[:-1], transpose_b=True)
        if not self.cold_start:
            return scores
        return tf.cond(tf.reduce_any(cold),
                       lambda: tf.where(cold[:, None], self.cold_start_scores[None, :], scores),
                       lambda: scores)

    def _with_cold_start(self, scores: tf.Tensor, rows: tf.Tensor, cold: tf.Tensor
                         ) -> tuple[tf.Tensor, tf.Tensor]:
        """[B, k] best scores and their rows (k static), the cold-start requests' replaced by
        the k best cold-start scores."""
        if not self.cold_start:
            return scores, rows
        k = scores.shape[1]
        cold = cold[:, None]
        return (tf.where(cold, self.cold_start_top_scores[None, :k], scores),
                tf.where(cold, tf.cast(self.cold_start_top_rows[None, :k], rows.dtype), rows))

    def _rated(self, user_index: tf.Tensor, num_candidates: tf.Tensor) -> tf.RaggedTensor:
        """[B, None]: the catalogue rows each user rated in training, sorted (rows of
        `rated_rows` beyond num_candidates dropped)."""
        rated = tf.gather(self.rated_rows, user_index)
        rows = tf.cast(rated.flat_values, tf.int64)
        # On the flat values: a comparison of the ragged tensor itself is traced through
        # TensorFlow's ragged broadcasting, 0.1 s for each of the signatures that read this.
        kept = rows < num_candidates
        return tf.RaggedTensor.from_value_rowids(
            tf.boolean_mask(rows, kept), tf.boolean_mask(rated.value_rowids(), kept),
            nrows=tf.shape(user_index, out_type=tf.int64)[0], validate=False)

    def _rated_mask(self, user_index: tf.Tensor, num_candidates: tf.Tensor) -> tf.Tensor:
        """[B, N] bool: True where the user rated that catalogue title in training. (Searching
        each user's sorted rows instead cost 716 ms against 151 for a batch of 1,024 ml-25m
        users: the batch's longest history sets the search's width.)"""
        rated = self._rated(user_index, num_candidates)
        indices = tf.stack([rated.value_rowids(), rated.flat_values], axis=1)
        return tf.scatter_nd(
            indices, tf.ones_like(rated.flat_values, dtype=tf.int32),
            [tf.shape(user_index, out_type=tf.int64)[0], num_candidates]) > 0

    def _top_k(self, scores: tf.Tensor, rows: tf.Tensor) -> dict:
        return {"titles": tf.reshape(tf.gather(self.catalogue_titles, rows), [-1, self.top_k]),
                "scores": tf.reshape(scores, [-1, self.top_k])}

    def _scann_search(self, user_embedding: tf.Tensor, cold: tf.Tensor, k: int
                      ) -> tuple[tf.Tensor, tf.Tensor]:
        """ScaNN's [B, k] best scores and rows (cold-start requests: the cold-start ranking's)."""
        scores, rows = self.scann(user_embedding, k=k)
        # [B, k] for every B: ScaNN answers an empty batch with shape [0, 0].
        return self._with_cold_start(tf.reshape(scores, [-1, k]), tf.reshape(rows, [-1, k]),
                                     cold)

    def _scann_top_k(self, user_embedding: tf.Tensor, cold: tf.Tensor) -> dict:
        return self._top_k(*self._scann_search(user_embedding, cold, self.top_k))

    def _ranked(self, user_id: tf.Tensor, timestamp: tf.Tensor | None = None) -> dict:
        user_embedding, user_index = self._user_embedding(user_id, timestamp)
        return self._scann_top_k(user_embedding, self._cold(user_index))

    @signature([tf.TensorSpec([None], tf.string, name="user_id")])
    def recommend(self, user_id):
        [user_id] = batch_inputs(user_id=user_id)
        return self._ranked(user_id)

    @signature([tf.TensorSpec([None], tf.string, name="user_id"),
                tf.TensorSpec([None], tf.int64, name="timestamp")])
    def recommend_at_time(self, user_id, timestamp):
        user_id, timestamp = batch_inputs(user_id=user_id, timestamp=timestamp)
        return self._ranked(user_id, timestamp)

    def _request_ratings(self, user_id: tf.Tensor, titles: tf.Tensor, timestamps: tf.Tensor,
                         ratings: tf.Tensor) -> model_lib.RatingWindow:
        """The request's ratings [B, M] (checked: rank 2, one shape, B rows); titles outside
        the training vocabulary, and "" padding, are ignored."""
        checked = [tf.ensure_shape(tensor, [None, None]) for tensor in (titles, timestamps,
                                                                        ratings)]
        with tf.control_dependencies([
                tf.debugging.assert_equal(
                    tf.shape(tensor), tf.shape(checked[0]),
                    message="recent_titles, recent_timestamps and recent_ratings must have "
                            "the same shape") for tensor in checked[1:]] + [
                tf.debugging.assert_equal(
                    tf.shape(checked[0])[0], tf.shape(user_id)[0],
                    message="recent_titles must have a row for each user_id")]):
            titles, timestamps, ratings = (tf.identity(tensor) for tensor in checked)
        movies = tf.gather(self.movie_index_of_row, self.title_to_row.lookup(titles))
        known = movies < self.movie_index_of_row[-1]  # the last row's: the OOV index
        return model_lib.RatingWindow(movies, timestamps, ratings, known)

    def _vectors_with_recent(self, user_id: tf.Tensor, timestamp: tf.Tensor,
                             recent: tuple[tf.Tensor, tf.Tensor, tf.Tensor]
                             ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor,
                                        model_lib.RatingWindow]:
        """(retrieval vector, rating vector, user index, cold start, the request's ratings) at
        the request times, with the request's ratings (titles, timestamps, stars [B, M])
        merged with the stored history."""
        user_id, timestamp = batch_inputs(user_id=user_id, timestamp=timestamp)
        request = self._request_ratings(user_id, *recent)
        user_index = self._user_index(user_id)
        return (*self._tower_vectors_with_request(
            user_index, timestamp, request.movies, request.times, request.ratings, request.valid),
            user_index, self._cold(user_index, request, timestamp), request)

    @signature([
        tf.TensorSpec([None], tf.string, name="user_id"),
        tf.TensorSpec([None], tf.int64, name="timestamp"), *_RECENT_SPECS])
    def recommend_with_recent(self, user_id, timestamp, recent_titles, recent_timestamps,
                              recent_ratings):
        """`at_time` with the user's latest ratings carried by the request (what the user did
        since the model was exported), merged with the stored history."""
        retrieval, _, _, cold, _ = self._vectors_with_recent(
            user_id, timestamp, (recent_titles, recent_timestamps, recent_ratings))
        return self._scann_top_k(retrieval, cold)

    @signature([
        tf.TensorSpec([None], tf.string, name="user_id"),
        tf.TensorSpec([None], tf.int64, name="timestamp"), *_RECENT_SPECS])
    def score_catalogue_with_recent(self, user_id, timestamp, recent_titles, recent_timestamps,
                                    recent_ratings):
        retrieval, _, _, cold, _ = self._vectors_with_recent(
            user_id, timestamp, (recent_titles, recent_timestamps, recent_ratings))
        return {"scores": self._exact_scores(retrieval, cold), "titles": self.catalogue_titles}

    @signature([
        tf.TensorSpec([None], tf.string, name="user_id"),
        tf.TensorSpec([None], tf.string, name="movie_title"),
        tf.TensorSpec([None], tf.int64, name="timestamp"), *_RECENT_SPECS])
    def predict_rating_with_recent(self, user_id, movie_title, timestamp, recent_titles,
                                   recent_timestamps, recent_ratings):
        user_id, movie_title = batch_inputs(user_id=user_id, movie_title=movie_title)
        _, rating_vector, user_index, cold, request = self._vectors_with_recent(
            user_id, timestamp, (recent_titles, recent_timestamps, recent_ratings))
        return self._rating_of(rating_vector, user_index, cold, movie_title, request)

    @signature([tf.TensorSpec([None], tf.string, name="user_id")])
    def recommend_unrated(self, user_id):
        """ScaNN's top k among the titles the user has not rated: the search asks for k more
        titles than the batch's longest history, then drops the rated ones (a user who rated
        all but fewer than k titles gets rated ones last, scored float32 min). ScaNN returns at
        most its reordering candidates (1,000): a batch that needs more (a user with about 990
        ratings or more) is answered from exact scores instead."""
        [user_id] = batch_inputs(user_id=user_id)
        user_embedding, user_index = self._user_embedding(user_id)
        cold = self._cold(user_index)
        num_candidates = tf.shape(self.catalogue_titles, out_type=tf.int64)[0]
        longest_history = tf.reduce_max(tf.concat(
            [tf.gather(self.rated_rows, user_index).row_lengths(), [0]], axis=0))
        k = tf.minimum(self.top_k + longest_history, num_candidates)
        scores, rows = tf.cond(
            k <= self.scann.max_k,
            lambda: self.scann(user_embedding, k=tf.cast(k, tf.int32)),
            lambda: tuple(tf.math.top_k(self._exact_scores(user_embedding, cold),
                                        k=tf.cast(k, tf.int32))))
        scores, rows = tf.reshape(scores, [-1, k]), tf.reshape(rows, [-1, k])
        rated = tf.gather(self._rated_mask(user_index, num_candidates), rows, batch_dims=1)
        kept_scores, kept = tf.math.top_k(tf.where(rated, tf.float32.min, scores), k=self.top_k)
        return self._top_k(*self._with_cold_start(
            kept_scores, tf.gather(rows, kept, batch_dims=1), cold))

    @signature([tf.TensorSpec([None], tf.string, name="user_id")])
    def recommend_exact(self, user_id):
        [user_id] = batch_inputs(user_id=user_id)
        user_embedding, user_index = self._user_embedding(user_id)
        return self._top_k(*tf.math.top_k(
            self._exact_scores(user_embedding, self._cold(user_index)), k=self.top_k))

    @signature([tf.TensorSpec([None], tf.string, name="user_id")])
    def embed_user(self, user_id):
        [user_id] = batch_inputs(user_id=user_id)
        return {"embedding": self._user_embedding(user_id)[0]}

    @signature([tf.TensorSpec([None], tf.string, name="user_id")])
    def score_catalogue(self, user_id):
        [user_id] = batch_inputs(user_id=user_id)
        return self._catalogue_scores(user_id)

    @signature([tf.TensorSpec([None], tf.string, name="user_id"),
                tf.TensorSpec([None], tf.int64, name="timestamp")])
    def score_catalogue_at_time(self, user_id, timestamp):
        user_id, timestamp = batch_inputs(user_id=user_id, timestamp=timestamp)
        return self._catalogue_scores(user_id, timestamp)

    def _catalogue_scores(self, user_id: tf.Tensor, timestamp: tf.Tensor | None = None) -> dict:
        user_embedding, user_index = self._user_embedding(user_id, timestamp)
        return {"scores": self._exact_scores(user_embedding, self._cold(user_index)),
                "titles": self.catalogue_titles}

    def _rating(self, user_id: tf.Tensor, movie_title: tf.Tensor,
                timestamp: tf.Tensor | None = None) -> dict:
        _, user_vector, user_index = self._user_vectors(user_id, timestamp)
        return self._rating_of(user_vector, user_index, self._cold(user_index), movie_title)

    def _rating_of(self, user_vector: tf.Tensor, user_index: tf.Tensor, cold: tf.Tensor,
                   movie_title: tf.Tensor, request: model_lib.RatingWindow | None = None
                   ) -> dict:
        rows = self.title_to_row.lookup(movie_title)
        return {"rating": self._rating_of_rows(user_vector, user_index, rows, cold, request),
                "known_user": user_index < self.num_users,
                "known_title": rows < tf.size(self.catalogue_titles, out_type=tf.int64)}

    def _rating_of_rows(self, rating_vector: tf.Tensor, user_index: tf.Tensor, rows: tf.Tensor,
                        cold: tf.Tensor, request: model_lib.RatingWindow | None = None
                        ) -> tf.Tensor:
        """The rating head's prediction for the catalogue rows, within the training ratings'
        stars (the head is unbounded: on ml-100k's eval split it predicted up to 6.3 stars),
        blended with the neighbourhood model's; cold-start requests: the title's cold-start
        rating."""
        rating = tf.clip_by_value(
            self.rating_head([rating_vector, tf.gather(self.movie_embeddings, rows)]),
            self.lowest_rating, self.highest_rating)
        if self.neighbourhood is not None:
            neighbours = self.neighbourhood.rate(
                self.history, user_index, tf.gather(self.movie_index_of_row, rows),
                request)
            rating = tf.clip_by_value(
                self.blend[0] * rating + self.blend[1] * neighbours + self.blend[2],
                self.lowest_rating, self.highest_rating)
        if not self.cold_start:
            return rating
        return tf.where(cold, tf.gather(self.cold_start_ratings, rows), rating)

    @signature([tf.TensorSpec([None], tf.string, name="user_id"),
                tf.TensorSpec([None], tf.string, name="movie_title")])
    def predict_rating(self, user_id, movie_title):
        return self._rating(*batch_inputs(user_id=user_id, movie_title=movie_title))

    @signature([tf.TensorSpec([None], tf.string, name="user_id"),
                tf.TensorSpec([None], tf.string, name="movie_title"),
                tf.TensorSpec([None], tf.int64, name="timestamp")])
    def predict_rating_at_time(self, user_id, movie_title, timestamp):
        return self._rating(*batch_inputs(user_id=user_id, movie_title=movie_title,
                                          timestamp=timestamp))

    @signature([tf.TensorSpec([None], tf.string, name="examples")])
    def evaluate(self, examples):
        [examples] = batch_inputs(examples=examples)
        raw = tf.io.parse_example(examples, self.raw_feature_spec)
        user_embedding, rating_vector, user_index = self._user_vectors(
            raw[features.USER_ID], raw[features.TIMESTAMP])
        rows = self.title_to_row.lookup(tf.reshape(raw[features.MOVIE_TITLE], [-1]))
        cold = self._cold(user_index)
        scores = self._exact_scores(user_embedding, cold)
        num_candidates = tf.shape(scores, out_type=tf.int64)[1]
        in_catalogue = rows < num_candidates
        held_out_score = tf.gather(scores, tf.minimum(rows, num_candidates - 1), batch_dims=1)
        rank = tf.math.count_nonzero(scores > held_out_score[:, None], axis=1)
        # Among the unrated titles: less the rated titles that score better.
        rated_scores = tf.gather(scores, self._rated(user_index, num_candidates), batch_dims=1)
        rank_unrated = rank - tf.reduce_sum(
            tf.cast(rated_scores > held_out_score[:, None], tf.int64), axis=1)

        rating = self._rating_of_rows(rating_vector, user_index, rows, cold)
        label = tf.reshape(raw[features.RATING], [-1])
        _, scann_rows = self._scann_search(user_embedding, cold, contract.SCANN_RECALL_K)
        outputs = {
            "rating": rating,
            contract.SQUARED_ERROR_OUTPUT: tf.square(rating - label),
            contract.SCANN_RECALL_OUTPUT: recall_at_k(scores, scann_rows),
        }
        # A title outside the catalogue can never be retrieved: a miss at every k.
        for k in contract.KS:
            outputs[contract.top_k_accuracy_output(k)] = tf.cast(
                in_catalogue & (rank < k), tf.float32)
            outputs[contract.top_k_accuracy_output(k, unrated=True)] = tf.cast(
                in_catalogue & (rank_unrated < k), tf.float32)
        return outputs

    def save(self, export_dir: str) -> None:
        signatures = {
            "serving_default": self.recommend.get_concrete_function(),
            "at_time": self.recommend_at_time.get_concrete_function(),
            "at_time_with_recent": self.recommend_with_recent.get_concrete_function(),
            "unrated": self.recommend_unrated.get_concrete_function(),
            "brute_force": self.recommend_exact.get_concrete_function(),
            "rating": self.predict_rating.get_concrete_function(),
            "rating_at_time": self.predict_rating_at_time.get_concrete_function(),
            "rating_with_recent": self.predict_rating_with_recent.get_concrete_function(),
            "user_embedding": self.embed_user.get_concrete_function(),
            "catalogue_scores": self.score_catalogue.get_concrete_function(),
            "catalogue_scores_at_time": self.score_catalogue_at_time.get_concrete_function(),
            "catalogue_scores_with_recent":
                self.score_catalogue_with_recent.get_concrete_function(),
            contract.EVALUATION_SIGNATURE: self.evaluate.get_concrete_function(),
        }
        options = tf.saved_model.SaveOptions(
            namespace_whitelist=list(stack.SCANN_SAVE_OPTIONS_NAMESPACES))
        tf.saved_model.save(self, export_dir, signatures=signatures, options=options)
