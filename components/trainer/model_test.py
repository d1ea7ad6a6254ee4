import math

import numpy as np
import pytest
import tensorflow as tf

from components import features
from components.trainer import model as model_lib
from components.trainer.histories import UserHistories

NUM_USERS, NUM_MOVIES = 20, 30


# The TFRS tutorial's model (no history terms, in-batch negatives, adagrad): each test turns on
# what it checks.
TUTORIAL_MODEL = dict(rating_dropout=0.0, retrieval_negatives="in_batch", user_history=False,
                      history_time_boundaries=(), rating_history=False, l2_regularization=0.0,
                      optimizer="adagrad", learning_rate=0.1, batch_size=4096, epochs=3,
                      learning_rate_drop=1.0)


def _config(**fields):
    return model_lib.ModelConfig(**{**TUTORIAL_MODEL, **fields})


def _catalogue_genres():
    genres = np.zeros((NUM_MOVIES, features.NUM_GENRES), dtype="float32")
    genres[np.arange(NUM_MOVIES), np.arange(NUM_MOVIES) % 3] = 1.0
    return genres


def _build(config, num_users=NUM_USERS, num_movies=NUM_MOVIES, **kwargs):
    genres = _catalogue_genres()[:num_movies] if num_movies <= NUM_MOVIES else np.zeros(
        (num_movies, features.NUM_GENRES), "float32")
    return model_lib.build_model(num_users, num_movies, config, genres, **kwargs)


def _histories(users, movies, times, ratings=None, num_users=NUM_USERS):
    return UserHistories.from_ratings(np.array(users), np.array(movies), np.array(times),
                                      np.array(ratings or [3.0] * len(users), "float32"),
                                      num_users)


