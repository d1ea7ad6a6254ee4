"""The multi-task TFRS model: user and movie towers shared by a retrieval and a rating task.

Inputs are Transform's outputs (see components/transform/preprocessing.py):
user_index [batch] int64, movie_index [batch] int64, genres_multi_hot [batch, 21] float32,
and the label rating [batch] float32.
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
        if "rating_hidden_units" in values:
            values["rating_hidden_units"] = tuple(values["rating_hidden_units"])
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


class UserTower(tf.keras.Model):
    """user_index [batch] (and, in training, movie_index: the title to leave out of the
    history) -> user vector [batch, embedding_dim + 1]. Index num_users is OOV.

    With `demographics` ([num_users + 1, 3] indices, see features.USER_DEMOGRAPHICS), their
    embeddings are added to the user's own.

    The last component is a constant 1 that meets the movie bias in the dot product. With
    `history` ([num_users + 1, None] movie indices rated in training), the mean of their history
    embeddings is added to the user's own embedding.
    """

    def __init__(self, num_users: int, num_movies: int, config: ModelConfig,
                 history: tf.RaggedTensor | None = None,
                 demographics: tf.Tensor | None = None):
        super().__init__(name="user_tower")
        self.user_embedding = tf.keras.layers.Embedding(
            num_users + 1, config.embedding_dim, embeddings_regularizer=_regularizer(config),
            name="user_embedding")
        self.demographics = demographics
        if demographics is not None:
            self.demographic_embeddings = [
                tf.keras.layers.Embedding(size + 1, config.embedding_dim,  # + unknown
                                          embeddings_regularizer=_regularizer(config),
                                          name=f"{name}_embedding")
                for name, size in zip(features.DEMOGRAPHIC_FEATURES, features.DEMOGRAPHIC_SIZES)]
        self.history = history
        if history is not None:
            self.history_embedding = tf.keras.layers.Embedding(
                num_movies + 1, config.embedding_dim, embeddings_regularizer=_regularizer(config),
                name="history_embedding")

    def set_history(self, histories: list[list[int]]) -> None:
        """Replaces the histories (movie indices per user index), e.g. after training."""
        self.history = tf.ragged.constant(histories, dtype=tf.int64, ragged_rank=1)

    def call(self, inputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
        user_index = inputs[features.USER_INDEX]
        vector = self.user_embedding(user_index)
        if self.demographics is not None:
            values = tf.gather(self.demographics, user_index)
            for column, embedding in enumerate(self.demographic_embeddings):
                vector += embedding(values[:, column])
        if self.history is not None:
            rated = tf.gather(self.history, user_index)
            total = tf.math.unsorted_segment_sum(
                self.history_embedding(rated.flat_values), rated.value_rowids(),
                tf.shape(user_index, out_type=tf.int64)[0])
            count = tf.cast(rated.row_lengths(), tf.float32)
            if features.MOVIE_INDEX in inputs:  # training: leave the target out
                total -= self.history_embedding(inputs[features.MOVIE_INDEX])
                count -= 1.0
            vector += total / tf.maximum(count, 1.0)[:, None]
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
        user_inputs = {features.USER_INDEX: inputs[features.USER_INDEX]}
        if training:  # every training example is in its user's history, which must not hold it
            user_inputs[features.MOVIE_INDEX] = inputs[features.MOVIE_INDEX]
        user_embedding = self.user_tower(user_inputs)
        movie_embedding = self.movie_tower({
            features.MOVIE_INDEX: inputs[features.MOVIE_INDEX],
            features.GENRES_MULTI_HOT: inputs[features.GENRES_MULTI_HOT]})
        return user_embedding, movie_embedding, self.rating_head(
            [user_embedding, movie_embedding])

    def _catalogue_retrieval_loss(self, user_embedding: tf.Tensor,
                                  inputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Mean softmax cross-entropy of the rated movie against every vocabulary movie."""
        catalogue_ids = tf.range(tf.shape(self.catalogue_genres, out_type=tf.int64)[0])
        catalogue = self.movie_tower({features.MOVIE_INDEX: catalogue_ids,
                                      features.GENRES_MULTI_HOT: self.catalogue_genres})
        logits = tf.matmul(user_embedding, catalogue, transpose_b=True) / self.temperature
        if self.exclude_rated_negatives:
            rated = rated_mask(self.user_tower.history, inputs[features.USER_INDEX],
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
                user_histories: list[list[int]] | None = None,
                catalogue_genres: tf.Tensor | None = None,
                user_demographics: np.ndarray | None = None) -> MultiTaskRecommender:
    """The compiled model. `movie_frequencies` [num_movies + 1] enables the logQ correction;
    `user_histories` (movie indices rated in training, per user index) the history term;
    `catalogue_genres` [num_movies, NUM_GENRES] (genres by movie index) catalogue negatives;
    `user_demographics` [num_users + 1, 3] (None where the dataset has none) the demographic
    embeddings."""
    tf.keras.utils.set_random_seed(config.seed)
    if config.exclude_rated_negatives and not (config.user_history
                                               and config.retrieval_negatives == "catalogue"):
        raise ValueError("exclude_rated_negatives needs user_history and "
                         "retrieval_negatives='catalogue'.")
    history = None
    if config.user_history:
        if user_histories is None:
            raise ValueError("user_history needs the users' training histories.")
        history = tf.ragged.constant(user_histories, dtype=tf.int64, ragged_rank=1)
    demographics = None
    if config.user_demographics and user_demographics is not None:
        demographics = tf.constant(user_demographics, dtype=tf.int64)
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
