"""Split protocols: which ratings ExampleGen writes to `eval` (the Trainer carves its validation
slice from `train` by the same kind of rule).

- `random` (the default): each rating goes to eval with probability `eval_fraction`, by a seeded
  hash of its identity (components/rating_slices.py, the Trainer's validation rule too). With
  `max_eval_ratings`, a large dataset's fraction is lowered to hold out about that many.
- `time` or `time:Q`: production's protocol, a global cut-off at the Q quantile of the ratings'
  timestamps (Q = 1 - eval_fraction by default): train on the ratings before it, evaluate on
  those at or after it. Eval ratings of users or titles that have no training rating stay in
  eval and are counted (`eval_ratings_of_unseen_users`, `..._titles`).
- `canonical:u1` ... `canonical:u5`, `canonical:ua`, `canonical:ub` (MovieLens 100k): the
  published splits, cut from `u.data`'s line order exactly as GroupLens' `mku.sh` and
  `allbut.pl` cut them: uK's test set is the K-th block of 20,000 consecutive lines (the five
  are disjoint and cover u.data); ua's is each user's first 10 ratings in file order, ub's the
  11th to 20th (9,430 ratings each: every user has at least 20).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

RANDOM, TIME, CANONICAL = "random", "time", "canonical"
FOLDS = ("u1", "u2", "u3", "u4", "u5")
# allbut.pl's arguments in mku.sh: the range of each user's ratings (in file order) held out.
ALL_BUT = {"ua": (1, 10), "ub": (11, 20)}
CANONICAL_DATASET = "movielens/100k-ratings"


class SplitProtocolError(ValueError):
    """A split protocol that cannot be parsed or applied; the message names it."""


@dataclasses.dataclass(frozen=True)
class Protocol:
    kind: str
    quantile: float | None = None  # TIME: the cut-off's quantile of the timestamps
    name: str | None = None  # CANONICAL: u1 ... u5, ua, ub

    def __str__(self) -> str:
        if self.kind == TIME:
            return f"{TIME}:{self.quantile:g}"
        return f"{CANONICAL}:{self.name}" if self.kind == CANONICAL else self.kind


def parse_protocol(text: str, eval_fraction: float, dataset: str | None = None) -> Protocol:
    """`random`, `time`, `time:Q` (0 < Q < 1) or `canonical:<u1..u5|ua|ub>` (MovieLens 100k)."""
    kind, _, argument = text.partition(":")
    if kind == RANDOM and not argument:
        return Protocol(RANDOM)
    if kind == TIME:
        try:
            quantile = float(argument) if argument else 1.0 - eval_fraction
        except ValueError:
            quantile = -1.0
        if not 0.0 < quantile < 1.0:
            raise SplitProtocolError(
                f"Split protocol {text!r}: the cut-off quantile must be a number in (0, 1), "
                f"as in 'time:0.8'.")
        return Protocol(TIME, quantile=quantile)
    if kind == CANONICAL and argument in (*FOLDS, *ALL_BUT):
        if dataset is not None and dataset != CANONICAL_DATASET:
            raise SplitProtocolError(
                f"Split protocol {text!r} is MovieLens 100k's own; the dataset is {dataset!r}.")
        return Protocol(CANONICAL, name=argument)
    raise SplitProtocolError(
        f"Unknown split protocol {text!r}: expected 'random', 'time', 'time:Q' or "
        f"'canonical:' followed by one of {', '.join((*FOLDS, *ALL_BUT))}.")


def capped_eval_fraction(eval_fraction: float, num_ratings: int,
                         max_eval_ratings: int | None) -> float:
    """The random protocol's eval fraction: `eval_fraction`, lowered so that about
    `max_eval_ratings` of the dataset's `num_ratings` go to eval (None: never lowered)."""
    if max_eval_ratings is None or num_ratings * eval_fraction <= max_eval_ratings:
        return eval_fraction
    return max_eval_ratings / num_ratings


def canonical_test_lines(users: np.ndarray, name: str) -> np.ndarray:
    """[lines] bool: which lines of u.data (users in file order) are in `name`'s test set."""
    if name in FOLDS:
        # mku.sh: `head -(K * 20000) u.data | tail -20000`, 20,000 being a fifth of u.data.
        block = len(users) // len(FOLDS)
        fold = FOLDS.index(name)
        lines = np.arange(len(users))
        return (lines >= fold * block) & (lines < (fold + 1) * block)
    start, stop = ALL_BUT[name]
    # allbut.pl: a user's n-th rating in file order is held out when start <= n <= stop.
    order = np.argsort(users, kind="stable")
    sorted_users = users[order]
    first_of_user = np.searchsorted(sorted_users, sorted_users, side="left")
    rank = np.empty(len(users), dtype=np.int64)
    rank[order] = np.arange(len(users)) - first_of_user + 1
    return (rank >= start) & (rank <= stop)


def read_u_data(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(user ids, movie ids) of u.data in file order."""
    if not os.path.isfile(path):
        raise SplitProtocolError(
            f"Canonical splits are cut from u.data's line order, and {path!r} does not exist "
            "(pass the GroupLens files with --raw-dir).")
    columns = np.loadtxt(path, dtype=np.int64, usecols=(0, 1), ndmin=2)
    return columns[:, 0], columns[:, 1]


def canonical_eval_keys(u_data_path: str, name: str) -> tuple[frozenset[bytes], dict[str, int]]:
    """The `user|movie` keys of `name`'s test ratings, and counts to record: test ratings, and
    those of users or titles without a rating in its base set."""
    users, movies = read_u_data(u_data_path)
    keys = np.char.add(np.char.add(users.astype(bytes), b"|"), movies.astype(bytes))
    if len(np.unique(keys)) != len(keys):
        raise SplitProtocolError(
            f"{u_data_path!r} rates some (user, movie) pair twice: canonical splits need "
            "MovieLens 100k's u.data, where each pair is rated once.")
    test = canonical_test_lines(users, name)
    counts = unseen_counts(users, movies, test)
    return frozenset(keys[test].tolist()), counts


def time_cutoff(timestamps: np.ndarray, quantile: float) -> int:
    """The cut-off time: ratings at or after it are eval (ties go to eval)."""
    if not len(timestamps):
        raise SplitProtocolError("No ratings to cut by time.")
    return int(np.quantile(timestamps, quantile, method="higher"))


def unseen_counts(users: np.ndarray, movies: np.ndarray, is_eval: np.ndarray) -> dict[str, int]:
    """How many eval ratings there are, and how many of them have a user (or title) that no
    training rating has. Ids may be Python objects (tf.string columns): compared as fixed-width
    bytes, since np.isin on object arrays takes minutes at 100k ratings."""
    users, movies = (np.asarray(ids).astype(bytes) if np.asarray(ids).dtype == object else ids
                     for ids in (users, movies))
    return {
        "eval_ratings": int(is_eval.sum()),
        "eval_ratings_of_unseen_users": int(
            (is_eval & ~np.isin(users, users[~is_eval])).sum()),
        "eval_ratings_of_unseen_titles": int(
            (is_eval & ~np.isin(movies, movies[~is_eval])).sum()),
    }
