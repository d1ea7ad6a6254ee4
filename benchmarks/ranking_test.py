import numpy as np
import pytest

from benchmarks.ranking import Ratings, rmse, top_k_accuracy


def _data(eval_items, train=((0, 3),)):
    users, items = zip(*train)
    return Ratings(
        user_ids=np.array([b"u0"]), titles=np.array([b"a", b"b", b"c", b"d"]),
        train_users=np.array(users), train_items=np.array(items),
        train_ratings=np.full(len(users), 4.0),
        eval_users=np.zeros(len(eval_items), dtype=int), eval_items=np.array(eval_items),
        eval_ratings=np.array([3.0, 5.0][:len(eval_items)]))


def test_rank_is_over_the_whole_catalogue_and_unrated_skips_training_titles():
    scores = np.array([[0.1, 0.5, 0.2, 0.9]])  # title d (rated in training) scores highest
    metrics = top_k_accuracy(lambda users: scores[users], _data([1]))
    assert metrics["top_1_accuracy"] == 0.0 and metrics["top_5_accuracy"] == 1.0
    assert metrics["top_1_accuracy_unrated"] == 1.0


def test_ties_count_as_random_order_not_best_case():
    flat = np.array([[1.0, 1.0, 1.0, 1.0]])
    metrics = top_k_accuracy(lambda users: flat[users], _data([0], train=((0, 0),)))
    assert metrics["top_1_accuracy"] == pytest.approx(0.25)
    assert metrics["top_1_accuracy_unrated"] == pytest.approx(0.25)  # 3 unrated rivals + itself


def test_rmse():
    assert rmse(np.array([4.0, 4.0]), _data([0, 1])) == pytest.approx(np.sqrt((1 + 1) / 2))
