import numpy as np
import tensorflow as tf

from components import features
from components.trainer import serving, train


def test_split_file_pattern_points_at_the_sibling_split():
    assert train.split_file_pattern("/root/Examples/7/Split-train/*", "movies") == \
        "/root/Examples/7/Split-movies/*"


def test_histories_and_rated_catalogue_rows():
    dataset = tf.data.Dataset.from_tensor_slices({
        features.USER_INDEX: np.array([0, 0, 1, 2], dtype="int64"),
        features.MOVIE_INDEX: np.array([1, 0, 1, 2], dtype="int64")})
    histories = train.user_histories(dataset, num_users=2)
    assert histories == [[0, 1], [1], [2]]
    vocabulary = [b"B", b"A"]  # index 2 is the out-of-vocabulary bucket
    catalogue = np.array([b"A", b"B", b"C"], dtype=object)
    assert train.rated_catalogue_rows(histories, vocabulary, catalogue) == [[0, 1], [0], []]


def test_read_catalogue_keeps_first_of_duplicate_titles(tmp_path):
    def example(title, genres):
        return tf.train.Example(features=tf.train.Features(feature={
            features.MOVIE_TITLE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[title])),
            features.MOVIE_GENRES: tf.train.Feature(int64_list=tf.train.Int64List(value=genres)),
        })).SerializeToString()

    path = str(tmp_path / "movies.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for title, genres in ((b"A", [1]), (b"B", [2, 3]), (b"A", [4])):
            writer.write(example(title, genres))
    titles, genres = serving.read_catalogue(str(tmp_path / "*.gz"))
    assert list(titles) == [b"A", b"B"] and genres.to_list() == [[1], [2, 3]]


def test_scann_parameters_scale_with_the_catalogue():
    small, large = serving.scann_parameters(50), serving.scann_parameters(10_000)
    assert small["num_leaves"] == 7 and large["num_leaves"] == 100
    assert small["num_leaves_to_search"] == 7  # a small catalogue is searched whole
    assert serving.scann_parameters(1_664)["num_leaves_to_search"] == 21
    assert large["num_leaves_to_search"] == 50
    assert small["num_reordering_candidates"] == 50
