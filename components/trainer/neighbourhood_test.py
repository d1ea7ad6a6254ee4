"""The neighbourhood model against a plain transcription of Koren's kNN with baselines (as
scikit-surprise's BaselineOnly, pearson_baseline and KNNBaseline compute it), on tiny data."""

import numpy as np
import pytest
import tensorflow as tf

from components.trainer import histories as histories_lib
from components.trainer import model as model_lib
from components.trainer import neighbourhood

NUM_USERS, NUM_MOVIES = 12, 9


def _ratings(seed: int = 0):
    """(users, movies, times, stars): each user rates 3 to 8 distinct titles."""
    rng = np.random.default_rng(seed)
    rows = [(user, movie, 1_000 + 10 * position, float(rng.integers(1, 6)))
            for user in range(NUM_USERS)
            for position, movie in enumerate(rng.choice(NUM_MOVIES, rng.integers(3, 9),
                                                        replace=False))]
    return tuple(np.array(column) for column in zip(*rows, strict=True))


def _reference(users, movies, stars, k, shrinkage, user_reg=15.0, movie_reg=10.0, epochs=10):
    """(mean, user biases, movie biases, similarity dict, predict(u, i)) with loops."""
    mean = float(np.mean(stars))
    by_user, by_movie = {}, {}
    for u, i, r in zip(users, movies, stars, strict=True):
        by_user.setdefault(u, []).append((i, r))
        by_movie.setdefault(i, []).append((u, r))
    bu, bi = [0.0] * (NUM_USERS + 1), [0.0] * (NUM_MOVIES + 1)
    for _ in range(epochs):
        for i, rated in by_movie.items():
            bi[i] = sum(r - mean - bu[u] for u, r in rated) / (movie_reg + len(rated))
        for u, rated in by_user.items():
            bu[u] = sum(r - mean - bi[i] for i, r in rated) / (user_reg + len(rated))
    similarity = {}
    for i in range(NUM_MOVIES):
        for j in range(NUM_MOVIES):
            raters_i, raters_j = dict(by_movie.get(i, [])), dict(by_movie.get(j, []))
            common = set(raters_i) & set(raters_j)
            if i == j:
                similarity[i, j] = 1.0
                continue
            if not common:
                similarity[i, j] = 0.0
                continue
            ei = {u: raters_i[u] - mean - bu[u] - bi[i] for u in common}
            ej = {u: raters_j[u] - mean - bu[u] - bi[j] for u in common}
            denominator = np.sqrt(sum(ei[u] ** 2 for u in common)
                                  * sum(ej[u] ** 2 for u in common))
            correlation = sum(ei[u] * ej[u] for u in common) / denominator if denominator else 0
            n = len(common)
            similarity[i, j] = correlation * (n - 1) / (n - 1 + shrinkage)

    def predict(u, i):
        estimate = mean + bu[u] + bi[i]
        neighbours = sorted(((similarity[i, j], r - mean - bu[u] - bi[j])
                             for j, r in by_user.get(u, [])), reverse=True)[:k]
        positive = [(s, residual) for s, residual in neighbours if s > 0]
        if positive:
            estimate += sum(s * residual for s, residual in positive) / sum(
                s for s, _ in positive)
        return estimate

    return mean, np.array(bu), np.array(bi), similarity, predict


def _histories(users, movies, times, stars):
    return histories_lib.UserHistories.from_ratings(users, movies, times, stars, NUM_USERS)


def test_baselines_and_similarities_are_the_reference_ones():
    users, movies, times, stars = _ratings()
    mean, bu, bi, similarity, _ = _reference(users, movies, stars, k=3, shrinkage=2.0)
    fitted = neighbourhood.ItemNeighbourhood.fit(_histories(users, movies, times, stars),
                                                 NUM_MOVIES, size=3, history_size=16,
                                                 shrinkage=2.0, max_titles=NUM_MOVIES)
    assert fitted.mean.numpy() == pytest.approx(mean)
    np.testing.assert_allclose(fitted.user_bias.numpy(), bu, atol=1e-5)
    np.testing.assert_allclose(fitted.movie_bias.numpy(), bi, atol=1e-5)
    slots = fitted.slot_of_movie.numpy()
    table = fitted.similarity.numpy().astype(np.float64)
    for (i, j), expected in similarity.items():
        assert table[slots[i], slots[j]] == pytest.approx(expected, abs=2e-3), (i, j)


