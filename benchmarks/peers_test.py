import numpy as np

from benchmarks import peers
from benchmarks.ranking import Ratings
from components.trainer import config as config_lib


def test_recent_popularity_ranks_by_the_last_days_then_by_all_of_training():
    day = 86_400
    # Title 0: 60 ratings 200 days before the end; title 1: 20 in the last 5 days (the latest
    # 10 % of them, the validation slice under the time rule, included); title 2: 1, long ago.
    items = np.array([0] * 60 + [2] + [1] * 20)
    times = np.concatenate([np.full(60, 0), [1], 195 * day + np.arange(20) * 3_600])
    users = np.arange(len(items))
    data = Ratings(user_ids=np.array([str(u).encode() for u in users]),
                   titles=np.array([b"old hit", b"new hit", b"old flop"]),
                   train_users=users, train_items=items, train_ratings=np.full(len(items), 4.0),
                   train_times=times, eval_users=users[:1], eval_items=np.array([1]),
                   eval_ratings=np.array([4.0]), eval_times=np.array([200 * day]),
                   validation_rule=config_lib.TIME_VALIDATION)
    model = peers.recent_popularity(data)
    scores = model["score_users"](np.array([0, 1]))
    assert scores.shape == (2, 3)
    assert list(np.argsort(-scores[0])) == [1, 0, 2]
    assert model["params"]["days"] in (7.0, 14.0, 30.0, 60.0, 90.0)
