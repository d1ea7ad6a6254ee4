import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from tfx_bsl.coders import example_coder

from components.example_gen import ratings_build, synthetic, tfds_source


def _examples(builder):
    """Every example of the train split, decoded by TFDS, as sorted comparable tuples."""
    rows = [tuple((name, value.tolist() if isinstance(value, np.ndarray) else value)
                  for name, value in sorted(example.items()))
            for example in builder.as_dataset(split="train").as_numpy_iterator()]
    return sorted(rows)


@pytest.mark.parametrize("version", ["100k", "1m", "25m"])
def test_batch_build_writes_what_tfds_per_example_build_writes(tmp_path, version):
    raw = synthetic.write_movielens(tmp_path / "raw", version, num_users=25, num_movies=30,
                                    ratings_per_user=8)
    config = f"{version}-ratings"
    batched = tfds_source.prepare_from_raw_dir(config, str(raw), str(tmp_path / "batched"))
    local_builder = tfds_source._local_builder_class(str(raw))
    with tfds.core.registered.skip_registration():

        class Movielens(local_builder):  # TFDS's own build: one example at a time
            _download_and_prepare = tfds.core.GeneratorBasedBuilder._download_and_prepare

    Movielens(config=config, data_dir=str(tmp_path / "per_example")).download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    per_example = tfds.builder(f"movielens/{config}", data_dir=str(tmp_path / "per_example"))
    assert batched.info.features.get_serialized_info() == (
        per_example.info.features.get_serialized_info())
    assert batched.info.splits["train"].num_examples == len(
        (raw / tfds_source.RAW_FILES[version][0]).read_text().splitlines()) - (version == "25m")
    assert _examples(batched) == _examples(per_example)


def test_ratings_are_written_in_files_of_bounded_length(tmp_path, monkeypatch):
    raw = synthetic.write_movielens_100k(tmp_path / "raw", num_users=20, num_movies=30,
                                         ratings_per_user=8)
    monkeypatch.setattr(ratings_build, "EXAMPLES_PER_FILE", 50)
    monkeypatch.setattr(ratings_build, "_READ_BLOCK_BYTES", 1024)
    builder = tfds_source.prepare_from_raw_dir("100k-ratings", str(raw), str(tmp_path / "tfds"))
    split = builder.info.splits["train"]
    total = len((raw / "u.data").read_text().splitlines())
    assert split.shard_lengths == [50] * (total // 50) + ([total % 50] if total % 50 else [])
    assert len(_examples(builder)) == total
    assert not list(builder.data_path.glob("*.part-*"))


def test_rating_of_an_unknown_user_is_named(tmp_path):
    raw = synthetic.write_movielens_100k(tmp_path / "raw", num_users=20, num_movies=30,
                                         ratings_per_user=8)
    with open(raw / "u.data", "a") as ratings:
        ratings.write("999\t1\t4\t881250949\n")
    with pytest.raises(tfds_source.DataSourceError, match=r"user id '999' is not in the users"):
        tfds_source.prepare_from_raw_dir("100k-ratings", str(raw), str(tmp_path / "tfds"))


def test_record_batches_encode_scalars_and_sequences_of_any_length():
    genres = np.empty(3, dtype=object)
    genres[:] = [np.array([7]), np.array([4, 14]), np.array([], dtype=np.int64)]
    batch = {"movie_genres": genres, "user_gender": np.array([True, False, True]),
             "user_id": np.array([b"1", b"2", b"3"], dtype=object),
             "user_rating": np.array([4.0, 2.5, 1.0], dtype=np.float32)}
    records = example_coder.RecordBatchToExamples(ratings_build.to_record_batch(batch))
    examples = [tf.train.Example.FromString(record).features.feature for record in records]
    assert [list(e["movie_genres"].int64_list.value) for e in examples] == [[7], [4, 14], []]
    assert [e["user_gender"].int64_list.value[0] for e in examples] == [1, 0, 1]
    assert examples[1]["user_id"].bytes_list.value[0] == b"2"
    assert examples[1]["user_rating"].float_list.value[0] == 2.5
    square = ratings_build.to_record_batch({"movie_genres": np.array([[1, 2], [3, 4]])})
    assert square.column(0).to_pylist() == [[1, 2], [3, 4]]
