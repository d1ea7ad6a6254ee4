"""The peer models of the quality benchmark, each trained on the pipeline's own train split.

Each returns a dict with `score_users` (user indices -> [n, titles] scores), or
`score_examples` (eval rating rows -> [n, titles] scores, for a model that uses the request
time), and/or `predict` (user and title indices -> ratings). Hyperparameters are picked on
the Trainer's own validation slice of the training split, never on the eval split.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from benchmarks.ranking import Ratings, per_user, top_k_accuracy
from components.trainer import catalogue, train
from pipeline import configs


def validation_split(data: Ratings) -> Ratings:
    """A Ratings whose eval part is the Trainer's validation slice of `data`'s training ratings
    (its rule and fraction), so that the peers and the model are tuned on the same ratings."""
    held_out = train.validation_mask(data.user_ids[data.train_users],
                                     data.titles[data.train_items], data.train_times,
                                     configs.MODEL.validation_fraction, data.validation_rule)
    return dataclasses.replace(
        data, train_users=data.train_users[~held_out], train_items=data.train_items[~held_out],
        train_ratings=data.train_ratings[~held_out], train_times=data.train_times[~held_out],
        eval_users=data.train_users[held_out], eval_items=data.train_items[held_out],
        eval_ratings=data.train_ratings[held_out], eval_times=data.train_times[held_out])


def _interactions(data: Ratings) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(len(data.train_users), dtype=np.float32),
                          (data.train_users, data.train_items)), shape=data.shape)


def most_popular(data: Ratings) -> dict:
    counts = np.bincount(data.train_items, minlength=data.shape[1]).astype(np.float64)
    return {"score_users": lambda users: np.tile(counts, (len(users), 1))}


def recent_popularity(data: Ratings, days_grid=(7.0, 14.0, 30.0, 60.0, 90.0)) -> dict:
    """Popularity over the last `days` days of the training ratings, ties broken by popularity
    over all of them: the ranking the pipeline's model serves to users unseen in training
    (ModelConfig.cold_start_popularity_days). Days picked on the validation slice."""
    validation = validation_split(data)

    def scorer(split: Ratings, days: float):
        scores = catalogue.recent_popularity(split.train_items, split.train_times,
                                             split.shape[1], days)
        return lambda users: np.tile(scores, (len(users), 1))

    best = max(days_grid, key=lambda days: top_k_accuracy(
        per_user(scorer(validation, days), validation), validation)["top_10_accuracy"])
    return {"score_users": scorer(data, best), "params": {"days": best}}


def mean_rating(data: Ratings) -> dict:
    mean = data.train_ratings.mean()
    return {"predict": lambda users, items: np.full(len(users), mean)}


def _ease_weights(data: Ratings, l2: float) -> np.ndarray:
    x = _interactions(data)
    gram = (x.T @ x).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += l2
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)
    weights[np.diag_indices_from(weights)] = 0.0
    return weights


def ease(data: Ratings, l2_grid=(50.0, 150.0, 500.0, 1500.0)) -> dict:
    """EASE (Steck 2019): closed-form item-item model; L2 picked on the validation slice."""
    validation = validation_split(data)

    def scorer(split: Ratings, l2: float):
        x, weights = _interactions(split), _ease_weights(split, l2)
        return lambda users: (x[users] @ weights)

    best = max(l2_grid, key=lambda l2: top_k_accuracy(
        per_user(scorer(validation, l2), validation), validation)["top_10_accuracy"])
    return {"score_users": scorer(data, best), "params": {"l2": best}}


def ease_at_request_time(data: Ratings, l2_grid=(50.0, 150.0, 500.0, 1500.0),
                         boost_grid=(10.0, 100.0, 1_000.0, 10_000.0),
                         window_seconds: int = 600) -> dict:
    """EASE given the request time, as the pipeline's model is: each eval rating is scored from
    its user's history with the titles rated in the `window_seconds` before it counting `boost`
    times more (the same session, as far as a live system would know it). L2 and boost picked
    on the validation slice."""
    def scorer(split: Ratings, l2: float, boost: float):
        weights = _ease_weights(split, l2)
        order = np.argsort(split.train_users, kind="stable")
        starts = np.searchsorted(split.train_users[order], np.arange(split.shape[0] + 1))

        def score_examples(rows):
            history = np.zeros((len(rows), split.shape[1]))
            for position, row in enumerate(rows):
                user = split.eval_users[row]
                rated = order[starts[user]:starts[user + 1]]
                gaps = split.eval_times[row] - split.train_times[rated]
                near = (gaps > 0) & (gaps < window_seconds)
                history[position, split.train_items[rated]] = 1.0 + boost * near
            return history @ weights

        return score_examples

    validation = validation_split(data)
    best = max(((l2, boost) for l2 in l2_grid for boost in boost_grid),
               key=lambda params: top_k_accuracy(scorer(validation, *params), validation)[
                   "top_10_accuracy"])
    return {"score_examples": scorer(data, *best),
            "params": {"l2": best[0], "boost": best[1]}}


def implicit_model(data: Ratings, kind: str) -> dict:
    """implicit's ALS or BPR on the binary train interactions (factors picked on validation)."""
    import implicit

    def fit(split: Ratings, factors: int):
        if kind == "als":
            model = implicit.cpu.als.AlternatingLeastSquares(
                factors=factors, regularization=0.05, iterations=20, random_state=42)
        else:
            model = implicit.cpu.bpr.BayesianPersonalizedRanking(
                factors=factors, iterations=200, learning_rate=0.05, regularization=0.01,
                random_state=42)
        model.fit(_interactions(split), show_progress=False)
        return lambda users: model.user_factors[users] @ model.item_factors.T

    validation = validation_split(data)
    best = max((32, 64, 128), key=lambda f: top_k_accuracy(
        per_user(fit(validation, f), validation), validation)["top_10_accuracy"])
    return {"score_users": fit(data, best), "params": {"factors": best}}


def surprise_model(data: Ratings, kind: str) -> dict:
    """scikit-surprise's SVD or SVD++ with its default settings (rating prediction only)."""
    import pandas as pd
    import surprise

    frame = [(int(u), int(i), float(r)) for u, i, r in
             zip(data.train_users, data.train_items, data.train_ratings, strict=True)]
    low, high = float(data.train_ratings.min()), float(data.train_ratings.max())
    trainset = surprise.Dataset.load_from_df(
        pd.DataFrame(frame, columns=["user", "item", "rating"]),
        surprise.Reader(rating_scale=(low, high))).build_full_trainset()
    algorithm = (surprise.SVD if kind == "svd" else surprise.SVDpp)(random_state=42)
    algorithm.fit(trainset)
    return {"predict": lambda users, items: np.array(
        [algorithm.predict(int(u), int(i)).est for u, i in zip(users, items, strict=True)])}
