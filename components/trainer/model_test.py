import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf

from components import features
from components.trainer import model as model_lib
from components.trainer.histories import UserHistories

NUM_USERS, NUM_MOVIES = 20, 30


def _config(**fields):
    """The adopted model, without dropout or L2 (so that the tests' arithmetic is exact), with
    the fields a test sets."""
    return dataclasses.replace(model_lib.ModelConfig(),
                               **{"rating_dropout": 0.0, "l2_regularization": 0.0, **fields})


def _catalogue_genres():
    genres = np.zeros((NUM_MOVIES, features.NUM_GENRES), dtype="float32")
    genres[np.arange(NUM_MOVIES), np.arange(NUM_MOVIES) % 3] = 1.0
    return genres


def _histories(users, movies, times, ratings=None, num_users=NUM_USERS):
    return UserHistories.from_ratings(np.array(users, "int64"), np.array(movies, "int64"),
                                      np.array(times, "int64"),
                                      np.array(ratings or [3.0] * len(users), "float32"),
                                      num_users)


def _build(config, histories=None, num_users=NUM_USERS, num_movies=NUM_MOVIES):
    """The model; without `histories`, only the OOV user has one (a rating), so the users of
    `_dataset` have none: their vectors are their own embeddings."""
    genres = _catalogue_genres()[:num_movies] if num_movies <= NUM_MOVIES else np.zeros(
        (num_movies, features.NUM_GENRES), "float32")
    return model_lib.build_model(num_users, num_movies, config, genres,
                                 histories or _histories([num_users], [0], [0],
                                                         num_users=num_users))


