"""A small MovieLens-100k-shaped dataset with learnable structure, written as GroupLens files.

Used by `local_runner.py --demo` and by the tests, so that neither needs the real data (which is
never shipped with the project). Users and movies belong to taste groups tied to genres: users
mostly watch, and rate higher, movies of their group, so retrieval and rating can both be learnt
and a model's metrics mean something. Everything is deterministic in `seed`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)
OCCUPATIONS_100K = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
    "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
    "retired", "salesman", "scientist", "student", "technician", "writer",
)
EPOCH_1997 = 852_076_800


def write_movielens_100k(
    directory: str | Path,
    num_users: int = 300,
    num_movies: int = 400,
    ratings_per_user: int = 40,
    num_groups: int = 6,
    seed: int = 0,
) -> Path:
    """Writes u.data, u.item and u.user in GroupLens' ml-100k format; returns the directory."""
    rng = np.random.default_rng(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    group_genres = [rng.choice(np.arange(1, len(GENRES_100K)), size=3, replace=False)
                    for _ in range(num_groups)]
    movie_group = rng.integers(num_groups, size=num_movies)
    movie_quality = rng.normal(0.0, 0.5, size=num_movies)
    user_group = rng.integers(num_groups, size=num_users)

    with open(directory / "u.item", "w", encoding="ISO-8859-1") as items:
        for movie in range(num_movies):
            genres = np.zeros(len(GENRES_100K), dtype=int)
            genres[rng.choice(group_genres[movie_group[movie]], size=2, replace=False)] = 1
            year = 1950 + (movie * 7) % 48
            title = f"Movie {movie + 1} ({year})"
            flags = "|".join(map(str, genres))
            items.write(f"{movie + 1}|{title}|01-Jan-{year}||http://example.org/{movie + 1}|"
                        f"{flags}\n")

    with open(directory / "u.user", "w", encoding="ISO-8859-1") as users:
        for user in range(num_users):
            group = user_group[user]
            age = int(np.clip(rng.normal(20 + 7 * group, 5), 7, 73))
            gender = "M" if rng.random() < 0.3 + 0.1 * group else "F"
            occupation = OCCUPATIONS_100K[(group * 3 + rng.integers(3)) % len(OCCUPATIONS_100K)]
            zip_code = f"{group}{rng.integers(10_000):04d}"
            users.write(f"{user + 1}|{age}|{gender}|{occupation}|{zip_code}\n")

    affinity = np.where(user_group[:, None] == movie_group[None, :], 2.5, 0.0)
    affinity = affinity + movie_quality[None, :]
    with open(directory / "u.data", "w", encoding="ISO-8859-1") as data:
        for user in range(num_users):
            weights = np.exp(affinity[user] - affinity[user].max())
            count = min(ratings_per_user + int(rng.integers(-5, 6)), num_movies)
            movies = rng.choice(num_movies, size=count, replace=False, p=weights / weights.sum())
            start = EPOCH_1997 + int(rng.integers(0, 200)) * 86_400
            for step, movie in enumerate(movies):
                score = 2.6 + 0.6 * affinity[user, movie] + rng.normal(0.0, 0.6)
                rating = int(np.clip(np.rint(score), 1, 5))
                timestamp = start + step * 3_600 + int(rng.integers(3_600))
                data.write(f"{user + 1}\t{movie + 1}\t{rating}\t{timestamp}\n")
    return directory
