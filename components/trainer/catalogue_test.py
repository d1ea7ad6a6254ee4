import numpy as np
import pytest
import tensorflow as tf

from components import features
from components.trainer import histories as histories_lib
from components.trainer.catalogue import Catalogue, read_titles_and_genres


def test_read_titles_and_genres_keeps_the_first_of_duplicate_titles(tmp_path):
    def example(title, genres):
        return tf.train.Example(features=tf.train.Features(feature={
            features.MOVIE_TITLE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[title])),
            features.MOVIE_GENRES: tf.train.Feature(int64_list=tf.train.Int64List(value=genres)),
        })).SerializeToString()

    path = str(tmp_path / "movies.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for title, genres in ((b"A", [1]), (b"B", [2, 3]), (b"A", [4])):
            writer.write(example(title, genres))
    titles, genres = read_titles_and_genres(str(tmp_path / "*.gz"))
    assert list(titles) == [b"A", b"B"] and genres.to_list() == [[1], [2, 3]]


def test_missing_catalogue_files_are_named(tmp_path):
    pattern = str(tmp_path / "Split-movies" / "*")
    with pytest.raises(FileNotFoundError, match="No movie catalogue files match"):
        read_titles_and_genres(pattern)


@pytest.fixture(scope="module")
def catalogue(analyze_transform) -> Catalogue:
    spec = {features.USER_ID: tf.io.FixedLenFeature([1], tf.string),
            features.MOVIE_TITLE: tf.io.FixedLenFeature([1], tf.string),
            features.MOVIE_GENRES: tf.io.VarLenFeature(tf.int64),
            features.RATING: tf.io.FixedLenFeature([1], tf.float32)}
    ratings = [{"user_id": [b"1"], "movie_title": [title], "movie_genres": [0],
                "user_rating": [3.0]} for title in (b"B", b"B", b"A")]  # index: B 0, A 1
    output = analyze_transform(ratings, spec)
    titles = np.array([b"A", b"C", b"B"], dtype=object)  # C is outside the vocabulary
    genres = tf.ragged.constant([[1, 2], [3], [4]], dtype=tf.int64)
    return Catalogue.from_titles(titles, genres, output)


def test_catalogue_rows_carry_transform_indices_and_an_unknown_title_row(catalogue):
    assert len(catalogue) == 3 and catalogue.num_movies == 2
    assert catalogue.movie_index.tolist() == [1, 2, 0, 2]  # C and the unknown row: OOV
    assert catalogue.genres_multi_hot.shape == (4, features.NUM_GENRES)
    assert not catalogue.genres_multi_hot[3].any()


def test_genres_by_movie_index_follows_the_transform_vocabulary(catalogue):
    table = catalogue.genres_by_movie_index()
    assert table.shape == (2, features.NUM_GENRES)
    assert list(table[0].nonzero()[0]) == [4] and list(table[1].nonzero()[0]) == [1, 2]


def test_rated_rows_are_distinct_catalogue_rows(catalogue):
    histories = histories_lib.UserHistories.from_ratings(
        users=np.array([0, 0, 0, 1, 2]), movies=np.array([1, 0, 1, 1, 2]),
        times=np.arange(5), ratings=np.full(5, 3.0, np.float32), num_users=2)
    # Movie 1 (A) is row 0, movie 0 (B) row 2; the OOV movie 2 has no row.
    assert catalogue.rated_rows(histories).to_list() == [[0, 2], [0], []]


def test_recent_popularity_ranks_by_the_latest_days_then_by_all_ratings(catalogue):
    day = 86_400
    # B (movie 0, row 2) rated three times long ago; A (movie 1, row 0) twice in the last day;
    # C (row 1) never.
    histories = histories_lib.UserHistories.from_ratings(
        users=np.array([0, 1, 2, 0, 1]), movies=np.array([0, 0, 0, 1, 1]),
        times=np.array([0, 1, 2, 10 * day - 100, 10 * day]),
        ratings=np.full(5, 3.0, np.float32), num_users=3)
    last_day = catalogue.recent_popularity_scores(histories, days=1)
    assert last_day[0] > last_day[2] > last_day[1]  # A recent; B, C none, B rated before
    everything = catalogue.recent_popularity_scores(histories, days=100)
    assert everything[2] > everything[0] > everything[1]
    for scores in (last_day, everything):  # a distribution over the catalogue
        assert scores.dtype == np.float32 and np.exp(scores.astype(np.float64)).sum() == (
            pytest.approx(1.0))
    no_ratings = histories_lib.UserHistories.from_ratings(
        *(np.zeros(0, np.int64),) * 3, np.zeros(0, np.float32), num_users=3)
    np.testing.assert_allclose(catalogue.recent_popularity_scores(no_ratings, days=30),
                               np.log(1 / 3))


def test_shrunk_mean_ratings_pull_rarely_rated_titles_towards_the_mean(catalogue):
    # A (movie 1, row 0): 5, 5, 5, 5; B (movie 0, row 2): 1; C (row 1): none. Mean 4.2.
    histories = histories_lib.UserHistories.from_ratings(
        users=np.array([0, 1, 2, 3, 0]), movies=np.array([1, 1, 1, 1, 0]),
        times=np.arange(5), ratings=np.array([5, 5, 5, 5, 1], np.float32), num_users=4)
    ratings = catalogue.shrunk_mean_ratings(histories, shrinkage=2.0)
    np.testing.assert_allclose(ratings, [4.2 + 4 * 0.8 / 6, 4.2, 4.2 - 3.2 / 3, 4.2], rtol=1e-6)
    assert ratings.dtype == np.float32
    with pytest.raises(ValueError, match="cold_start_rating_shrinkage must be positive"):
        catalogue.shrunk_mean_ratings(histories, shrinkage=0.0)