def _dataset(seed=0, size=600):
    rng = np.random.default_rng(seed)
    users = rng.integers(NUM_USERS, size=size)
    # Each user prefers movies of its parity; the rating follows the same rule.
    movies = (rng.integers(NUM_MOVIES // 2, size=size) * 2 + users % 2) % NUM_MOVIES
    ratings = np.where(movies % 2 == users % 2, 4.5, 1.5).astype("float32")
    return tf.data.Dataset.from_tensor_slices({
        features.USER_INDEX: users.astype("int64"), features.MOVIE_INDEX: movies.astype("int64"),
        features.TIMESTAMP: rng.integers(1_000, 2_000, size=size),
        features.RATING_LABEL: ratings}).batch(64)


def _vectors(tower, users, times, left_out=None):
    def constant(values):
        return None if values is None else tf.constant(values, tf.int64)

    return [vector.numpy()[:, :-1] for vector in tower.vectors(
        constant(users), constant(times), left_out_movie=constant(left_out))]


def test_towers_share_embedding_size_and_rating_is_a_scalar_per_example():
    model = _build(_config(embedding_dim=8))
    batch = next(iter(_dataset()))
    user, movie, rating = model(batch)
    # The towers append a bias slot to the embedding: a constant 1 for users, a bias for movies.
    assert user.shape == (64, 9) and movie.shape == (64, 9) and rating.shape == (64,)
    assert set(user[:, -1].numpy()) == {1.0}


def test_joint_training_learns_both_tasks():
    config = _config(embedding_dim=8, optimizer="adam", learning_rate=0.05,
                     epochs=1)
    model = _build(config)
    before = model.evaluate(_dataset(1), return_dict=True, verbose=0)
    model.fit(_dataset(), epochs=15, verbose=0)
    after = model.evaluate(_dataset(1), return_dict=True, verbose=0)
    assert after["rmse"] < 0.5 * before["rmse"]
    assert after["loss"] < before["loss"]


def test_loss_weights_scale_each_task():
    batch = next(iter(_dataset()))

    def loss(retrieval_weight, rating_weight):
        config = _config(embedding_dim=8, retrieval_weight=retrieval_weight,
                         rating_weight=rating_weight)
        return float(_build(config).compute_loss(batch))

    retrieval_only, rating_only, both = loss(1.0, 0.0), loss(0.0, 1.0), loss(1.0, 1.0)
    assert retrieval_only > 0 and rating_only > 0
    assert both == pytest.approx(retrieval_only + rating_only, rel=1e-4)
    assert loss(2.0, 0.0) == pytest.approx(2 * retrieval_only, rel=1e-4)


def test_config_rejects_unknown_hyperparameters_and_optimizers():
    with pytest.raises(ValueError, match="embeding_dim"):
        model_lib.ModelConfig.from_custom_config({"model": {"embeding_dim": 3}})
    config = model_lib.ModelConfig.from_custom_config(
        {"model": {**TUTORIAL_MODEL, "rating_hidden_units": [8], "optimizer": "sgd"},
         "ai_platform_enable_vertex": True})
    assert config.rating_hidden_units == (8,)
    with pytest.raises(ValueError, match="'sgd'"):
        _build(config)
    with pytest.raises(ValueError, match="recent_history_size must be at least 1"):
        _build(_config(recent_history_size=0))


def test_taste_term_is_the_history_mean_without_the_training_target():
    config = _config(embedding_dim=4, user_history=True)
    history = _histories([0, 0, 2], [0, 1, 2], [10, 20, 30], num_users=2)
    tower = model_lib.UserTower(num_users=2, num_movies=3, config=config, history=history)
    serving, _ = _vectors(tower, [0, 1], [99, 99])
    training, _ = _vectors(tower, [0, 1], [99, 99], left_out=[0, 2])
    own = tower.user_embedding(tf.constant([0, 1], tf.int64)).numpy()
    titles = tower.history_embedding(tf.constant([0, 1], tf.int64)).numpy()
    np.testing.assert_allclose(serving[0], own[0] + titles.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(training[0], own[0] + titles[1], rtol=1e-5)
    np.testing.assert_allclose(serving[1], own[1], rtol=1e-5)  # no history: own only
    # The same user twice in a batch: each example leaves out its own target.
    both, _ = _vectors(tower, [0, 0], [99, 99], left_out=[0, 1])
    np.testing.assert_allclose(both, [own[0] + titles[1], own[0] + titles[0]], rtol=1e-5)


def test_taste_term_of_a_long_history_averages_a_spread_bounded_sample():
    config = _config(embedding_dim=4, user_history=True, taste_history_size=3)
    history = _histories([0] * 6, [0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6], num_users=1)
    tower = model_lib.UserTower(num_users=1, num_movies=6, config=config, history=history)
    positions, valid = tower.history.spread(tf.constant([0, 1], tf.int64), 3)
    assert positions.numpy()[0].tolist() == [1, 3, 5] and valid.numpy()[0].all()
    assert not valid.numpy()[1].any()  # the OOV user has no history
    taste, _ = _vectors(tower, [0], [99])
    own = tower.user_embedding(tf.constant([0], tf.int64)).numpy()[0]
    titles = tower.history_embedding(tf.constant([1, 3, 5], tf.int64)).numpy()
    np.testing.assert_allclose(taste[0], own + titles.mean(axis=0), rtol=1e-5)


def test_histories_need_their_config():
    with pytest.raises(ValueError, match="histories"):
        _build(_config(user_history=True))
    with pytest.raises(ValueError, match="history_time_boundaries needs user_history"):
        _build(_config(history_time_boundaries=(60,)))
    with pytest.raises(ValueError, match="rating_history needs user_history"):
        _build(_config(rating_history=True))


def test_session_term_weighs_the_latest_earlier_ratings_by_time_to_the_request():
    config = _config(embedding_dim=4, user_history=True,
                     history_time_boundaries=(60, 3_600), recent_history_size=2)
    # User 0 rated movie 0 at t=1000 and movies 1, 2 a day later.
    history = _histories([0, 0, 0], [0, 1, 2], [1_000, 87_400, 87_430], num_users=1)
    tower = model_lib.UserTower(num_users=1, num_movies=3, config=config, history=history)
    weights = tower.session_time_weights
    weights.log_weights.build(None)
    weights.log_weights.set_weights([np.log([[8.0], [2.0], [1.0]])])  # <1 min, <1 h, more
    movies = tf.constant([0, 1, 2], tf.int64)
    taste = (tower.user_embedding(tf.constant([0], tf.int64)).numpy()[0]
             + tower.history_embedding(movies).numpy().mean(axis=0))
    session = tower.session_embedding(movies).numpy()

    def retrieval(time, left_out=None):
        return _vectors(tower, [0], [time], None if left_out is None else [left_out])[0][0]

    # 30 min after movie 1 and 29.5 min after movie 2; movie 0 is beyond the window of 2.
    np.testing.assert_allclose(retrieval(87_400 + 1_800), taste + (session[1] + session[2]) / 2,
                               rtol=1e-5)
    # Training at movie 2's own time: the target is left out of the taste term, and only
    # earlier ratings enter the session term (movie 0 a day before, movie 1 30 s before).
    taste_without_2 = taste - (tower.history_embedding(movies).numpy()[2]
                               - tower.history_embedding(movies).numpy()[:2].mean(axis=0)) / 3
    np.testing.assert_allclose(retrieval(87_430, left_out=2),
                               taste_without_2 + (session[0] + 8 * session[1]) / 9, rtol=1e-5)
    # Ratings made at or after the request time are not in the session term.
    np.testing.assert_allclose(retrieval(1_030), taste + session[0], rtol=1e-5)
    np.testing.assert_allclose(retrieval(87_400), taste + session[0], rtol=1e-5)
    np.testing.assert_allclose(retrieval(1_000), taste, rtol=1e-5)
    # 90 days later: the window holds the 2 latest ratings, all in the oldest bucket.
    np.testing.assert_allclose(retrieval(87_430 + 90 * 86_400),
                               taste + (session[1] + session[2]) / 2, rtol=1e-5)
    # No request time (the end of time, as the user-id-only signatures ask): the window is
    # spread over the whole history (positions 0 and 2 of 3), weighed uniformly.
    np.testing.assert_allclose(retrieval(model_lib.LATEST_TIME),
                               taste + (session[0] + session[2]) / 2, rtol=1e-5)
    np.testing.assert_allclose(retrieval(np.iinfo(np.int64).max), retrieval(model_lib.LATEST_TIME))
    np.testing.assert_allclose(retrieval(np.iinfo(np.int64).min), taste, rtol=1e-5)


def test_rating_task_sees_no_session_term():
    histories = _histories([0, 0], [0, 1], [0, 100_000], [4.0, 2.0])
    batch = {features.USER_INDEX: tf.constant([0], tf.int64),
             features.MOVIE_INDEX: tf.constant([2], tf.int64),
             features.TIMESTAMP: tf.constant([10], tf.int64)}
    config = _config(embedding_dim=4, user_history=True,
                     history_time_boundaries=(60,))
    model = _build(config, user_histories=histories)
    user, movie, rating = model(batch)
    tower = model.user_tower
    taste = tower.user_embedding(batch[features.USER_INDEX]) + tf.reduce_mean(
        tower.history_embedding(tf.constant([0, 1], tf.int64)), axis=0)
    taste = tf.concat([taste, [[1.0]]], axis=1)
    assert not np.allclose(user, taste)
    np.testing.assert_allclose(rating, model.rating_head([taste, movie]), rtol=1e-5)


def test_rated_term_scales_the_earlier_history_by_the_ratings_for_the_rating_task_only():
    config = _config(embedding_dim=4, user_history=True, rating_history=True,
                     history_time_boundaries=(60,))
    # User 0 rated movie 0 (5 stars) at t=1000, movie 1 (1 star) at t=1030, movie 2 (3 stars)
    # at t=5000: the mean rating is 3.
    history = _histories([0, 0, 0], [0, 1, 2], [1_000, 1_030, 5_000], [5.0, 1.0, 3.0],
                         num_users=1)
    tower = model_lib.UserTower(num_users=1, num_movies=3, config=config, history=history)
    tower.rated_time_weights.log_weights.build(None)
    tower.rated_time_weights.log_weights.set_weights([np.log([[4.0], [1.0]])])  # <1 min, older
    movies = tf.constant([0, 1, 2], tf.int64)
    taste = (tower.user_embedding(tf.constant([0], tf.int64)).numpy()[0]
             + tower.history_embedding(movies).numpy().mean(axis=0))
    rated = tower.rated_embedding(movies).numpy() * np.array([[2.0], [-2.0], [0.0]])

    def vectors(time):
        return [vector[0] for vector in _vectors(tower, [0], [time])]

    # At t=1050: movie 0 rated 50 s before (weight 4), movie 1 20 s before (weight 4), movie 2
    # later (left out).
    retrieval, rating = vectors(1_050)
    np.testing.assert_allclose(rating, taste + (rated[0] + rated[1]) / 2, rtol=1e-5)
    np.testing.assert_allclose(retrieval - tower.session_embedding(movies).numpy()[:2]
                               .mean(axis=0), taste, rtol=1e-5)
    # At t=1085: movie 0 is 85 s old (weight 1), movie 1 55 s old (weight 4).
    np.testing.assert_allclose(vectors(1_085)[1], taste + (rated[0] + rated[1] * 4) / 5,
                               rtol=1e-5)
    # The served histories do not move the mean the deviations are taken from.
    tower.history.assign(_histories([0, 0, 0], [0, 1, 2], [1_000, 1_030, 5_000],
                                    [5.0, 5.0, 5.0], num_users=1))
    np.testing.assert_allclose(vectors(model_lib.LATEST_TIME)[1],
                               taste + tower.rated_embedding(movies).numpy().mean(axis=0) * 2,
                               rtol=1e-5)


def test_catalogue_negatives_are_an_exact_softmax_over_every_movie():
    config = _config(embedding_dim=8, retrieval_negatives="catalogue",
                     rating_weight=0.0)
    model = _build(config)
    batch = next(iter(_dataset()))
    user, _, _ = model(batch)
    catalogue = model.movie_tower({features.MOVIE_INDEX: tf.range(NUM_MOVIES, dtype=tf.int64),
                                   features.GENRES_MULTI_HOT: _catalogue_genres()})
    logits = tf.matmul(user, catalogue, transpose_b=True).numpy()
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -log_softmax[np.arange(64), batch[features.MOVIE_INDEX].numpy()].mean()
    assert float(model.compute_loss(batch)) == pytest.approx(expected, rel=1e-4)


def test_a_catalogue_above_the_softmax_size_is_sampled_with_the_full_softmax_as_expectation():
    config = _config(embedding_dim=4, retrieval_negatives="catalogue",
                     rating_weight=0.0, catalogue_softmax_size=10)
    model = _build(config)
    assert model.sample_catalogue
    batch = next(iter(_dataset()))
    # Equal scores everywhere: the sampled softmax then equals the exact one, log(30).
    model(batch)  # builds the layers
    model.user_tower.user_embedding.set_weights([np.zeros((NUM_USERS + 1, 4), "float32")])
    assert float(model.compute_loss(batch)) == pytest.approx(math.log(NUM_MOVIES), rel=1e-5)
    # The rated movie is never among its own negatives.
    user, movie, _ = model(batch)
    losses = [float(model._sampled_retrieval_loss(user, movie, batch[features.MOVIE_INDEX]))
              for _ in range(5)]
    assert all(loss == pytest.approx(math.log(NUM_MOVIES), rel=1e-5) for loss in losses)
    with pytest.raises(ValueError, match="exclude_rated_negatives needs a catalogue"):
        _build(_config(retrieval_negatives="catalogue", user_history=True,
                       exclude_rated_negatives=True, catalogue_softmax_size=10),
 user_histories=_histories([0], [1], [1]))


def test_excluding_rated_negatives_masks_the_users_other_movies_only():
    config = _config(embedding_dim=4, retrieval_negatives="catalogue",
                     exclude_rated_negatives=True, user_history=True,
                     rating_weight=0.0)
    histories = _histories([0, 0, 0], [0, 1, 2], [1, 2, 3], [5.0, 4.0, 3.0])  # user 0: 0-2
    model = _build(config, user_histories=histories)
    batch = {features.USER_INDEX: tf.constant([0, 1], tf.int64),
             features.MOVIE_INDEX: tf.constant([1, 1], tf.int64),
             features.TIMESTAMP: tf.constant([9, 9], tf.int64),
             features.RATING_LABEL: tf.constant([4.0, 4.0])}
    user, _, _ = model(batch)
    catalogue = model.movie_tower({features.MOVIE_INDEX: tf.range(NUM_MOVIES, dtype=tf.int64),
                                   features.GENRES_MULTI_HOT: _catalogue_genres()})
    logits = tf.matmul(user, catalogue, transpose_b=True).numpy()
    kept = [np.delete(logits[0], [0, 2]), logits[1]]  # user 0's other rated movies go
    target = [0, 1]  # movie 1's position among the kept logits
    expected = np.mean([np.log(np.exp(row).sum()) - row[t]
                        for row, t in zip(kept, target, strict=True)])
    assert float(model.compute_loss(batch)) == pytest.approx(expected, rel=1e-4)


def test_retrieval_negatives_are_checked():
    with pytest.raises(ValueError, match="'everything'"):
        _build(_config(retrieval_negatives="everything"))
    with pytest.raises(ValueError, match="exclude_rated_negatives needs"):
        _build(_config(exclude_rated_negatives=True))


def test_rating_dropout_is_active_in_training_only():
    config = _config(embedding_dim=8, rating_dropout=0.5)
    head = model_lib.build_rating_head(config)
    user, movie = tf.ones((4, 9)), tf.ones((4, 9))
    assert np.allclose(head([user, movie]), head([user, movie]))
    assert not np.allclose(head([user, movie], training=True), head([user, movie]))


def test_demographic_embeddings_add_to_the_user_vector():
    config = _config(embedding_dim=4, user_demographics=True)
    table = np.array([[1, 3, 4], [0, 0, 0], [2, 7, 22]])  # the last row: all unknown
    model = _build(config, num_users=2, num_movies=3, user_demographics=table)
    tower = model.user_tower
    users = tf.constant([0, 2], dtype=tf.int64)
    expected = tower.user_embedding(users).numpy() + sum(
        embedding(tf.constant(table[[0, 2], column])).numpy()
        for column, embedding in enumerate(tower.demographic_embeddings))
    np.testing.assert_allclose(_vectors(tower, [0, 2], [1, 1])[0], expected, rtol=1e-5)
    plain = _build(config, num_users=2, num_movies=3)  # a dataset without demographics
    assert plain.user_tower.demographics is None


def test_learnt_time_weights_report_each_timed_term_at_its_bucket_boundaries():
    history = _histories([0], [0], [10], [4.0], num_users=0)
    config = _config(embedding_dim=4, user_history=True, rating_history=True,
                     history_time_boundaries=(60,))
    tower = model_lib.UserTower(num_users=0, num_movies=1, config=config, history=history)
    tower.rated_time_weights.log_weights.build(None)
    tower.rated_time_weights.log_weights.set_weights([np.log([[4.0], [1.0]])])
    weights = tower.learnt_time_weights()
    assert list(weights) == ["session", "rated"]
    np.testing.assert_allclose(weights["session"], [1.0, 1.0])  # initialised uniform
    np.testing.assert_allclose(weights["rated"], [4.0, 1.0], rtol=1e-6)
    untimed = _config(embedding_dim=4, user_history=True)
    assert model_lib.UserTower(0, 1, untimed, history).learnt_time_weights() == {}


def test_weighted_sum_is_the_same_as_a_matrix_product_and_as_a_gather(monkeypatch):
    embedding = tf.keras.layers.Embedding(7, 3)
    rows = tf.constant([[0, 5, 5], [6, 2, 0]], tf.int64)  # a repeated row adds up
    weights = tf.Variable([[0.5, 1.0, 2.0], [0.0, 3.0, -1.0]])
    results = []
    for max_rows in (7, 6):  # a product with a dense weight matrix; a gather (7 > 6)
        monkeypatch.setattr(model_lib, "DENSE_SUM_MAX_ROWS", max_rows)
        with tf.GradientTape() as tape:
            total = model_lib.weighted_sum(embedding, rows, weights)
            loss = tf.reduce_sum(total * tf.constant([[1.0, -2.0, 3.0]]))
        table_gradient, weights_gradient = tape.gradient(loss, [embedding.embeddings, weights])
        results.append((total, tf.convert_to_tensor(table_gradient), weights_gradient))
    table = embedding.embeddings.numpy()
    expected = np.stack([0.5 * table[0] + 3.0 * table[5], 3.0 * table[2] - table[0]])
    for total, table_gradient, weights_gradient in results:
        np.testing.assert_allclose(total, expected, rtol=1e-6)
        np.testing.assert_allclose(table_gradient, results[0][1], rtol=1e-6)
        np.testing.assert_allclose(weights_gradient, results[0][2], rtol=1e-6)
