"""The multi-task TFRS model: user and movie towers shared by a retrieval and a rating task.

Inputs are Transform's outputs (see components/transform/preprocessing.py):
user_index [batch] int64, movie_index [batch] int64, genres_multi_hot [batch, 21] float32,
and the label rating [batch] float32; and the raw timestamp [batch] int64 (seconds since the
epoch), the time of the request: the rating's own time in training and evaluation.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from components import features


CUSTOM_CONFIG_KEY = "model"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Every hyperparameter of the model and its training (set in pipeline/configs.py)."""

    embedding_dim: int = 64
    rating_hidden_units: tuple[int, ...] = (256, 64)
    # Dropout after each hidden layer of the rating MLP (the rating task overfits long before
    # the retrieval task stops improving).
    rating_dropout: float = 0.0
    retrieval_weight: float = 1.0
    rating_weight: float = 1.0
    # Retrieval: softmax temperature; logQ correction of in-batch negatives, which otherwise
    # sample popular movies as negatives more often and so push popular movies down.
    temperature: float = 1.0
    sampling_bias_correction: bool = True
    # "in_batch": the other movies of the batch are the negatives (TFRS's default, needs the
    # logQ correction); "catalogue": every movie of the vocabulary is (an exact softmax, cheap
    # at MovieLens catalogue sizes). The logQ correction only applies to "in_batch".
    retrieval_negatives: str = "in_batch"
    # With catalogue negatives: the other movies the user rated in training are not negatives
    # (they are positives of other examples), needs user_history.
    exclude_rated_negatives: bool = False
    # The user vector adds the mean embedding of the titles the user rated in training
    # (SVD++'s implicit feedback); each training example leaves its own title out.
    user_history: bool = False
    # With user_history: the retrieval vector also adds a weighted mean of the history's
    # "session" embeddings, each rated title's weight learnt per bucket of the time between
    # its rating and the request (bucket boundaries in seconds), so the titles rated in the
    # same session, just before the request, can dominate it. Only the ratings made before
    # the request count: a live system has no later ones. The rating vector has no session term.
    # Without a request time (the user-id-only serving signatures) the session mean is
    # uniform. () leaves the session term out.
    history_time_boundaries: tuple[float, ...] = ()
    # With user_history: the rating vector adds a weighted mean of the history's "rated"
    # embeddings, each scaled by how far the user's rating of that title sits from the
    # training mean (Koren's explicit neighbourhood term), so the user's actual ratings, not
    # only which titles they rated, inform the predicted rating. With history_time_boundaries
    # the weights are learnt per time bucket for this term (a session's ratings run high or
    # low together), again over the earlier ratings only; uniform without them.
    rating_history: bool = False
    # Add embeddings of the user's gender, age bucket and occupation to the user vector, where
    # the dataset has them (MovieLens 100k and 1m).
    user_demographics: bool = False
    l2_regularization: float = 0.0
    optimizer: str = "adagrad"
    learning_rate: float = 0.1
    batch_size: int = 4096
    # Training stops when the validation loss (both tasks' weighted loss, without the L2
    # penalty, on a slice carved from the training split, never the eval split) has not
    # improved for `early_stopping_patience` epochs; the best weights are kept.
    epochs: int = 3
    validation_fraction: float = 0.1
    early_stopping_patience: int = 2
    seed: int = 42
    top_k: int = 10

    @classmethod
    def from_custom_config(cls, custom_config: Mapping[str, Any] | None) -> "ModelConfig":
        """Reads the Trainer's custom_config[CUSTOM_CONFIG_KEY] (other keys belong to TFX's
        executors, e.g. Vertex AI Training's)."""
        values = dict((custom_config or {}).get(CUSTOM_CONFIG_KEY, {}))
        unknown = set(values) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"Unknown model hyperparameters: {sorted(unknown)}.")
        for name in ("rating_hidden_units", "history_time_boundaries"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


def _regularizer(config: ModelConfig):
    return tf.keras.regularizers.l2(config.l2_regularization) if config.l2_regularization else None


def rated_mask(histories: tf.RaggedTensor, user_index: tf.Tensor,
               width: tf.Tensor) -> tf.Tensor:
    """[batch, width] bool: True at the columns listed in each user's row of `histories`
    (columns >= width ignored)."""
    rated = tf.gather(histories, user_index)
    in_range = rated.flat_values < width
    indices = tf.stack([rated.value_rowids(), rated.flat_values], axis=1)
    return tf.scatter_nd(
        tf.boolean_mask(indices, in_range),
        tf.ones_like(tf.boolean_mask(rated.flat_values, in_range), dtype=tf.int32),
        [tf.shape(user_index, out_type=tf.int64)[0], width]) > 0


@dataclasses.dataclass(frozen=True)
class UserHistories:
    """Per user index (OOV last): the movie indices rated, when (seconds since the epoch) and
    how (the rating), in the same order."""

    movies: list[list[int]]
    times: list[list[int]]
    ratings: list[list[float]]

    def __post_init__(self):
        lengths = [len(m) for m in self.movies]
        if lengths != [len(t) for t in self.times] or lengths != [len(r) for r in self.ratings]:
            raise ValueError("Each user's history needs one time and one rating per movie.")

    def merged(self, other: "UserHistories") -> "UserHistories":
        """Both histories of each user, in time order."""
        movies, times, ratings = [], [], []
        for rows in map(sorted, (zip(t1 + t2, m1 + m2, r1 + r2) for m1, t1, r1, m2, t2, r2 in zip(
                self.movies, self.times, self.ratings, other.movies, other.times,
                other.ratings))):
            times.append([time for time, _, _ in rows])
            movies.append([movie for _, movie, _ in rows])
            ratings.append([rating for _, _, rating in rows])
        return UserHistories(movies, times, ratings)

    def mean_rating(self) -> float:
        count = sum(len(r) for r in self.ratings)
        return sum(map(sum, self.ratings)) / count if count else 0.0


class UserTower(tf.keras.Model):
    """user_index [batch] (optionally timestamp [batch]: the request time, and in training
    movie_index: the title to leave out of the history) -> user vector [batch, dim + 1].
    Index num_users is OOV.

    With `demographics` ([num_users + 1, 3] indices, see features.USER_DEMOGRAPHICS), their
    embeddings are added to the user's own.

    The last component is a constant 1 that meets the movie bias in the dot product. With
    `history` (what each user rated in training), the mean of their history embeddings is
    added to the user's own embedding (the user's taste, for both tasks); with
    history_time_boundaries too, the retrieval vector adds a time-weighted mean of the
    history's session embeddings; with rating_history, the rating vector adds a mean of the
    history's rated embeddings scaled by the ratings (see ModelConfig).
    """

    def __init__(self, num_users: int, num_movies: int, config: ModelConfig,
                 history: UserHistories | None = None,
                 demographics: tf.Tensor | None = None):
        super().__init__(name="user_tower")

        def embedding(rows: int, name: str) -> tf.keras.layers.Embedding:
            return tf.keras.layers.Embedding(rows, config.embedding_dim, name=name,
                                             embeddings_regularizer=_regularizer(config))

        self.user_embedding = embedding(num_users + 1, "user_embedding")
        self.demographics = demographics
        if demographics is not None:
            self.demographic_embeddings = [
                embedding(size + 1, f"{name}_embedding")  # + unknown
                for name, size in zip(features.DEMOGRAPHIC_FEATURES, features.DEMOGRAPHIC_SIZES)]
        self.history_movies = self.history_times = self.history_ratings = None
        self.history_embedding = self.session_embedding = self.rated_embedding = None
        self.time_boundaries = None
        if history is not None:
            self.set_history(history)
            self.history_embedding = embedding(num_movies + 1, "history_embedding")
            # Fixed at training: the served histories must not shift what the model learnt.
            self.mean_rating = tf.constant(history.mean_rating(), tf.float32)

            def time_weight(name: str) -> tf.keras.layers.Embedding:
                return tf.keras.layers.Embedding(len(config.history_time_boundaries) + 1, 1,
                                                 embeddings_initializer="zeros", name=name)

            if config.history_time_boundaries:
                self.time_boundaries = tf.constant(config.history_time_boundaries, tf.float32)
                self.session_embedding = embedding(num_movies + 1, "session_embedding")
                self.history_time_weight = time_weight("history_time_weight")
            if config.rating_history:
                self.rated_embedding = embedding(num_movies + 1, "rated_embedding")
                if config.history_time_boundaries:
                    self.rated_time_weight = time_weight("rated_time_weight")

    def set_history(self, history: UserHistories) -> None:
        """Replaces the histories, e.g. after training."""
        self.history_movies = tf.ragged.constant(history.movies, dtype=tf.int64, ragged_rank=1)
        self.history_times = tf.ragged.constant(history.times, dtype=tf.int64, ragged_rank=1)
        self.history_ratings = tf.ragged.constant(history.ratings, dtype=tf.float32,
                                                  ragged_rank=1)

    def time_weights(self, gaps: tf.Tensor, task: str = "retrieval") -> tf.Tensor:
        """The learnt weight, in the retrieval task's session term or the rating task's rated
        term, of history ratings made `gaps` [n] int64 seconds before the request; 0 for those
        made at or after it (a live system would not have them yet)."""
        table = self.history_time_weight if task == "retrieval" else self.rated_time_weight
        buckets = tf.searchsorted(self.time_boundaries, tf.cast(gaps, tf.float32), side="right")
        return tf.exp(table(buckets)[:, 0]) * tf.cast(gaps > 0, tf.float32)

    def learnt_time_weights(self) -> dict[str, list[float]]:
        """Each timed term's learnt weight of a rating made 1 s before the request and at each
        bucket boundary (what the Trainer logs)."""
        if self.time_boundaries is None:
            return {}
        gaps = tf.cast(tf.concat([[1.0], self.time_boundaries], axis=0), tf.int64)
        tasks = {"session": "retrieval"}
        if self.rated_embedding is not None:
            tasks["rated"] = "rating"
        return {term: self.time_weights(gaps, task).numpy().tolist()
                for term, task in tasks.items()}

    @staticmethod
    def _weighted_mean(vectors: tf.Tensor, movies: tf.RaggedTensor,
                       weights: tf.Tensor) -> tf.Tensor:
        """[batch, dim]: the mean of each row's `vectors` (one per flat value of `movies`),
        weighted by `weights`; 0 where no weight is left."""
        rows, num_rows = movies.value_rowids(), movies.nrows()
        total = tf.math.unsorted_segment_sum(vectors * weights[:, None], rows, num_rows)
        weight = tf.math.unsorted_segment_sum(weights, rows, num_rows)
        return tf.math.divide_no_nan(total, weight[:, None])

    def vectors(self, inputs: Mapping[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """(the retrieval task's user vector, with the session term; the rating task's,
        with the rated term instead), each [batch, dim + 1]."""
        user_index = inputs[features.USER_INDEX]
        taste = self.user_embedding(user_index)
        if self.demographics is not None:
            values = tf.gather(self.demographics, user_index)
            for column, embedding in enumerate(self.demographic_embeddings):
                taste += embedding(values[:, column])
        session = rated = None
        if self.history_embedding is not None:
            movies = tf.gather(self.history_movies, user_index)
            rows = movies.value_rowids()
            weights = tf.ones_like(movies.flat_values, dtype=tf.float32)
            if features.MOVIE_INDEX in inputs:  # training: leave the target out
                weights = tf.cast(
                    movies.flat_values != tf.gather(inputs[features.MOVIE_INDEX], rows),
                    tf.float32)
            taste += self._weighted_mean(self.history_embedding(movies.flat_values), movies,
                                         weights)
            timed = self.time_boundaries is not None and features.TIMESTAMP in inputs
            gaps = (tf.gather(inputs[features.TIMESTAMP], rows)
                    - tf.gather(self.history_times, user_index).flat_values) if timed else None

            def weights_for(task: str) -> tf.Tensor:
                return weights * self.time_weights(gaps, task) if timed else weights

            if self.session_embedding is not None:
                session = self._weighted_mean(self.session_embedding(movies.flat_values),
                                              movies, weights_for("retrieval"))
            if self.rated_embedding is not None:
                deviations = (tf.gather(self.history_ratings, user_index).flat_values
                              - self.mean_rating)
                rated = self._weighted_mean(
                    self.rated_embedding(movies.flat_values) * deviations[:, None], movies,
                    weights_for("rating"))
        rating_vector = _with_bias_one(taste if rated is None else taste + rated)
        if session is None:
            return _with_bias_one(taste), rating_vector
        return _with_bias_one(taste + session), rating_vector

    def call(self, inputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """The retrieval task's user vector (with the session term)."""
        return self.vectors(inputs)[0]


def _with_bias_one(vector: tf.Tensor) -> tf.Tensor:
    """`vector` with a constant last component 1, which meets the movie bias in a dot
    product."""
    return tf.concat([vector, tf.ones_like(vector[:, :1])], axis=1)


def build_movie_tower(num_movies: int, config: ModelConfig) -> tf.keras.Model:
    """movie_index [batch], genres_multi_hot [batch, 21] -> movie embedding [batch, dim + 1].

    The genre term gives titles unseen in training (the shared OOV index) an embedding of their
    own kind; the last component is the movie's learnt popularity bias.
    """
    movie_index = tf.keras.Input(shape=(), dtype=tf.int64, name=features.MOVIE_INDEX)
    genres = tf.keras.Input(shape=(features.NUM_GENRES,), dtype=tf.float32,
                            name=features.GENRES_MULTI_HOT)
    title_embedding = tf.keras.layers.Embedding(
        num_movies + 1, config.embedding_dim, embeddings_regularizer=_regularizer(config),
        name="title_embedding")(movie_index)
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


class MultiTaskRecommender(tfrs.Model):
    """Joint retrieval (softmax over movie embeddings) and rating regression.

    loss = retrieval_weight * mean softmax cross-entropy + rating_weight * mean squared error.
    Both are per-example means (TFRS sums the retrieval loss over the batch by default, which
    drowns the rating task). With catalogue negatives (`catalogue_genres` given), the softmax
    runs over every vocabulary movie. With in-batch negatives, TFRS's Retrieval task removes
    accidental hits (the positive movie appearing again as an in-batch negative) and, given
    `movie_frequencies` (training counts by movie index), corrects the logits by the log of
    each candidate's sampling probability.
    Top-k metrics over the whole catalogue are the Evaluator's job.
    """

    def __init__(self, user_tower: tf.keras.Model, movie_tower: tf.keras.Model,
                 rating_head: tf.keras.Model, config: ModelConfig,
                 movie_frequencies: tf.Tensor | None = None,
                 catalogue_genres: tf.Tensor | None = None):
        super().__init__()
        self.user_tower = user_tower
        self.movie_tower = movie_tower
        self.rating_head = rating_head
        self.retrieval_weight = config.retrieval_weight
        self.rating_weight = config.rating_weight
        self.sampling_probability = None
        self.catalogue_genres = None
        if config.retrieval_negatives == "catalogue":
            if catalogue_genres is None:
                raise ValueError("retrieval_negatives='catalogue' needs the catalogue's genres.")
            self.catalogue_genres = tf.constant(catalogue_genres, dtype=tf.float32)
        elif config.retrieval_negatives != "in_batch":
            raise ValueError("retrieval_negatives must be 'in_batch' or 'catalogue', got "
                             f"{config.retrieval_negatives!r}.")
        elif config.sampling_bias_correction and movie_frequencies is not None:
            frequencies = tf.cast(movie_frequencies, tf.float32) + 1.0
            self.sampling_probability = frequencies / tf.reduce_sum(frequencies)
        self.temperature = config.temperature
        self.exclude_rated_negatives = config.exclude_rated_negatives
        self.retrieval_task = tfrs.tasks.Retrieval(
            loss=tf.keras.losses.CategoricalCrossentropy(
                from_logits=True, reduction=tf.keras.losses.Reduction.SUM_OVER_BATCH_SIZE),
            temperature=config.temperature, remove_accidental_hits=True)
        self.rating_task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(),
            metrics=[tf.keras.metrics.RootMeanSquaredError(name="rmse")])

    def call(self, inputs: Mapping[str, tf.Tensor], training: bool = False):
        """(user vector at the request time, movie vector, predicted rating)."""
        user_inputs = {name: inputs[name] for name in (features.USER_INDEX, features.TIMESTAMP)
                       if name in inputs}
        if training:  # every training example is in its user's history, which must not hold it
            user_inputs[features.MOVIE_INDEX] = inputs[features.MOVIE_INDEX]
        user_embedding, rating_vector = self.user_tower.vectors(user_inputs)
        movie_embedding = self.movie_tower({
            features.MOVIE_INDEX: inputs[features.MOVIE_INDEX],
            features.GENRES_MULTI_HOT: inputs[features.GENRES_MULTI_HOT]})
        return user_embedding, movie_embedding, self.rating_head(
            [rating_vector, movie_embedding])

    def _catalogue_retrieval_loss(self, user_embedding: tf.Tensor,
                                  inputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Mean softmax cross-entropy of the rated movie against every vocabulary movie."""
        catalogue_ids = tf.range(tf.shape(self.catalogue_genres, out_type=tf.int64)[0])
        catalogue = self.movie_tower({features.MOVIE_INDEX: catalogue_ids,
                                      features.GENRES_MULTI_HOT: self.catalogue_genres})
        logits = tf.matmul(user_embedding, catalogue, transpose_b=True) / self.temperature
        if self.exclude_rated_negatives:
            rated = rated_mask(self.user_tower.history_movies, inputs[features.USER_INDEX],
                               tf.shape(catalogue_ids, out_type=tf.int64)[0])
            target = tf.one_hot(inputs[features.MOVIE_INDEX], tf.shape(logits)[1],
                                on_value=True, off_value=False)
            logits = tf.where(rated & ~target, logits.dtype.min, logits)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            inputs[features.MOVIE_INDEX], logits))

    def compute_loss(self, inputs: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        user_embedding, movie_embedding, rating = self(inputs, training=training)
        if self.catalogue_genres is None:
            sampling_probability = None if self.sampling_probability is None else tf.gather(
                self.sampling_probability, inputs[features.MOVIE_INDEX])
            retrieval_loss = self.retrieval_task(
                user_embedding, movie_embedding, candidate_ids=inputs[features.MOVIE_INDEX],
                candidate_sampling_probability=sampling_probability,
                compute_metrics=not training)
        else:
            retrieval_loss = self._catalogue_retrieval_loss(user_embedding, inputs)
        rating_loss = self.rating_task(labels=inputs[features.RATING_LABEL], predictions=rating)
        return self.retrieval_weight * retrieval_loss + self.rating_weight * rating_loss


def build_model(num_users: int, num_movies: int, config: ModelConfig,
                movie_frequencies: tf.Tensor | None = None,
                user_histories: UserHistories | None = None,
                catalogue_genres: tf.Tensor | None = None,
                user_demographics: np.ndarray | None = None) -> MultiTaskRecommender:
    """The compiled model. `movie_frequencies` [num_movies + 1] enables the logQ correction;
    `user_histories` (what each user rated in training) the history term;
    `catalogue_genres` [num_movies, NUM_GENRES] (genres by movie index) catalogue negatives;
    `user_demographics` [num_users + 1, 3] (None where the dataset has none) the demographic
    embeddings."""
    tf.keras.utils.set_random_seed(config.seed)
    if config.exclude_rated_negatives and not (config.user_history
                                               and config.retrieval_negatives == "catalogue"):
        raise ValueError("exclude_rated_negatives needs user_history and "
                         "retrieval_negatives='catalogue'.")
    if config.history_time_boundaries and not config.user_history:
        raise ValueError("history_time_boundaries needs user_history.")
    if config.rating_history and not config.user_history:
        raise ValueError("rating_history needs user_history.")
    if config.user_history and user_histories is None:
        raise ValueError("user_history needs the users' training histories.")
    demographics = None
    if config.user_demographics and user_demographics is not None:
        demographics = tf.constant(user_demographics, dtype=tf.int64)
    history = user_histories if config.user_history else None
    model = MultiTaskRecommender(UserTower(num_users, num_movies, config, history, demographics),
                                 build_movie_tower(num_movies, config),
                                 build_rating_head(config), config, movie_frequencies,
                                 catalogue_genres)
    optimizers = {"adagrad": tf.keras.optimizers.Adagrad, "adam": tf.keras.optimizers.Adam}
    if config.optimizer not in optimizers:
        raise ValueError(f"optimizer must be one of {sorted(optimizers)}, got "
                         f"{config.optimizer!r}.")
    model.compile(optimizer=optimizers[config.optimizer](learning_rate=config.learning_rate))
    return model
