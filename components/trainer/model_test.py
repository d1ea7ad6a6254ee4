import numpy as np
import pytest
import tensorflow as tf

from components import features
from components.trainer import model as model_lib

NUM_USERS, NUM_MOVIES = 20, 30


def _dataset(seed=0, size=600):
    rng = np.random.default_rng(seed)
    users = rng.integers(NUM_USERS, size=size)
    # Each user prefers movies of its parity; the rating follows the same rule.
    movies = (rng.integers(NUM_MOVIES // 2, size=size) * 2 + users % 2) % NUM_MOVIES
    genres = np.zeros((size, features.NUM_GENRES), dtype="float32")
    genres[np.arange(size), movies % 3] = 1.0
    ratings = np.where(movies % 2 == users % 2, 4.5, 1.5).astype("float32")
    return tf.data.Dataset.from_tensor_slices({
        features.USER_INDEX: users.astype("int64"), features.MOVIE_INDEX: movies.astype("int64"),
        features.GENRES_MULTI_HOT: genres, features.RATING_LABEL: ratings}).batch(64)


def test_towers_share_embedding_size_and_rating_is_a_scalar_per_example():
    config = model_lib.ModelConfig(embedding_dim=8)
    model = model_lib.build_model(NUM_USERS, NUM_MOVIES, config)
    batch = next(iter(_dataset()))
    user, movie, rating = model(batch)
    # The towers append a bias slot to the embedding: a constant 1 for users, a bias for movies.
    assert user.shape == (64, 9) and movie.shape == (64, 9) and rating.shape == (64,)
    assert set(user[:, -1].numpy()) == {1.0}


def test_joint_training_learns_both_tasks():
    config = model_lib.ModelConfig(embedding_dim=8, optimizer="adam", learning_rate=0.05,
                                   epochs=1)
    model = model_lib.build_model(NUM_USERS, NUM_MOVIES, config)
    before = model.evaluate(_dataset(1), return_dict=True, verbose=0)
    model.fit(_dataset(), epochs=15, verbose=0)
    after = model.evaluate(_dataset(1), return_dict=True, verbose=0)
    assert after["rmse"] < 0.5 * before["rmse"]
    assert after["loss"] < before["loss"]


def test_loss_weights_scale_each_task():
    batch = next(iter(_dataset()))

    def loss(retrieval_weight, rating_weight):
        config = model_lib.ModelConfig(embedding_dim=8, retrieval_weight=retrieval_weight,
                                       rating_weight=rating_weight)
        return float(model_lib.build_model(NUM_USERS, NUM_MOVIES, config).compute_loss(batch))

    retrieval_only, rating_only, both = loss(1.0, 0.0), loss(0.0, 1.0), loss(1.0, 1.0)
    assert retrieval_only > 0 and rating_only > 0
    assert both == pytest.approx(retrieval_only + rating_only, rel=1e-4)
    assert loss(2.0, 0.0) == pytest.approx(2 * retrieval_only, rel=1e-4)


def test_config_rejects_unknown_hyperparameters_and_optimizers():
    with pytest.raises(ValueError, match="embeding_dim"):
        model_lib.ModelConfig.from_custom_config({"model": {"embeding_dim": 3}})
    config = model_lib.ModelConfig.from_custom_config(
        {"model": {"rating_hidden_units": [8], "optimizer": "sgd"},
         "ai_platform_enable_vertex": True})
    assert config.rating_hidden_units == (8,)
    with pytest.raises(ValueError, match="'sgd'"):
        model_lib.build_model(NUM_USERS, NUM_MOVIES, config)


def test_user_history_term_leaves_the_training_target_out():
    config = model_lib.ModelConfig(embedding_dim=4, user_history=True)
    history = model_lib.UserHistories([[0, 1], [], [2]], [[10, 20], [], [30]],
                                      [[4.0, 3.0], [], [5.0]])
    tower = model_lib.UserTower(num_users=2, num_movies=3, config=config, history=history)
    users = tf.constant([0, 1], dtype=tf.int64)
    serving = tower({features.USER_INDEX: users}).numpy()
    training = tower({features.USER_INDEX: users,
                      features.MOVIE_INDEX: tf.constant([0, 2], dtype=tf.int64)}).numpy()
    own = tower.user_embedding(users).numpy()
    titles = tower.history_embedding(tf.constant([0, 1], dtype=tf.int64)).numpy()
    np.testing.assert_allclose(serving[0, :4], own[0] + titles.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(training[0, :4], own[0] + titles[1], rtol=1e-5)
    np.testing.assert_allclose(serving[1, :4], own[1], rtol=1e-5)  # no history: own only
    assert serving[0, 4] == training[0, 4] == 1.0


def test_user_history_needs_the_histories():
    with pytest.raises(ValueError, match="histories"):
        model_lib.build_model(NUM_USERS, NUM_MOVIES, model_lib.ModelConfig(user_history=True))
    with pytest.raises(ValueError, match="history_time_boundaries needs user_history"):
        model_lib.build_model(NUM_USERS, NUM_MOVIES,
                              model_lib.ModelConfig(history_time_boundaries=(60,)))
    with pytest.raises(ValueError, match="rating_history needs user_history"):
        model_lib.build_model(NUM_USERS, NUM_MOVIES,
                              model_lib.ModelConfig(rating_history=True))
    with pytest.raises(ValueError, match="one time and one rating per movie"):
        model_lib.UserHistories([[1, 2]], [[5]], [[3.0, 4.0]])
    with pytest.raises(ValueError, match="one time and one rating per movie"):
        model_lib.UserHistories([[1, 2]], [[5, 6]], [[3.0]])


def test_session_term_weighs_the_earlier_history_by_time_to_the_request():
    config = model_lib.ModelConfig(embedding_dim=4, user_history=True,
                                   history_time_boundaries=(60, 3_600))
    # User 0 rated movie 0 at t=1000 and movies 1, 2 a day later.
    history = model_lib.UserHistories([[0, 1, 2], []], [[1_000, 87_400, 87_430], []],
                                      [[1.0, 2.0, 3.0], []])
    tower = model_lib.UserTower(num_users=1, num_movies=3, config=config, history=history)
    tower.history_time_weight.build(None)
    tower.history_time_weight.set_weights([np.log([[8.0], [2.0], [1.0]])])  # <1 min, <1 h, more
    movies = tf.constant([0, 1, 2], tf.int64)
    taste = tower.history_embedding(movies).numpy()
    session = tower.session_embedding(movies).numpy()
    own = tower.user_embedding(tf.constant([0], tf.int64)).numpy()[0]

    def vector(**inputs):
        inputs = {name: tf.constant(value, tf.int64) for name, value in inputs.items()}
        return tower(inputs).numpy()[0, :4]

    later = vector(user_index=[0], timestamp=[87_400 + 1_800])  # 30 min and 29.5 min after
    np.testing.assert_allclose(
        later, own + taste.mean(axis=0) + (session[0] + 2 * session[1] + 2 * session[2]) / 5,
        rtol=1e-5)
    training = vector(user_index=[0], timestamp=[87_430], movie_index=[2])  # target left out
    np.testing.assert_allclose(
        training, own + taste[:2].mean(axis=0) + (session[0] + 8 * session[1]) / 9, rtol=1e-5)
    # Ratings made at or after the request time are not in the session term.
    np.testing.assert_allclose(vector(user_index=[0], timestamp=[1_030]),
                               own + taste.mean(axis=0) + session[0], rtol=1e-5)
    np.testing.assert_allclose(vector(user_index=[0], timestamp=[87_400]),
                               own + taste.mean(axis=0) + session[0], rtol=1e-5)
    np.testing.assert_allclose(vector(user_index=[0], timestamp=[1_000]),
                               own + taste.mean(axis=0), rtol=1e-5)
    no_request_time = vector(user_index=[0])
    np.testing.assert_allclose(no_request_time,
                               own + taste.mean(axis=0) + session.mean(axis=0), rtol=1e-5)


def test_rating_task_sees_no_session_term():
    histories = model_lib.UserHistories([[0, 1]] + [[]] * NUM_USERS,
                                        [[0, 100_000]] + [[]] * NUM_USERS,
                                        [[4.0, 2.0]] + [[]] * NUM_USERS)
    batch = {features.USER_INDEX: tf.constant([0], tf.int64),
             features.MOVIE_INDEX: tf.constant([2], tf.int64),
             features.GENRES_MULTI_HOT: tf.constant(_catalogue_genres()[[2]]),
             features.TIMESTAMP: tf.constant([10], tf.int64)}
    config = model_lib.ModelConfig(embedding_dim=4, user_history=True,
                                   history_time_boundaries=(60,))
    model = model_lib.build_model(NUM_USERS, NUM_MOVIES, config, user_histories=histories)
    user, movie, rating = model(batch)
    tower = model.user_tower
    taste = tower.user_embedding(batch[features.USER_INDEX]) + tf.reduce_mean(
        tower.history_embedding(tf.constant([0, 1], tf.int64)), axis=0)
    taste = tf.concat([taste, [[1.0]]], axis=1)
    assert not np.allclose(user, taste)
    np.testing.assert_allclose(rating, model.rating_head([taste, movie]), rtol=1e-5)


def test_rated_term_scales_the_earlier_history_by_the_ratings_for_the_rating_task_only():
    config = model_lib.ModelConfig(embedding_dim=4, user_history=True, rating_history=True,
                                   history_time_boundaries=(60,))
    # User 0 rated movie 0 (5 stars) at t=1000, movie 1 (1 star) at t=1030, movie 2 (3 stars)
    # at t=5000: the mean rating is 3.
    history = model_lib.UserHistories([[0, 1, 2], []], [[1_000, 1_030, 5_000], []],
                                      [[5.0, 1.0, 3.0], []])
    tower = model_lib.UserTower(num_users=1, num_movies=3, config=config, history=history)
    tower.rated_time_weight.build(None)
    tower.rated_time_weight.set_weights([np.log([[4.0], [1.0]])])  # <1 min, older
    movies = tf.constant([0, 1, 2], tf.int64)
    taste = (tower.user_embedding(tf.constant([0], tf.int64)).numpy()[0]
             + tower.history_embedding(movies).numpy().mean(axis=0))
    rated = tower.rated_embedding(movies).numpy() * np.array([[2.0], [-2.0], [0.0]])

    def vectors(**inputs):
        inputs = {name: tf.constant(value, tf.int64) for name, value in inputs.items()}
        return [vector.numpy()[0, :4] for vector in tower.vectors(inputs)]

    # At t=1050: movie 0 rated 50 s before (weight 4), movie 1 20 s before (weight 4), movie 2
    # later (left out).
    retrieval, rating = vectors(user_index=[0], timestamp=[1_050])
    np.testing.assert_allclose(rating, taste + (rated[0] + rated[1]) / 2, rtol=1e-5)
    np.testing.assert_allclose(retrieval[:4] - tower.session_embedding(movies).numpy()[:2]
                               .mean(axis=0), taste, rtol=1e-5)
    # At t=1085: movie 0 is 85 s old (weight 1), movie 1 55 s old (weight 4).
    np.testing.assert_allclose(vectors(user_index=[0], timestamp=[1_085])[1],
                               taste + (rated[0] + rated[1] * 4) / 5, rtol=1e-5)
    # No request time: uniform over the whole history.
    np.testing.assert_allclose(vectors(user_index=[0])[1], taste + rated.mean(axis=0),
                               rtol=1e-5)
    # The served histories do not move the mean the deviations are taken from.
    tower.set_history(model_lib.UserHistories([[0, 1, 2], []], [[1_000, 1_030, 5_000], []],
                                              [[5.0, 5.0, 5.0], []]))
    np.testing.assert_allclose(vectors(user_index=[0])[1],
                               taste + (rated[0] + tower.rated_embedding(movies).numpy()[1:]
                                        .sum(axis=0) * 2) / 3, rtol=1e-5)


def _catalogue_genres():
    genres = np.zeros((NUM_MOVIES, features.NUM_GENRES), dtype="float32")
    genres[np.arange(NUM_MOVIES), np.arange(NUM_MOVIES) % 3] = 1.0
    return genres


def test_catalogue_negatives_are_an_exact_softmax_over_every_movie():
    config = model_lib.ModelConfig(embedding_dim=8, retrieval_negatives="catalogue",
                                   rating_weight=0.0)
    model = model_lib.build_model(NUM_USERS, NUM_MOVIES, config,
                                  catalogue_genres=_catalogue_genres())
    batch = next(iter(_dataset()))
    user, _, _ = model(batch)
    catalogue = model.movie_tower({features.MOVIE_INDEX: tf.range(NUM_MOVIES, dtype=tf.int64),
                                   features.GENRES_MULTI_HOT: _catalogue_genres()})
    logits = tf.matmul(user, catalogue, transpose_b=True).numpy()
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -log_softmax[np.arange(64), batch[features.MOVIE_INDEX].numpy()].mean()
    assert float(model.compute_loss(batch)) == pytest.approx(expected, rel=1e-4)


def test_excluding_rated_negatives_masks_the_users_other_movies_only():
    config = model_lib.ModelConfig(embedding_dim=4, retrieval_negatives="catalogue",
                                   exclude_rated_negatives=True, user_history=True,
                                   rating_weight=0.0)
    histories = model_lib.UserHistories([[0, 1, 2]] + [[]] * NUM_USERS,  # user 0: movies 0-2
                                        [[1, 2, 3]] + [[]] * NUM_USERS,
                                        [[5.0, 4.0, 3.0]] + [[]] * NUM_USERS)
    model = model_lib.build_model(NUM_USERS, NUM_MOVIES, config, user_histories=histories,
                                  catalogue_genres=_catalogue_genres())
    batch = {features.USER_INDEX: tf.constant([0, 1], tf.int64),
             features.MOVIE_INDEX: tf.constant([1, 1], tf.int64),
             features.GENRES_MULTI_HOT: tf.constant(_catalogue_genres()[[1, 1]]),
             features.RATING_LABEL: tf.constant([4.0, 4.0])}
    user, _, _ = model(batch)
    catalogue = model.movie_tower({features.MOVIE_INDEX: tf.range(NUM_MOVIES, dtype=tf.int64),
                                   features.GENRES_MULTI_HOT: _catalogue_genres()})
    logits = tf.matmul(user, catalogue, transpose_b=True).numpy()
    kept = [np.delete(logits[0], [0, 2]), logits[1]]  # user 0's other rated movies go
    target = [0, 1]  # movie 1's position among the kept logits
    expected = np.mean([np.log(np.exp(row).sum()) - row[t] for row, t in zip(kept, target)])
    assert float(model.compute_loss(batch)) == pytest.approx(expected, rel=1e-4)


def test_retrieval_negatives_are_checked():
    with pytest.raises(ValueError, match="'everything'"):
        model_lib.build_model(NUM_USERS, NUM_MOVIES,
                              model_lib.ModelConfig(retrieval_negatives="everything"))
    with pytest.raises(ValueError, match="catalogue's genres"):
        model_lib.build_model(NUM_USERS, NUM_MOVIES,
                              model_lib.ModelConfig(retrieval_negatives="catalogue"))
    with pytest.raises(ValueError, match="exclude_rated_negatives needs"):
        model_lib.build_model(NUM_USERS, NUM_MOVIES,
                              model_lib.ModelConfig(exclude_rated_negatives=True))


def test_rating_dropout_is_active_in_training_only():
    config = model_lib.ModelConfig(embedding_dim=8, rating_dropout=0.5)
    head = model_lib.build_rating_head(config)
    user, movie = tf.ones((4, 9)), tf.ones((4, 9))
    assert np.allclose(head([user, movie]), head([user, movie]))
    assert not np.allclose(head([user, movie], training=True), head([user, movie]))


def test_demographic_embeddings_add_to_the_user_vector():
    config = model_lib.ModelConfig(embedding_dim=4, user_demographics=True)
    table = np.array([[1, 3, 4], [0, 0, 0], [2, 7, 22]])  # the last row: all unknown
    model = model_lib.build_model(2, 3, config, user_demographics=table)
    tower = model.user_tower
    users = tf.constant([0, 2], dtype=tf.int64)
    expected = tower.user_embedding(users).numpy() + sum(
        embedding(tf.constant(table[[0, 2], column])).numpy()
        for column, embedding in enumerate(tower.demographic_embeddings))
    np.testing.assert_allclose(tower({features.USER_INDEX: users}).numpy()[:, :4], expected,
                               rtol=1e-5)
    plain = model_lib.build_model(2, 3, config)  # a dataset without demographics
    assert plain.user_tower.demographics is None


def test_learnt_time_weights_report_each_timed_term_at_its_bucket_boundaries():
    history = model_lib.UserHistories([[0]], [[10]], [[4.0]])
    config = model_lib.ModelConfig(embedding_dim=4, user_history=True, rating_history=True,
                                   history_time_boundaries=(60,))
    tower = model_lib.UserTower(num_users=0, num_movies=1, config=config, history=history)
    tower.rated_time_weight.build(None)
    tower.rated_time_weight.set_weights([np.log([[4.0], [1.0]])])
    weights = tower.learnt_time_weights()
    assert list(weights) == ["session", "rated"]
    np.testing.assert_allclose(weights["session"], [1.0, 1.0])  # initialised uniform
    np.testing.assert_allclose(weights["rated"], [4.0, 1.0], rtol=1e-6)
    untimed = model_lib.ModelConfig(embedding_dim=4, user_history=True)
    assert model_lib.UserTower(0, 1, untimed, history).learnt_time_weights() == {}
