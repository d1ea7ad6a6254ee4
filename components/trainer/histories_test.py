import numpy as np
import pytest

from components.trainer.histories import UserHistories


def _histories(users, movies, times, ratings, num_users=2):
    return UserHistories.from_ratings(np.array(users), np.array(movies), np.array(times),
                                      np.array(ratings, "float32"), num_users)


def test_ratings_are_grouped_by_user_in_time_order_with_the_oov_user_last():
    histories = _histories([1, 0, 1, 0], [5, 6, 7, 8], [30, 20, 10, 5], [1, 2, 3, 4])
    assert histories.num_users == 3 and histories.row_splits.tolist() == [0, 2, 4, 4]
    movies, times, ratings = histories.user(1)
    assert movies.tolist() == [7, 5] and times.tolist() == [10, 30]
    assert ratings.tolist() == [3.0, 1.0]
    assert histories.user_index_per_rating().tolist() == [0, 0, 1, 1]
    assert histories.mean_rating() == 2.5
    with pytest.raises(ValueError, match=r"User indices must lie in \[0, 2\]"):
        _histories([3], [1], [1], [1.0])


def test_merge_keeps_each_users_time_order():
    first = _histories([0, 0, 2], [1, 0, 2], [50, 40, 9], [1.0, 2.0, 4.0])
    merged = first.merged(_histories([0, 1], [3, 0], [45, 1], [5.0, 0.5]))
    assert merged.row_splits.tolist() == [0, 3, 4, 5]
    assert merged.movies.tolist() == [0, 3, 1, 0, 2]
    assert merged.times.tolist() == [40, 45, 50, 1, 9]
    assert merged.ratings.tolist() == [2.0, 5.0, 1.0, 0.5, 4.0]
    with pytest.raises(ValueError, match="Cannot merge histories of 3 and 4 user indices"):
        first.merged(_histories([0], [1], [1], [1.0], num_users=3))


def test_distinct_rows_map_dedupe_and_drop():
    histories = _histories([0, 0, 0, 1], [2, 1, 2, 0], [1, 2, 3, 4], [1, 1, 1, 1])
    row_splits, rows = histories.distinct_rows(np.array([-1, 5, 3]))
    assert row_splits.tolist() == [0, 2, 2, 2] and rows.tolist() == [3, 5]


def test_inconsistent_columns_are_rejected():
    with pytest.raises(ValueError, match="got 2 movies, 1 times, 2 ratings"):
        UserHistories(np.array([0, 2]), np.array([1, 2]), np.array([5]),
                      np.array([3.0, 4.0], "float32"))
    with pytest.raises(ValueError, match="row_splits must rise"):
        UserHistories(np.array([0, 3]), np.array([1, 2]), np.array([5, 6]),
                      np.array([3.0, 4.0], "float32"))
