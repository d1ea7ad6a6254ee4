"""Small MovieLens-shaped datasets with learnable structure, written as GroupLens files.

Used by `local_runner.py --demo` and by the tests, so that neither needs the real data (which is
never shipped with the project). Users and movies belong to taste groups tied to genres: users
mostly watch, and rate higher, movies of their group, so retrieval and rating can both be learnt
and a model's metrics mean something. Everything is deterministic in `seed`.

`write_movielens` writes the files of any MovieLens version's format: ml-100k (u.data, u.item,
u.user), ml-1m (ratings.dat, movies.dat, users.dat) or the current CSV format of ml-20m, ml-25m
and ml-latest-small (ratings.csv, movies.csv; half-star ratings, no demographics).
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
    ratings: list[tuple[int, int, float, int]]  # user index, movie index, stars, timestamp


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
    return SyntheticRatings(titles, genres, ages, genders, occupations, zip_codes, ratings)


def _write_100k(data: SyntheticRatings, directory: Path) -> None:
    with open(directory / "u.item", "w", encoding="ISO-8859-1") as items:
        for movie, (title, genres) in enumerate(zip(data.titles, data.genres)):
            flags = "|".join("1" if g in genres else "0" for g in range(len(GENRES)))
            items.write(f"{movie + 1}|{title}|01-Jan-1995||http://example.org/{movie + 1}|"
                        f"{flags}\n")
    with open(directory / "u.user", "w", encoding="ISO-8859-1") as users:
        for user, (age, gender, occupation, zip_code) in enumerate(
                zip(data.ages, data.genders, data.occupations, data.zip_codes)):
            users.write(f"{user + 1}|{age}|{gender}|{OCCUPATIONS_100K[occupation]}|{zip_code}\n")
    with open(directory / "u.data", "w", encoding="ISO-8859-1") as ratings:
        for user, movie, stars, timestamp in data.ratings:
            ratings.write(f"{user + 1}\t{movie + 1}\t{int(stars)}\t{timestamp}\n")


def _write_1m(data: SyntheticRatings, directory: Path) -> None:
    def genre_names(genres):
        return "|".join("Children's" if GENRES[g] == "Children" else GENRES[g] for g in genres)

    with open(directory / "movies.dat", "w", encoding="ISO-8859-1") as movies:
        for movie, (title, genres) in enumerate(zip(data.titles, data.genres)):
            movies.write(f"{movie + 1}::{title}::{genre_names(genres)}\n")
    with open(directory / "users.dat", "w", encoding="ISO-8859-1") as users:
        for user, (age, gender, occupation, zip_code) in enumerate(
                zip(data.ages, data.genders, data.occupations, data.zip_codes)):
            bucket = max(b for b in AGE_BUCKETS_1M if b <= max(age, 1))
            users.write(f"{user + 1}::{gender}::{bucket}::{occupation % NUM_OCCUPATIONS_1M}::"
                        f"{zip_code}\n")
    with open(directory / "ratings.dat", "w", encoding="ISO-8859-1") as ratings:
        for user, movie, stars, timestamp in data.ratings:
            ratings.write(f"{user + 1}::{movie + 1}::{int(stars)}::{timestamp}\n")


def _write_current(data: SyntheticRatings, directory: Path) -> None:
    with open(directory / "movies.csv", "w", newline="", encoding="utf-8") as handle:
        movies = csv.writer(handle)
        movies.writerow(["movieId", "title", "genres"])
        for movie, (title, genres) in enumerate(zip(data.titles, data.genres)):
            movies.writerow([movie + 1, title, "|".join(GENRES[g] for g in genres)])
    with open(directory / "ratings.csv", "w", newline="", encoding="utf-8") as handle:
        ratings = csv.writer(handle)
        ratings.writerow(["userId", "movieId", "rating", "timestamp"])
        for user, movie, stars, timestamp in data.ratings:
            ratings.writerow([user + 1, movie + 1, stars, timestamp])


WRITERS = {"100k": _write_100k, "1m": _write_1m, "20m": _write_current,
           "25m": _write_current, "latest-small": _write_current}


def write_movielens(directory: str | Path, version: str = "100k", **sizes) -> Path:
    """Writes a synthetic dataset in the GroupLens format of `version`; returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = generate(half_stars=version not in ("100k", "1m"), **sizes)
    WRITERS[version](data, directory)
    return directory


def write_movielens_100k(directory: str | Path, **sizes) -> Path:
    return write_movielens(directory, "100k", **sizes)