def _ratings(seed=0, size=600):
    rng = np.random.default_rng(seed)
    users = rng.integers(NUM_USERS, size=size)
    # Each user prefers movies of its parity; the rating follows the same rule.
    movies = (rng.integers(NUM_MOVIES // 2, size=size) * 2 + users % 2) % NUM_MOVIES
    ratings = np.where(movies % 2 == users % 2, 4.5, 1.5).astype("float32")
    return {features.USER_INDEX: users.astype("int64"),
            features.MOVIE_INDEX: movies.astype("int64"),
            features.TIMESTAMP: rng.integers(1_000, 2_000, size=size),
            features.RATING_LABEL: ratings}


def _dataset(seed=0, size=600):
    return tf.data.Dataset.from_tensor_slices(_ratings(seed, size)).batch(64)


def _users(values):
    return tf.constant(values, tf.int64)


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
    ratings = _ratings()
    histories = _histories(*(ratings[name] for name in (
        features.USER_INDEX, features.MOVIE_INDEX, features.TIMESTAMP)),
        ratings[features.RATING_LABEL].tolist())
    model = _build(_config(embedding_dim=8, learning_rate=0.05), histories)
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


def test_config_rejects_unknown_hyperparameters_and_bad_sizes():
    with pytest.raises(ValueError, match="embeding_dim"):
        model_lib.ModelConfig.from_custom_config({"model": {"embeding_dim": 3}})
    with pytest.raises(ValueError, match="optimizer"):  # a removed option is unknown too
        model_lib.ModelConfig.from_custom_config({"model": {"optimizer": "adagrad"}})
    config = model_lib.ModelConfig.from_custom_config(
        {"model": {"rating_hidden_units": [8]}, "ai_platform_enable_vertex": True})
    assert config.rating_hidden_units == (8,)
    with pytest.raises(ValueError, match="recent_history_size must be at least 1"):
        _build(_config(recent_history_size=0))


def test_taste_history_is_the_history_mean_without_the_training_target():
    history = _histories([0, 0, 2], [0, 1, 2], [10, 20, 30], num_users=2)
    taste = model_lib.UserTower(2, 3, _config(embedding_dim=4), history).taste_history
    serving = taste(_users([0, 1])).numpy()
    training = taste(_users([0, 1]), left_out_movie=_users([0, 2])).numpy()
    titles = taste.embedding(_users([0, 1])).numpy()
    np.testing.assert_allclose(serving[0], titles.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(training[0], titles[1], rtol=1e-5)
    np.testing.assert_allclose(serving[1], 0.0)  # no history, nothing added
    # The same user twice in a batch: each example leaves out its own target.
    both = taste(_users([0, 0]), left_out_movie=_users([0, 1])).numpy()
    np.testing.assert_allclose(both, [titles[1], titles[0]], rtol=1e-5)


def test_taste_history_of_a_long_history_averages_a_spread_bounded_sample():
    history = _histories([0] * 6, [0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6], num_users=1)
    tower = model_lib.UserTower(1, 6, _config(embedding_dim=4, taste_history_size=3), history)
    positions, valid = tower.history.spread(_users([0, 1]), 3)
    assert positions.numpy()[0].tolist() == [1, 3, 5] and valid.numpy()[0].all()
    assert not valid.numpy()[1].any()  # the OOV user has no history
    taste = tower.taste_history(_users([0])).numpy()[0]
    titles = tower.taste_history.embedding(_users([1, 3, 5])).numpy()
    np.testing.assert_allclose(taste, titles.mean(axis=0), rtol=1e-5)


def test_session_term_weighs_the_latest_earlier_ratings_by_time_to_the_request():
    config = _config(embedding_dim=4, history_time_boundaries=(60, 3_600),
                     recent_history_size=2)
    # User 0 rated movie 0 at t=1000 and movies 1, 2 a day later.
    history = _histories([0, 0, 0], [0, 1, 2], [1_000, 87_400, 87_430], num_users=1)
    tower = model_lib.UserTower(num_users=1, num_movies=3, config=config, histories=history)
    weights = tower.session_term.time_weights
    weights.log_weights.build(None)
    weights.log_weights.set_weights([np.log([[8.0], [2.0], [1.0]])])  # <1 min, <1 h, more
    movies = _users([0, 1, 2])
    _vectors(tower, [0], [1])  # builds the layers
    history_embeddings = tower.taste_history.embedding(movies).numpy()
    taste = tower.user_embedding(_users([0])).numpy()[0] + history_embeddings.mean(axis=0)
    session = tower.session_term.embedding(movies).numpy()

    def retrieval(time, left_out=None):
        return _vectors(tower, [0], [time], None if left_out is None else [left_out])[0][0]

    # 30 min after movie 1 and 29.5 min after movie 2; movie 0 is beyond the window of 2.
    np.testing.assert_allclose(retrieval(87_400 + 1_800), taste + (session[1] + session[2]) / 2,
                               rtol=1e-5)
    # Training at movie 2's own time: the target is left out of the taste term, and only
    # earlier ratings enter the session term (movie 0 a day before, movie 1 30 s before).
    taste_without_2 = taste - (history_embeddings[2] - history_embeddings[:2].mean(axis=0)) / 3
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


def test_each_task_reads_its_own_user_vector():
    histories = _histories([0, 0], [0, 1], [0, 100_000], [4.0, 2.0])
    batch = {features.USER_INDEX: _users([0]), features.MOVIE_INDEX: _users([2]),
             features.TIMESTAMP: _users([100_010])}
    model = _build(_config(embedding_dim=4), histories)
    user, movie, rating = model(batch)
    retrieval_vector, rating_vector = model.user_tower.vectors(_users([0]), _users([100_010]))
    assert not np.allclose(retrieval_vector, rating_vector)
    np.testing.assert_allclose(user, retrieval_vector, rtol=1e-6)
    np.testing.assert_allclose(rating, model.rating_head([rating_vector, movie]), rtol=1e-5)


def test_inputs_with_request_columns_are_asked_as_a_live_request_with_those_ratings():
    histories = _histories([0, 0], [0, 1], [0, 100_000], [4.0, 2.0])
    model = _build(_config(embedding_dim=4), histories)
    window = model_lib.RatingWindow(_users([[3, 4]]), _users([[100_002, 100_005]]),
                                    tf.constant([[5.0, 1.0]]), tf.constant([[True, False]]))
    batch = {features.USER_INDEX: _users([0]), features.MOVIE_INDEX: _users([2]),
             features.TIMESTAMP: _users([100_010]),
             **dict(zip(model_lib.REQUEST_COLUMNS, (window.movies, window.times, window.ratings,
                                                   window.valid), strict=True))}
    user, movie, rating = model(batch)
    retrieval_vector, rating_vector = model.user_tower.vectors(_users([0]), _users([100_010]),
                                                               request=window)
    np.testing.assert_allclose(user, retrieval_vector, rtol=1e-6)
    np.testing.assert_allclose(rating, model.rating_head([rating_vector, movie]), rtol=1e-5)
    stored_only, _, _ = model({name: batch[name] for name in (
        features.USER_INDEX, features.MOVIE_INDEX, features.TIMESTAMP)})
    assert not np.allclose(user, stored_only)


def test_a_request_rating_counts_once_and_padding_hides_none_of_the_request():
    # User 0 rated movies 0 and 1; user 1 only movie 2. A short history's padded slots read
    # the table's first rating (user 0's movie 0), marked invalid.
    histories = _histories([0, 0, 1], [0, 1, 2], [0, 100_000, 50], [4.0, 2.0, 5.0])
    tower = _build(_config(embedding_dim=4), histories).user_tower

    def vectors(user, movie, time, rating):
        window = model_lib.RatingWindow(_users([[movie]]), _users([[time]]),
                                        tf.constant([[rating]]), tf.constant([[True]]))
        return [vector.numpy() for vector in tower.vectors(_users([user]), _users([200_000]),
                                                           request=window)]

    stored_only = [[vector.numpy() for vector in tower.vectors(_users([user]),
                                                               _users([200_000]))]
                   for user in (0, 1)]
    # A rating the stored history already holds counts once.
    for got, expected in zip(vectors(0, 1, 100_000, 2.0), stored_only[0], strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    # Movie 0 is in user 1's padded slots, not in its history: the request's rating counts.
    for got, expected in zip(vectors(1, 0, 100, 1.0), stored_only[1], strict=True):
        assert not np.allclose(got, expected)


def test_rated_term_scales_the_earlier_history_by_the_ratings_for_the_rating_task_only():
    config = _config(embedding_dim=4, history_time_boundaries=(60,))
    # User 0 rated movie 0 (5 stars) at t=1000, movie 1 (1 star) at t=1030, movie 2 (3 stars)
    # at t=5000: the mean rating is 3.
    history = _histories([0, 0, 0], [0, 1, 2], [1_000, 1_030, 5_000], [5.0, 1.0, 3.0],
                         num_users=1)
    tower = model_lib.UserTower(num_users=1, num_movies=3, config=config, histories=history)
    tower.rated_term.time_weights.log_weights.build(None)
    tower.rated_term.time_weights.log_weights.set_weights([np.log([[4.0], [1.0]])])
    movies = _users([0, 1, 2])
    _vectors(tower, [0], [1])  # builds the layers
    taste = (tower.user_embedding(_users([0])).numpy()[0]
             + tower.taste_history.embedding(movies).numpy().mean(axis=0))
    rated = tower.rated_term.embedding(movies).numpy() * np.array([[2.0], [-2.0], [0.0]])

    def vectors(time):
        return [vector[0] for vector in _vectors(tower, [0], [time])]

    # At t=1050: movie 0 rated 50 s before (weight 4), movie 1 20 s before (weight 4), movie 2
    # later (left out).
    retrieval, rating = vectors(1_050)
    np.testing.assert_allclose(rating, taste + (rated[0] + rated[1]) / 2, rtol=1e-5)
    np.testing.assert_allclose(retrieval - tower.session_term.embedding(movies).numpy()[:2]
                               .mean(axis=0), taste, rtol=1e-5)
    # At t=1085: movie 0 is 85 s old (weight 1), movie 1 55 s old (weight 4).
    np.testing.assert_allclose(vectors(1_085)[1], taste + (rated[0] + rated[1] * 4) / 5,
                               rtol=1e-5)
    # The served histories do not move the mean the deviations are taken from.
    tower.history.assign(_histories([0, 0, 0], [0, 1, 2], [1_000, 1_030, 5_000],
                                    [5.0, 5.0, 5.0], num_users=1))
    np.testing.assert_allclose(
        vectors(model_lib.LATEST_TIME)[1],
        taste + tower.rated_term.embedding(movies).numpy().mean(axis=0) * 2, rtol=1e-5)


def test_retrieval_loss_is_an_exact_softmax_over_every_movie():
    model = _build(_config(embedding_dim=8, rating_weight=0.0))
    batch = next(iter(_dataset()))
    user, _, _ = model(batch)
    catalogue = model.movie_tower({features.MOVIE_INDEX: tf.range(NUM_MOVIES, dtype=tf.int64),
                                   features.GENRES_MULTI_HOT: _catalogue_genres()})
    logits = tf.matmul(user, catalogue, transpose_b=True).numpy()
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -log_softmax[np.arange(64), batch[features.MOVIE_INDEX].numpy()].mean()
    assert float(model.compute_loss(batch)) == pytest.approx(expected, rel=1e-4)


def test_a_catalogue_above_the_softmax_size_is_sampled_with_the_full_softmax_as_expectation():
    model = _build(_config(embedding_dim=4, rating_weight=0.0, catalogue_softmax_size=10))
    assert model.sample_catalogue
    batch = next(iter(_dataset()))
    # Equal scores everywhere (no histories, zero user embeddings): the sampled softmax then
    # equals the exact one, log(30).
    model(batch)  # builds the layers
    model.user_tower.user_embedding.set_weights([np.zeros((NUM_USERS + 1, 4), "float32")])
    assert float(model.compute_loss(batch)) == pytest.approx(math.log(NUM_MOVIES), rel=1e-5)
    # The rated movie is never among its own negatives.
    user, movie, _ = model(batch)
    losses = [float(model._sampled_retrieval_loss(user, movie, batch[features.MOVIE_INDEX]))
              for _ in range(5)]
    assert all(loss == pytest.approx(math.log(NUM_MOVIES), rel=1e-5) for loss in losses)


def test_validation_scores_a_sampled_catalogue_against_one_fixed_sample():
    model = _build(_config(embedding_dim=4, rating_weight=0.0, catalogue_softmax_size=10))
    batch = next(iter(_dataset()))
    user, movie, _ = model(batch)
    movie_index = batch[features.MOVIE_INDEX]
    training = {float(model._sampled_retrieval_loss(user, movie, movie_index))
                for _ in range(5)}
    validation = {float(model._sampled_retrieval_loss(user, movie, movie_index, training=False))
                  for _ in range(5)}
    assert len(training) > 1 and len(validation) == 1
    assert float(model.compute_loss(batch, training=False)) == pytest.approx(validation.pop())
    assert model.validation_sample.shape == (10,)
    assert len(set(model.validation_sample.numpy())) == 10


def test_the_evaluated_loss_is_the_mean_over_every_example_not_the_last_batch():
    model = _build(_config(embedding_dim=8))
    dataset = _dataset(size=600)  # batches of 64: nine full ones, then 24 examples
    model.fit(dataset, epochs=1, verbose=0)
    batches = list(dataset)
    losses = [float(model.compute_loss(batch, training=False)) for batch in batches]
    sizes = [len(batch[features.MOVIE_INDEX]) for batch in batches]
    assert losses[-1] != pytest.approx(np.average(losses, weights=sizes), rel=1e-4)
    for _ in range(2):  # each evaluation starts afresh
        evaluated = model.evaluate(dataset, verbose=0, return_dict=True)
        assert evaluated["loss"] == pytest.approx(np.average(losses, weights=sizes), rel=1e-5)


def test_rating_dropout_is_active_in_training_only():
    config = _config(embedding_dim=8, rating_dropout=0.5)
    head = model_lib.build_rating_head(config)
    user, movie = tf.ones((4, 9)), tf.ones((4, 9))
    assert np.allclose(head([user, movie]), head([user, movie]))
    assert not np.allclose(head([user, movie], training=True), head([user, movie]))


def test_learnt_time_weights_report_each_recent_term_at_its_bucket_boundaries():
    history = _histories([0], [0], [10], [4.0], num_users=0)
    tower = model_lib.UserTower(0, 1, _config(embedding_dim=4, history_time_boundaries=(60,)),
                                history)
    tower.rated_term.time_weights.log_weights.build(None)
    tower.rated_term.time_weights.log_weights.set_weights([np.log([[4.0], [1.0]])])
    weights = tower.learnt_time_weights()
    assert list(weights) == ["session", "rated"]
    np.testing.assert_allclose(weights["session"], [1.0, 1.0])  # initialised uniform
    np.testing.assert_allclose(weights["rated"], [4.0, 1.0], rtol=1e-6)
    untimed = model_lib.UserTower(0, 1, _config(embedding_dim=4, history_time_boundaries=()),
                                  history)
    assert untimed.learnt_time_weights() == {"session": [1.0], "rated": [1.0]}


def test_weighted_sum_is_the_same_as_a_matrix_product_and_as_a_gather(monkeypatch):
    embedding = tf.keras.layers.Embedding(7, 3)
    rows = tf.constant([[0, 5, 5], [6, 2, 0]], tf.int64)  # a repeated row adds up
    weights = tf.Variable([[0.5, 1.0, 2.0], [0.0, 3.0, -1.0]])
    results = []
    # A product with a dense weight matrix; a gather with a dense gradient; a gather.
    for sum_max_rows, update_max_rows in ((7, 7), (6, 7), (6, 6)):
        monkeypatch.setattr(model_lib, "DENSE_SUM_MAX_ROWS", sum_max_rows)
        monkeypatch.setattr(model_lib, "DENSE_UPDATE_MAX_ROWS", update_max_rows)
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


def test_weighted_sum_in_bfloat16_is_the_float32_sum_to_bfloat16s_precision(monkeypatch):
    monkeypatch.setattr(model_lib, "DENSE_SUM_MAX_ROWS", 4)  # float32: a gather at 7 rows
    embedding = tf.keras.layers.Embedding(7, 3)
    rows = tf.constant([[0, 5, 5], [6, 2, 0]], tf.int64)
    weights = tf.Variable([[0.5, 1.0, 2.0], [0.0, 3.0, -1.0]])
    results = []
    for in_bfloat16 in (False, True):
        with tf.GradientTape() as tape:
            total = model_lib.weighted_sum(embedding, rows, weights, in_bfloat16=in_bfloat16)
            loss = tf.reduce_sum(total * tf.constant([[1.0, -2.0, 3.0]]))
        table_gradient, weights_gradient = tape.gradient(loss, [embedding.embeddings, weights])
        results.append((total, tf.convert_to_tensor(table_gradient), weights_gradient))
    (total, table_gradient, weights_gradient), rounded = results
    assert all(tensor.dtype == tf.float32 for tensor in rounded)
    # bfloat16 keeps 8 significant bits: a relative error of at most 2^-8 per rounded factor.
    scale = tf.reduce_max(tf.abs(embedding.embeddings)).numpy() * 6
    np.testing.assert_allclose(rounded[0], total, atol=scale * 2**-7)
    np.testing.assert_allclose(rounded[1], table_gradient, atol=6 * 2**-7)
    np.testing.assert_allclose(rounded[2], weights_gradient, atol=scale * 2**-7)
    assert not np.array_equal(rounded[0], total)  # rounded, not the float32 path


@pytest.mark.parametrize("precision, num_movies, cpu_has_amx, expected", [
    ("auto", 3_706, True, True),  # ml-1m's catalogue on AMX
    ("auto", 3_706, False, False),
    ("auto", 1_682, True, False),  # ml-100k's: no gain measured
    ("auto", 59_047, True, False),  # ml-25m's: the sums are gathers
    ("float32", 3_706, True, False),
    ("bfloat16", 1_682, False, True),
])
def test_history_sums_are_in_bfloat16_where_asked_or_where_it_was_measured_faster(
        monkeypatch, precision, num_movies, cpu_has_amx, expected):
    monkeypatch.setattr(model_lib, "cpu_multiplies_bfloat16", lambda: cpu_has_amx)
    assert model_lib.bfloat16_history_sums(precision, num_movies) is expected


def test_an_unknown_history_sum_precision_is_refused_by_name():
    with pytest.raises(ValueError, match="history_sum_precision must be one of"):
        _build(_config(history_sum_precision="float16"))


def test_a_model_trained_with_bfloat16_sums_learns_as_the_float32_one_does():
    ratings = _ratings()
    histories = _histories(*(ratings[name] for name in (
        features.USER_INDEX, features.MOVIE_INDEX, features.TIMESTAMP)),
        ratings[features.RATING_LABEL].tolist())
    rmse = {}
    for precision in ("float32", "bfloat16"):
        model = _build(_config(embedding_dim=8, learning_rate=0.05,
                               history_sum_precision=precision), histories)
        assert model.user_tower.history_sums_in_bfloat16 is (precision == "bfloat16")
        before = model.evaluate(_dataset(1), return_dict=True, verbose=0)
        model.fit(_dataset(), epochs=15, verbose=0)
        rmse[precision] = model.evaluate(_dataset(1), return_dict=True, verbose=0)["rmse"]
        assert rmse[precision] < 0.5 * before["rmse"]
    assert rmse["bfloat16"] == pytest.approx(rmse["float32"], abs=0.05)


def _chunked_training_set(seed=0, size=3_000):
    """Ratings of heavy users, many made in the same minute, sorted as training reads them;
    their histories; and their user chunks."""
    from components.trainer import train

    rng = np.random.default_rng(seed)
    users = rng.integers(NUM_USERS, size=size)
    times = rng.integers(0, 400, size=size) * 60
    movies = rng.integers(NUM_MOVIES, size=size)
    ratings = rng.integers(1, 6, size=size).astype("float32")
    order = np.lexsort([ratings, movies, times, users])
    columns = {features.USER_INDEX: users[order], features.MOVIE_INDEX: movies[order],
               features.TIMESTAMP: times[order], features.RATING_LABEL: ratings[order]}
    histories = _histories(*(columns[name].tolist() for name in (
        features.USER_INDEX, features.MOVIE_INDEX, features.TIMESTAMP, features.RATING_LABEL)))
    return columns, histories, train.user_chunks(users[order], times[order], 8)


def _learnt_time_weights(tower, seed=1):
    """Unequal time-bucket weights, as training leaves them."""
    rng = np.random.default_rng(seed)
    for term in (tower.session_term, tower.rated_term):
        rows = term.time_weights.log_weights.input_dim
        term.time_weights.log_weights.set_weights([rng.normal(size=(rows, 1)).astype("float32")])


def test_user_chunks_give_each_training_example_the_vectors_it_has_alone():
    columns, histories, chunks = _chunked_training_set()
    assert not chunks.slots.all()  # some chunks are padded
    model = _build(_config(embedding_dim=8, recent_history_size=16, taste_history_size=32),
                   histories)
    tower = model.user_tower
    _vectors(tower, [0], [1])  # builds the layers
    _learnt_time_weights(tower)
    rows = chunks.examples
    chunked = tower.chunk_vectors(
        tf.constant(columns[features.USER_INDEX][rows[:, 0]]),
        tf.constant(columns[features.TIMESTAMP][rows]),
        tf.constant(columns[features.MOVIE_INDEX][rows]), tf.constant(chunks.slots))
    examples = rows[chunks.slots]
    alone = _vectors(tower, columns[features.USER_INDEX][examples],
                     columns[features.TIMESTAMP][examples],
                     left_out=columns[features.MOVIE_INDEX][examples])
    for chunk_vector, vector in zip(chunked, alone, strict=True):
        np.testing.assert_allclose(chunk_vector.numpy()[:, :-1], vector, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("softmax_size", [2_048, 10])
def test_a_batch_of_user_chunks_has_the_loss_of_its_examples_alone(softmax_size):
    from components.trainer import train

    columns, histories, chunks = _chunked_training_set()
    model = _build(_config(embedding_dim=8, recent_history_size=16,
                           catalogue_softmax_size=softmax_size), histories)
    batch = next(iter(train.shuffled_chunk_batches(columns, chunks, chunks_per_batch=32,
                                                   seed=0)))
    flat = {name: tf.boolean_mask(batch[name], batch[model_lib.CHUNK_SLOTS])
            for name in (features.MOVIE_INDEX, features.TIMESTAMP, features.RATING_LABEL)}
    slots = batch[model_lib.CHUNK_SLOTS]
    flat[features.USER_INDEX] = tf.boolean_mask(
        tf.broadcast_to(batch[features.USER_INDEX][:, None], tf.shape(slots)), slots)
    model(flat, training=True)  # builds the layers
    _learnt_time_weights(model.user_tower)
    # The sampled softmax draws a new sample each call: the same seed for both.
    tf.random.set_seed(7)
    chunked = float(model.compute_loss(batch, training=True))
    tf.random.set_seed(7)
    alone = float(model.compute_loss(flat, training=True))
    assert chunked == pytest.approx(alone, rel=1e-5)


def test_the_sampled_softmax_leaves_each_rated_title_out_of_its_negatives():
    model = _build(_config(embedding_dim=4, rating_weight=0.0, catalogue_softmax_size=10,
                           temperature=0.5))
    batch = next(iter(_dataset()))
    user, movie, _ = model(batch)
    movie_index = batch[features.MOVIE_INDEX].numpy()
    sample = model.validation_sample.numpy()
    candidates = model.movie_tower({
        features.MOVIE_INDEX: tf.constant(sample),
        features.GENRES_MULTI_HOT: tf.gather(model.vocabulary_genres, sample)}).numpy()
    scores = user.numpy() @ candidates.T / 0.5
    positive = (user.numpy() * movie.numpy()).sum(axis=1) / 0.5
    expected = []
    for row, rated in enumerate(movie_index):
        negatives = scores[row][sample != rated]
        logits = np.append(negatives + np.log((NUM_MOVIES - 1) / len(negatives)), positive[row])
        expected.append(np.log(np.exp(logits).sum()) - positive[row])
    assert (movie_index[:, None] == sample[None, :]).any(axis=1).any()  # some are sampled
    assert float(model._sampled_retrieval_loss(user, movie, batch[features.MOVIE_INDEX],
                                               training=False)) == pytest.approx(
        np.mean(expected), rel=1e-5)
