import numpy as np
import pytest

from benchmarks.ranking import Ratings, per_user, rmse, top_k_accuracy


def _data(eval_items, train=((0, 3),), eval_users=None):
    users, items = zip(*train, strict=True)
    return Ratings(
        user_ids=np.array([b"u0", b"u1"]), titles=np.array([b"a", b"b", b"c", b"d"]),
        train_users=np.array(users), train_items=np.array(items),
        train_ratings=np.full(len(users), 4.0), train_times=np.zeros(len(users), dtype=int),
        eval_users=np.array(eval_users or [0] * len(eval_items)),
        eval_items=np.array(eval_items), eval_ratings=np.array([3.0, 5.0][:len(eval_items)]),
        eval_times=np.arange(len(eval_items)) * 100)


def test_rank_is_over_the_whole_catalogue_and_unrated_skips_training_titles():
    scores = np.array([[0.1, 0.5, 0.2, 0.9]])  # title d (rated in training) scores highest
    data = _data([1])
    metrics = top_k_accuracy(per_user(lambda users: scores[users], data), data)
    assert metrics["top_1_accuracy"] == 0.0 and metrics["top_5_accuracy"] == 1.0
    assert metrics["top_1_accuracy_unrated"] == 1.0


def test_ties_count_as_random_order_not_best_case():
    flat = np.array([[1.0, 1.0, 1.0, 1.0]])
    data = _data([0], train=((0, 0),))
    metrics = top_k_accuracy(per_user(lambda users: flat[users], data), data)
    assert metrics["top_1_accuracy"] == pytest.approx(0.25)
    assert metrics["top_1_accuracy_unrated"] == pytest.approx(0.25)  # 3 unrated rivals + itself


def test_each_eval_rating_gets_its_own_scores():
    data = _data([1, 2, 0], eval_users=[1, 0, 1])
    # Title 1 tops the first request; title 0 is last for the third.
    by_time = {0: [0.0, 0.9, 0.1, 0.2], 100: [0.0, 0.1, 0.9, 0.2], 200: [0.0, 0.5, 0.6, 0.7]}
    metrics = top_k_accuracy(lambda rows: np.array([by_time[t] for t in data.eval_times[rows]]),
                             data)
    assert metrics["top_1_accuracy"] == pytest.approx(2 / 3)
    assert metrics["top_5_accuracy"] == 1.0


def test_rmse():
    assert rmse(np.array([4.0, 4.0]), _data([0, 1])) == pytest.approx(np.sqrt((1 + 1) / 2))
