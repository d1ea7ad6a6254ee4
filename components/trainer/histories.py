"""The users' rating histories as flat numpy arrays: cheap to build, merge and ship at 25 M ratings.

One row per rating, sorted by (user index, time, movie index); `row_splits[u]:row_splits[u + 1]`
are user u's ratings, oldest first. This is the layout the user tower searches (see
model.HistoryTable), so no per-user Python lists are ever built.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class UserHistories:
    """Per user index (OOV last, so `num_users + 1` rows): the movie indices rated, when
    (seconds since the epoch) and how (the rating), each user's ratings oldest first."""

    row_splits: np.ndarray  # [num_users + 2] int64
    movies: np.ndarray  # [num_ratings] int64
    times: np.ndarray  # [num_ratings] int64
    ratings: np.ndarray  # [num_ratings] float32

    def __post_init__(self):
        size = len(self.movies)
        if len(self.times) != size or len(self.ratings) != size:
            raise ValueError("Each history rating needs one movie, one time and one rating: got "
                             f"{size} movies, {len(self.times)} times, {len(self.ratings)} "
                             "ratings.")
        if self.row_splits[0] != 0 or self.row_splits[-1] != size or np.any(
                np.diff(self.row_splits) < 0):
            raise ValueError("row_splits must rise from 0 to the number of ratings.")

    @classmethod
    def from_ratings(cls, users: np.ndarray, movies: np.ndarray, times: np.ndarray,
                     ratings: np.ndarray, num_users: int) -> "UserHistories":
        """Histories of `num_users + 1` user indices (the last is OOV) from unordered ratings."""
        users = np.asarray(users, dtype=np.int64)
        if users.size and (users.min() < 0 or users.max() > num_users):
            raise ValueError(f"User indices must lie in [0, {num_users}].")
        order = np.lexsort((movies, times, users))
        counts = np.bincount(users, minlength=num_users + 1)
        return cls(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                   np.asarray(movies, dtype=np.int64)[order],
                   np.asarray(times, dtype=np.int64)[order],
                   np.asarray(ratings, dtype=np.float32)[order])

    @property
    def num_users(self) -> int:
        """User indices, OOV included."""
        return len(self.row_splits) - 1

    def user_index_per_rating(self) -> np.ndarray:
        return np.repeat(np.arange(self.num_users, dtype=np.int64), np.diff(self.row_splits))

    def user(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(movies, times, ratings) of one user, oldest first."""
        rows = slice(self.row_splits[index], self.row_splits[index + 1])
        return self.movies[rows], self.times[rows], self.ratings[rows]

    def merged(self, other: "UserHistories") -> "UserHistories":
        """Both histories of each user, in time order."""
        if other.num_users != self.num_users:
            raise ValueError(f"Cannot merge histories of {self.num_users} and "
                             f"{other.num_users} user indices.")
        return UserHistories.from_ratings(
            np.concatenate([self.user_index_per_rating(), other.user_index_per_rating()]),
            np.concatenate([self.movies, other.movies]),
            np.concatenate([self.times, other.times]),
            np.concatenate([self.ratings, other.ratings]), self.num_users - 1)

    def mean_rating(self) -> float:
        return float(self.ratings.mean(dtype=np.float64)) if len(self.ratings) else 0.0

    def distinct_rows(self, row_of_movie: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row_splits, rows): each user's rated movies mapped through `row_of_movie` (movie
        index -> row, -1 to drop), distinct and sorted."""
        rows = row_of_movie[self.movies]
        kept = rows >= 0
        width = int(row_of_movie.max()) + 1 if len(row_of_movie) else 1
        keys = np.unique(self.user_index_per_rating()[kept] * width + rows[kept])
        counts = np.bincount(keys // width, minlength=self.num_users)
        return (np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                (keys % width).astype(np.int64))