@pytest.mark.parametrize("size", [3, 8])  # 8: every rating, negative similarities too
def test_estimates_are_the_reference_ones_for_every_user_and_title(size):
    users, movies, times, stars = _ratings(1)
    *_, predict = _reference(users, movies, stars, k=size, shrinkage=2.0)
    histories = _histories(users, movies, times, stars)
    fitted = neighbourhood.ItemNeighbourhood.fit(histories, NUM_MOVIES, size=size,
                                                 history_size=16, shrinkage=2.0,
                                                 max_titles=NUM_MOVIES)
    pairs = np.array([(u, i) for u in range(NUM_USERS) for i in range(NUM_MOVIES)])
    estimates = fitted.rate(model_lib.HistoryTable(histories), tf.constant(pairs[:, 0]),
                            tf.constant(pairs[:, 1])).numpy()
    expected = [predict(u, i) for u, i in pairs]
    np.testing.assert_allclose(estimates, expected, atol=2e-3)
    assert np.ptp(estimates) > 1.0  # the estimates tell users and titles apart


def test_titles_beyond_max_titles_and_unknown_users_get_their_baseline():
    users, movies, times, stars = _ratings(2)
    histories = _histories(users, movies, times, stars)
    fitted = neighbourhood.ItemNeighbourhood.fit(histories, NUM_MOVIES, size=3,
                                                 history_size=16, shrinkage=2.0, max_titles=2)
    counts = np.bincount(movies, minlength=NUM_MOVIES)
    rated = np.flatnonzero(counts)
    least_rated = int(rated[np.argmin(counts[rated])])
    user = int(users[movies == least_rated][0])
    queries = tf.constant([user, NUM_USERS]), tf.constant([least_rated, 0])
    estimates = fitted.rate(model_lib.HistoryTable(histories), *queries).numpy()
    mean, bu, bi = (fitted.mean.numpy(), fitted.user_bias.numpy(), fitted.movie_bias.numpy())
    np.testing.assert_allclose(estimates, [mean + bu[user] + bi[least_rated], mean + bi[0]],
                               rtol=1e-6)
    assert fitted.similarity.shape == (3, 3)


def test_request_ratings_join_the_stored_ones_once_and_only_with_stars():
    """A user's ratings carried by the request rate as the same ratings stored do; a title the
    stored history already holds, or a rating of 0 stars, adds nothing."""
    users, movies, times, stars = _ratings(3)
    histories = _histories(users, movies, times, stars)
    fitted = neighbourhood.ItemNeighbourhood.fit(histories, NUM_MOVIES, size=4,
                                                 history_size=16, shrinkage=2.0,
                                                 max_titles=NUM_MOVIES)
    user = 5
    own = users == user
    full = fitted.rate(model_lib.HistoryTable(histories), tf.constant([user] * NUM_MOVIES),
                       tf.range(NUM_MOVIES, dtype=tf.int64)).numpy()
    moved = own & (np.cumsum(own) <= 2)  # two of the user's ratings leave the store
    stored = model_lib.HistoryTable(_histories(users[~moved], movies[~moved], times[~moved],
                                               stars[~moved]))
    kept_movie = int(movies[own & ~moved][0])
    request = model_lib.RatingWindow(
        tf.constant([[*movies[moved], kept_movie, 0]] * NUM_MOVIES, tf.int64),
        tf.zeros([NUM_MOVIES, 4], tf.int64),
        tf.constant([[*stars[moved], 1.0, 0.0]] * NUM_MOVIES, tf.float32),
        tf.constant([[True, True, True, True]] * NUM_MOVIES))
    with_request = fitted.rate(stored, tf.constant([user] * NUM_MOVIES),
                               tf.range(NUM_MOVIES, dtype=tf.int64), request).numpy()
    np.testing.assert_allclose(with_request, full, rtol=1e-6)
    without = fitted.rate(stored, tf.constant([user] * NUM_MOVIES),
                          tf.range(NUM_MOVIES, dtype=tf.int64)).numpy()
    assert not np.allclose(without, full)


def test_a_long_history_is_read_through_an_even_spread_of_it():
    users, movies, times, stars = _ratings(4)
    histories = _histories(users, movies, times, stars)
    wide = neighbourhood.ItemNeighbourhood.fit(histories, NUM_MOVIES, size=3, history_size=16,
                                               shrinkage=2.0, max_titles=NUM_MOVIES)
    narrow = neighbourhood.ItemNeighbourhood.fit(histories, NUM_MOVIES, size=3,
                                                 history_size=2, shrinkage=2.0,
                                                 max_titles=NUM_MOVIES)
    table = model_lib.HistoryTable(histories)
    user = int(np.argmax(np.bincount(users)))
    positions, valid = table.spread(tf.constant([user]), 2)
    read = histories_lib.UserHistories.from_ratings(
        np.full(2, user), table.movies_at(positions)[0].numpy(),
        np.arange(2), tf.gather(table.ratings, positions)[0].numpy(), NUM_USERS)
    assert valid.numpy().all()
    query = tf.constant([user] * NUM_MOVIES), tf.range(NUM_MOVIES, dtype=tf.int64)
    np.testing.assert_allclose(narrow.rate(table, *query),
                               wide.rate(model_lib.HistoryTable(read), *query), rtol=1e-6)
