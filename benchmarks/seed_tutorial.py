"""The TFRS multi-task tutorial's joint model, as published, on the pipeline's split.

Settings of the tutorial (https://www.tensorflow.org/recommenders/examples/multitask): 32-dim
user and title embeddings from StringLookup vocabularies (all users, all catalogue titles),
rating MLP 256-128-1, TFRS's default (batch-summed) retrieval loss, rating and retrieval weights
1.0, Adagrad 0.1, batch 8192 over a 100k shuffle buffer, 3 epochs.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from benchmarks.ranking import Ratings


class TutorialModel(tfrs.models.Model):
    def __init__(self, user_ids, titles, rating_weight: float = 1.0,
                 retrieval_weight: float = 1.0):
        super().__init__()
        self.user_model = tf.keras.Sequential([
            tf.keras.layers.StringLookup(vocabulary=user_ids, mask_token=None),
            tf.keras.layers.Embedding(len(user_ids) + 1, 32)])
        self.movie_model = tf.keras.Sequential([
            tf.keras.layers.StringLookup(vocabulary=titles, mask_token=None),
            tf.keras.layers.Embedding(len(titles) + 1, 32)])
        self.rating_model = tf.keras.Sequential([
            tf.keras.layers.Dense(256, activation="relu"),
            tf.keras.layers.Dense(128, activation="relu"),
            tf.keras.layers.Dense(1)])
        self.rating_task = tfrs.tasks.Ranking(loss=tf.keras.losses.MeanSquaredError())
        self.retrieval_task = tfrs.tasks.Retrieval()
        self.rating_weight, self.retrieval_weight = rating_weight, retrieval_weight

    def call(self, features):
        users = self.user_model(features["user_id"])
        movies = self.movie_model(features["movie_title"])
        return users, movies, self.rating_model(tf.concat([users, movies], axis=1))

    def compute_loss(self, features, training=False):
        users, movies, ratings = self(features)
        rating_loss = self.rating_task(labels=features["user_rating"], predictions=ratings)
        retrieval_loss = self.retrieval_task(users, movies, compute_metrics=not training)
        return self.rating_weight * rating_loss + self.retrieval_weight * retrieval_loss


def seed_tutorial(data: Ratings) -> dict:
    tf.keras.utils.set_random_seed(42)
    user_ids, titles = data.user_ids.astype(bytes), data.titles.astype(bytes)
    model = TutorialModel(user_ids, titles)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(0.1))
    train = tf.data.Dataset.from_tensor_slices({
        "user_id": user_ids[data.train_users], "movie_title": titles[data.train_items],
        "user_rating": data.train_ratings.astype(np.float32)})
    model.fit(train.shuffle(100_000, seed=42, reshuffle_each_iteration=False).batch(8192).cache(),
              epochs=3, verbose=0)
    movie_embeddings = model.movie_model(titles).numpy()

    def score_users(users):
        return model.user_model(user_ids[users]).numpy() @ movie_embeddings.T

    def predict(users, items):
        _, _, ratings = model({"user_id": user_ids[users], "movie_title": titles[items]})
        return ratings.numpy().reshape(-1)

    return {"score_users": score_users, "predict": predict}
