import json

import numpy as np

from benchmarks.quality import (
    PIPELINE_ROW,
    PROTOCOL_TABLE_MODELS,
    USER_ID_ONLY_ROW,
    WITH_RECENT_ROW,
    earlier_eval_ratings,
    peer_models,
    protocols_table,
)
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


def _write(path, result):
    path.write_text(json.dumps(result))


def test_the_protocols_table_shows_each_measured_protocol_with_its_commit(tmp_path):
    _write(tmp_path / "quality.json", {"measured": "2026-12-01", "commit": "abc1234", "rows": [
        {"model": "this pipeline (its Evaluator)", "top_10_accuracy": 0.1, "top_100_accuracy": 0.5,
         "top_10_accuracy_unrated": 0.25, "rmse": 0.88871, "train_seconds": 50},
        {"model": "this pipeline (benchmark metric code)", "top_10_accuracy": 0.1,
         "train_seconds": 50},
        {"model": "SVD++ (surprise)", "rmse": 0.92, "train_seconds": 12}]})
    _write(tmp_path / "protocols.json", {"measured": "2026-12-02", "commit": "def5678", "summary": [
        {"model": "this pipeline (its Evaluator)", "folds": 5, "rmse": 0.8946, "rmse_std": 0.0041,
         "top_10_accuracy": 0.1042, "top_10_accuracy_std": 0.0026}]})

    lines = protocols_table(str(tmp_path)).splitlines()

    assert lines[2:] == [
        "| random 80%/20% | this pipeline (its Evaluator) | 0.1000 | 0.5000 | 0.2500 | 0.8887 "
        "| 2026-12-01, abc1234 |",
        "| random 80%/20% | SVD++ (surprise) |  |  |  | 0.9200 | 2026-12-01, abc1234 |",
        "| canonical u1-u5, mean (sd) | this pipeline (its Evaluator) | 0.1042 (0.0026) |  |  "
        "| 0.8946 (0.0041) | 2026-12-02, def5678 |"]


def test_the_protocols_table_says_how_to_fill_it_when_nothing_was_measured(tmp_path):
    assert "make bench-protocols" in protocols_table(str(tmp_path))


def test_the_protocols_table_names_models_that_the_benchmark_scores():
    scored = {PIPELINE_ROW, USER_ID_ONLY_ROW, WITH_RECENT_ROW, *peer_models()}
    assert set(PROTOCOL_TABLE_MODELS) <= scored
