import numpy as np

from components.example_gen import synthetic

SMALL = synthetic.Shape(num_users=400, num_movies=300, median_per_user=40, mean_per_user=60,
                        max_per_user=250)


def test_heavy_tailed_ratings_follow_the_shape():
    data = synthetic.generate_heavy_tailed(SMALL, seed=3)
    per_user = np.bincount(data.users, minlength=SMALL.num_users)
    assert per_user.min() == synthetic.MIN_RATINGS_PER_USER
    assert per_user.max() <= SMALL.max_per_user
    assert 30 < np.median(per_user) < 50 and 45 < per_user.mean() < 75
    assert per_user.max() > 4 * np.median(per_user)  # heavy-tailed, not even
    popularity = np.sort(np.bincount(data.movies, minlength=SMALL.num_movies))[::-1]
    share = popularity / popularity.sum()
    assert share[:30].sum() > 0.18 and share[150:].sum() < 0.4  # uniform: 0.1 and 0.5
    keys = data.users * SMALL.num_movies + data.movies
    assert len(np.unique(keys)) == len(keys)  # a user rates a movie once
    same_user = np.diff(data.users) == 0
    gaps = np.diff(data.times)[same_user]
    assert (gaps > 0).all() and np.median(gaps) < 120  # in sittings, seconds apart
    assert set(np.unique(data.stars)) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_heavy_tailed_data_is_deterministic_and_written_in_any_format(tmp_path):
    first = synthetic.generate_heavy_tailed(SMALL, seed=5)
    again = synthetic.generate_heavy_tailed(SMALL, seed=5)
    assert np.array_equal(first.users, again.users) and np.array_equal(first.times, again.times)
    directory = synthetic.write_movielens(tmp_path / "25m", "25m", shape=SMALL)
    lines = (directory / "ratings.csv").read_text().splitlines()
    assert lines[0] == "userId,movieId,rating,timestamp"
    user, movie, rating, timestamp = lines[1].split(",")
    assert float(rating) * 2 == int(float(rating) * 2) and int(timestamp) > 0
    assert len((directory / "movies.csv").read_text().splitlines()) == SMALL.num_movies + 1
