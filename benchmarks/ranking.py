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

from components import evaluation_contract as contract
from components.trainer import config as config_lib

KS = contract.KS  # the pipeline Evaluator's


@dataclasses.dataclass
class Ratings:
    """Ratings as indices: users into `user_ids`, titles into `titles` (the whole catalogue)."""

    user_ids: np.ndarray
    titles: np.ndarray
    train_users: np.ndarray
    train_items: np.ndarray
    train_ratings: np.ndarray
    train_times: np.ndarray  # seconds since the epoch
    eval_users: np.ndarray
    eval_items: np.ndarray
    eval_ratings: np.ndarray
    eval_times: np.ndarray  # seconds since the epoch
    # The Trainer's rule for its validation slice of the training ratings (peers tune on it).
    validation_rule: str = config_lib.RANDOM_VALIDATION

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


def per_user(score_users: Callable[[np.ndarray], np.ndarray],
             data: Ratings) -> Callable[[np.ndarray], np.ndarray]:
    """The `score_examples` of a model that scores users alone: `score_users(user_indices) ->
    [len, titles]`, each distinct user scored once."""
    def score_examples(rows: np.ndarray) -> np.ndarray:
        users, inverse = np.unique(data.eval_users[rows], return_inverse=True)
        return np.asarray(score_users(users))[inverse]

    return score_examples


def top_k_accuracy(score_examples: Callable[[np.ndarray], np.ndarray], data: Ratings,
                   batch_size: int = 4096) -> dict[str, float]:
    """`score_examples(eval_rows) -> [len, titles]`: the scores each eval rating's request
    gets (its user's, and for models that use it its time's); returns the averaged hit rates."""
    rated = data.rated()
    sums = {f"top_{k}_accuracy{s}": 0.0 for s in ("", "_unrated") for k in KS}
    by_user = np.argsort(data.eval_users, kind="stable")  # few distinct users per batch
    for start in range(0, len(by_user), batch_size):
        rows = by_user[start:start + batch_size]
        scores = np.asarray(score_examples(rows), dtype=np.float64)
        positions, items = np.arange(len(rows)), data.eval_items[rows]
        held_out = scores[positions, items][:, None]
        greater, equal = scores > held_out, scores == held_out
        equal[positions, items] = False
        unrated = ~rated[data.eval_users[rows]]
        for k in KS:
            sums[f"top_{k}_accuracy"] += _hit_probability(
                greater.sum(1), equal.sum(1), k).sum()
            sums[f"top_{k}_accuracy_unrated"] += _hit_probability(
                (greater & unrated).sum(1), (equal & unrated).sum(1), k).sum()
    return {name: total / len(data.eval_users) for name, total in sums.items()}


def rmse(predictions: np.ndarray, data: Ratings) -> float:
    return float(np.sqrt(np.mean((np.asarray(predictions) - data.eval_ratings) ** 2)))
