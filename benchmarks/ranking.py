"""The benchmark's one metric code, applied to every model's scores alike.

top-K accuracy (the TFRS tutorials' definition): the held-out title is among the user's K
best-scored titles of the whole catalogue; `_unrated` leaves out the titles the user rated in
training. Ties are broken at random in expectation (a model scoring many titles equally gets
the expected hit rate, not the best case). RMSE over the eval ratings.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

KS = (1, 5, 10, 50, 100)


@dataclasses.dataclass
class Ratings:
    """Ratings as indices: users into `user_ids`, titles into `titles` (the whole catalogue)."""

    user_ids: np.ndarray
    titles: np.ndarray
    train_users: np.ndarray
    train_items: np.ndarray
    train_ratings: np.ndarray
    eval_users: np.ndarray
    eval_items: np.ndarray
    eval_ratings: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.user_ids), len(self.titles)

    def rated(self) -> np.ndarray:
        """[users, titles] bool: rated in training."""
        mask = np.zeros(self.shape, dtype=bool)
        mask[self.train_users, self.train_items] = True
        return mask


def _hit_probability(greater: np.ndarray, equal: np.ndarray, k: int) -> np.ndarray:
    return np.clip((k - greater) / (equal + 1.0), 0.0, 1.0)


def top_k_accuracy(score_users: Callable[[np.ndarray], np.ndarray], data: Ratings,
                   batch_users: int = 256) -> dict[str, float]:
    """`score_users(user_indices) -> [len, titles]` scores; returns the averaged hit rates."""
    rated = data.rated()
    sums = {f"top_{k}_accuracy{s}": 0.0 for s in ("", "_unrated") for k in KS}
    order = np.argsort(data.eval_users, kind="stable")
    users, items = data.eval_users[order], data.eval_items[order]
    for start in range(0, data.shape[0], batch_users):
        block = np.arange(start, min(start + batch_users, data.shape[0]))
        rows = (users >= block[0]) & (users <= block[-1])
        if not rows.any():
            continue
        scores = np.asarray(score_users(block), dtype=np.float64)
        local = users[rows] - block[0]
        row_scores = scores[local]
        held_out = row_scores[np.arange(len(local)), items[rows]][:, None]
        greater, equal = row_scores > held_out, row_scores == held_out
        equal[np.arange(len(local)), items[rows]] = False
        unrated = ~rated[users[rows]]
        for k in KS:
            sums[f"top_{k}_accuracy"] += _hit_probability(
                greater.sum(1), equal.sum(1), k).sum()
            sums[f"top_{k}_accuracy_unrated"] += _hit_probability(
                (greater & unrated).sum(1), (equal & unrated).sum(1), k).sum()
    return {name: total / len(data.eval_users) for name, total in sums.items()}


def rmse(predictions: np.ndarray, data: Ratings) -> float:
    return float(np.sqrt(np.mean((np.asarray(predictions) - data.eval_ratings) ** 2)))
