"""Small MovieLens-shaped datasets with learnable structure, written as GroupLens files.

Used by `local_runner.py --demo` and by the tests, so that neither needs the real data (which is
never shipped with the project). Users and movies belong to taste groups tied to genres: users
mostly watch, and rate higher, movies of their group, so retrieval and rating can both be learnt
and a model's metrics mean something. Everything is deterministic in `seed`.

`write_movielens` writes the files of any MovieLens version's format: ml-100k (u.data, u.item,
u.user), ml-1m (ratings.dat, movies.dat, users.dat) or the current CSV format of ml-20m, ml-25m
and ml-latest-small (ratings.csv, movies.csv; half-star ratings, no demographics).

`generate` gives every user about the same number of ratings (small samples for the demo and
tests); `generate_heavy_tailed` follows the real sets' skew, for benchmarks: log-normal user
activity above GroupLens' minimum of 20 ratings, Zipf item popularity and ratings made in
sittings, seconds apart (SHAPES holds the published statistics of ml-1m and ml-25m).
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np

GENRES = (
    "Unknown", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)
OCCUPATIONS_100K = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
    "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
    "retired", "salesman", "scientist", "student", "technician", "writer",
)
AGE_BUCKETS_1M = (1, 18, 25, 35, 45, 50, 56)
NUM_OCCUPATIONS_1M = 21
EPOCH_1997 = 852_076_800


@dataclasses.dataclass
class SyntheticRatings:
    titles: list[str]
    genres: list[list[int]]          # indices into GENRES, per movie
    ages: list[int]
    genders: list[str]
    occupations: list[int]           # 0..20, per user
    zip_codes: list[str]
    # One entry per rating.
    users: np.ndarray  # user index
    movies: np.ndarray  # movie index
    stars: np.ndarray
    times: np.ndarray  # seconds since the epoch


def generate(num_users: int = 300, num_movies: int = 400, ratings_per_user: int = 40,
             num_groups: int = 6, seed: int = 0, half_stars: bool = False) -> SyntheticRatings:
    rng = np.random.default_rng(seed)
    group_genres = [rng.choice(np.arange(1, len(GENRES)), size=3, replace=False)
                    for _ in range(num_groups)]
    movie_group = rng.integers(num_groups, size=num_movies)
    movie_quality = rng.normal(0.0, 0.5, size=num_movies)
    user_group = rng.integers(num_groups, size=num_users)

    genres = [sorted(rng.choice(group_genres[g], size=2, replace=False).tolist())
              for g in movie_group]
    titles = [f"Movie {movie + 1} ({1950 + (movie * 7) % 48})" for movie in range(num_movies)]
    ages = [int(np.clip(rng.normal(20 + 7 * g, 5), 7, 73)) for g in user_group]
    genders = ["M" if rng.random() < 0.3 + 0.1 * g else "F" for g in user_group]
    occupations = [int((g * 3 + rng.integers(3)) % len(OCCUPATIONS_100K)) for g in user_group]
    zip_codes = [f"{g}{rng.integers(10_000):04d}" for g in user_group]

    affinity = np.where(user_group[:, None] == movie_group[None, :], 2.5, 0.0)
    affinity = affinity + movie_quality[None, :]
    ratings = []
    for user in range(num_users):
        weights = np.exp(affinity[user] - affinity[user].max())
        count = min(ratings_per_user + int(rng.integers(-5, 6)), num_movies)
        movies = rng.choice(num_movies, size=count, replace=False, p=weights / weights.sum())
        start = EPOCH_1997 + int(rng.integers(0, 200)) * 86_400
        for step, movie in enumerate(movies):
            score = 2.6 + 0.6 * affinity[user, movie] + rng.normal(0.0, 0.6)
            stars = (np.clip(np.rint(score * 2) / 2, 0.5, 5.0) if half_stars
                     else np.clip(np.rint(score), 1, 5))
            timestamp = start + step * 3_600 + int(rng.integers(3_600))
            ratings.append((user, int(movie), float(stars), timestamp))
    users, movies, stars, times = (np.array(column) for column in zip(*ratings, strict=True))
    return SyntheticRatings(titles, genres, ages, genders, occupations, zip_codes, users, movies,
                            stars, times)


@dataclasses.dataclass(frozen=True)
class Shape:
    """Published statistics of a MovieLens release: users, rated movies, ratings per user."""

    num_users: int
    num_movies: int
    median_per_user: float
    mean_per_user: float
    max_per_user: int


SHAPES = {
    "ml-100k": Shape(943, 1_682, 65, 106, 737),
    "ml-1m": Shape(6_040, 3_706, 96, 165.6, 2_314),
    "ml-25m": Shape(162_541, 59_047, 71, 153.8, 32_000),
}
MIN_RATINGS_PER_USER = 20


def generate_heavy_tailed(shape: Shape, num_groups: int = 20, seed: int = 0,
                          half_stars: bool = False) -> SyntheticRatings:
    """Ratings with the skew of `shape`, vectorised (25 M ratings in about a minute).

    Ratings per user: 20 + a log-normal fitted to the published median and mean, capped at the
    published maximum. Movies: Zipf popularity; a user takes 60 % of their movies from their
    taste group's and rates those higher. Each user rates in sittings of about 20 ratings,
    15 s to 2 min apart, sittings days apart. A user rates a movie once.
    """
    rng = np.random.default_rng(seed)
    above_min = shape.median_per_user - MIN_RATINGS_PER_USER
    sigma = np.sqrt(2 * np.log((shape.mean_per_user - MIN_RATINGS_PER_USER) / above_min))
    counts = MIN_RATINGS_PER_USER + rng.lognormal(np.log(above_min), sigma, shape.num_users)
    counts = np.minimum(counts.astype(np.int64), min(shape.max_per_user, shape.num_movies))

    popularity = 1.0 / (np.arange(shape.num_movies) + 10.0)
    movie_rank = rng.permutation(shape.num_movies)  # movie index -> popularity rank
    movie_group = rng.integers(num_groups, size=shape.num_movies)
    user_group = rng.integers(num_groups, size=shape.num_users)
    weights = popularity[movie_rank]
    by_group = np.argsort(movie_group, kind="stable")
    group_starts = np.searchsorted(movie_group[by_group], np.arange(num_groups + 1))
    group_cdf = np.cumsum(weights[by_group])

    def sample(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        """Movies drawn by popularity among by_group[lower:upper] (per draw)."""
        low = np.where(lower > 0, group_cdf[np.maximum(lower - 1, 0)], 0.0)
        targets = low + rng.random(len(lower)) * (group_cdf[upper - 1] - low)
        return by_group[np.minimum(np.searchsorted(group_cdf, targets), upper - 1)]

    def draw(users: np.ndarray) -> np.ndarray:
        groups = user_group[users]
        in_group = rng.random(len(users)) < 0.6
        lower = np.where(in_group, group_starts[groups], 0)
        upper = np.where(in_group, group_starts[groups + 1], shape.num_movies)
        empty = upper <= lower
        return sample(np.where(empty, 0, lower), np.where(empty, shape.num_movies, upper))

    # Draw, drop repeated (user, movie) pairs, and draw again for the users left short.
    users, movies = np.zeros(0, np.int64), np.zeros(0, np.int64)
    deficit = counts
    for _ in range(20):
        if not deficit.any():
            break
        extra = np.repeat(np.arange(shape.num_users), deficit * 2)
        users, movies = np.concatenate([users, extra]), np.concatenate([movies, draw(extra)])
        _, first = np.unique(users * shape.num_movies + movies, return_index=True)
        first.sort()
        users, movies = users[first], movies[first]
        order = np.argsort(users, kind="stable")
        users, movies = users[order], movies[order]
        have = np.bincount(users, minlength=shape.num_users)
        rank = np.arange(len(users)) - np.repeat(np.cumsum(have) - have, have)
        kept = rank < counts[users]
        users, movies = users[kept], movies[kept]
        deficit = counts - np.bincount(users, minlength=shape.num_users)

    affinity = np.where(user_group[users] == movie_group[movies], 2.5, 0.0)
    quality = rng.normal(0.0, 0.5, shape.num_movies)[movies]
    score = 2.6 + 0.6 * (affinity + quality) + rng.normal(0.0, 0.6, len(users))
    stars = (np.clip(np.rint(score * 2) / 2, 0.5, 5.0) if half_stars
             else np.clip(np.rint(score), 1, 5))
    new_sitting = rng.random(len(users)) < 1 / 20
    gaps = np.where(new_sitting, rng.integers(86_400, 30 * 86_400, len(users)),
                    rng.integers(15, 120, len(users)))
    starts = np.concatenate([[0], np.flatnonzero(np.diff(users)) + 1])
    elapsed = np.cumsum(gaps)
    elapsed -= np.repeat(elapsed[starts], np.diff(np.append(starts, len(users))))
    times = EPOCH_1997 + rng.integers(0, 3 * 365 * 86_400, shape.num_users)[users] + elapsed

    titles = [f"Movie {movie + 1} ({1950 + (movie * 7) % 48})" for movie in
              range(shape.num_movies)]
    genres = [sorted({1 + (group * 3 + offset) % (len(GENRES) - 1) for offset in range(count)})
              for group, count in zip(movie_group, rng.integers(1, 4, shape.num_movies),
                                      strict=True)]
    ages = rng.integers(7, 74, shape.num_users).tolist()
    genders = np.where(rng.random(shape.num_users) < 0.7, "M", "F").tolist()
    occupations = (user_group % len(OCCUPATIONS_100K)).tolist()
    zip_codes = [f"{code:05d}" for code in rng.integers(100_000, size=shape.num_users)]
    return SyntheticRatings(titles, genres, ages, genders, occupations, zip_codes, users,
                            movies, stars, times)


def _write_rating_lines(path: Path, data: SyntheticRatings, line_format: str,
                        header: str = "", encoding: str = "ISO-8859-1") -> None:
    """One line per rating (user and movie ids counted from 1), in chunks."""
    columns = np.column_stack([data.users + 1, data.movies + 1, data.stars, data.times])
    with open(path, "w", encoding=encoding, newline="") as handle:
        handle.write(header)
        for start in range(0, len(columns), 1_000_000):
            np.savetxt(handle, columns[start:start + 1_000_000], fmt=line_format)


def _write_100k(data: SyntheticRatings, directory: Path) -> None:
    with open(directory / "u.item", "w", encoding="ISO-8859-1") as items:
        for movie, (title, genres) in enumerate(zip(data.titles, data.genres, strict=True)):
            flags = "|".join("1" if g in genres else "0" for g in range(len(GENRES)))
            items.write(f"{movie + 1}|{title}|01-Jan-1995||http://example.org/{movie + 1}|"
                        f"{flags}\n")
    with open(directory / "u.user", "w", encoding="ISO-8859-1") as users:
        for user, (age, gender, occupation, zip_code) in enumerate(
                zip(data.ages, data.genders, data.occupations, data.zip_codes, strict=True)):
            users.write(f"{user + 1}|{age}|{gender}|{OCCUPATIONS_100K[occupation]}|{zip_code}\n")
    _write_rating_lines(directory / "u.data", data, "%d\t%d\t%d\t%d")


def _write_1m(data: SyntheticRatings, directory: Path) -> None:
    def genre_names(genres):
        return "|".join("Children's" if GENRES[g] == "Children" else GENRES[g] for g in genres)

    with open(directory / "movies.dat", "w", encoding="ISO-8859-1") as movies:
        for movie, (title, genres) in enumerate(zip(data.titles, data.genres, strict=True)):
            movies.write(f"{movie + 1}::{title}::{genre_names(genres)}\n")
    with open(directory / "users.dat", "w", encoding="ISO-8859-1") as users:
        for user, (age, gender, occupation, zip_code) in enumerate(
                zip(data.ages, data.genders, data.occupations, data.zip_codes, strict=True)):
            bucket = max(b for b in AGE_BUCKETS_1M if b <= max(age, 1))
            users.write(f"{user + 1}::{gender}::{bucket}::{occupation % NUM_OCCUPATIONS_1M}::"
                        f"{zip_code}\n")
    _write_rating_lines(directory / "ratings.dat", data, "%d::%d::%d::%d")


def _write_current(data: SyntheticRatings, directory: Path) -> None:
    with open(directory / "movies.csv", "w", newline="", encoding="utf-8") as handle:
        movies = csv.writer(handle)
        movies.writerow(["movieId", "title", "genres"])
        for movie, (title, genres) in enumerate(zip(data.titles, data.genres, strict=True)):
            movies.writerow([movie + 1, title, "|".join(GENRES[g] for g in genres)])
    _write_rating_lines(directory / "ratings.csv", data, "%d,%d,%.1f,%d",
                        header="userId,movieId,rating,timestamp\n", encoding="utf-8")


WRITERS = {"100k": _write_100k, "1m": _write_1m, "20m": _write_current,
           "25m": _write_current, "latest-small": _write_current}


def write_movielens(directory: str | Path, version: str = "100k",
                    shape: Shape | None = None, **sizes) -> Path:
    """Writes a synthetic dataset in the GroupLens format of `version`, heavy-tailed like
    `shape` if given, else even (`generate(**sizes)`); returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    half_stars = version not in ("100k", "1m")
    data = (generate(half_stars=half_stars, **sizes) if shape is None
            else generate_heavy_tailed(shape, half_stars=half_stars, **sizes))
    WRITERS[version](data, directory)
    return directory


def write_movielens_100k(directory: str | Path, **sizes) -> Path:
    return write_movielens(directory, "100k", **sizes)
