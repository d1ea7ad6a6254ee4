import numpy as np

from benchmarks.quality import earlier_eval_ratings
from benchmarks.ranking import Ratings


def test_each_request_knows_its_users_earlier_eval_ratings_only():
    eval_users = np.array([0, 1, 0, 0, 1, 0])
    eval_times = np.array([30, 5, 10, 30, 7, 20])
    data = Ratings(user_ids=np.array([b"u0", b"u1"]), titles=np.array([b"a"]),
                   train_users=np.array([0]), train_items=np.array([0]),
                   train_ratings=np.array([4.0]), train_times=np.array([0]),
                   eval_users=eval_users, eval_items=np.zeros(6, dtype=int),
                   eval_ratings=np.full(6, 3.0), eval_times=eval_times)
    earlier = earlier_eval_ratings(data, limit=10)
    assert [sorted(rows.tolist()) for rows in earlier] == [[2, 5], [], [], [2, 5], [1], [2]]
    assert [rows.tolist() for rows in earlier_eval_ratings(data, limit=1)][0] == [5]
