import concurrent.futures
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts

from components import features, rating_slices
from components.example_gen import executor, synthetic, tfds_source


def _read_split(examples, split):
    pattern = os.path.join(artifact_utils.get_split_uri([examples], split), "*.gz")
    return [tf.train.Example.FromString(record.numpy()) for record in
            tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type="GZIP")]


def _run(tmp_path, raw_dir, name, **overrides):
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / name)
    properties = {"dataset": "movielens/100k-ratings", "eval_fraction": 0.2, "split_seed": 42,
                  "tfds_data_dir": str(tmp_path / "tfds"), "raw_dir": str(raw_dir), **overrides}
    executor.Executor().Do({}, {"examples": [examples]}, properties)
    return examples


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory):
    return synthetic.write_movielens_100k(tmp_path_factory.mktemp("raw"), num_users=40,
                                          num_movies=50, ratings_per_user=10)


def test_writes_reproducible_train_eval_split_and_full_catalogue(tmp_path, raw_dir):
    first = _run(tmp_path, raw_dir, "first")
    second = _run(tmp_path, raw_dir, "second")
    assert artifact_utils.decode_split_names(first.split_names) == ["train", "eval", "movies"]

    def keys(examples, split):
        return sorted((e.features.feature["user_id"].bytes_list.value[0],
                       e.features.feature["movie_id"].bytes_list.value[0])
                      for e in _read_split(examples, split))

    train, evaluation = keys(first, "train"), keys(first, "eval")
    assert train == keys(second, "train") and evaluation == keys(second, "eval")
    total = len((raw_dir / "u.data").read_text().splitlines())
    assert len(train) + len(evaluation) == total
    assert 0.1 < len(evaluation) / total < 0.3
    assert first.get_string_custom_property("split_rule") == (
        f"random eval_fraction=0.2 seed=42 {rating_slices.RULE_NAME}")
    movies = _read_split(first, "movies")
    assert len(movies) == 50
    assert set(movies[0].features.feature) == set(features.MOVIE_FEATURES)
    rating = _read_split(first, "train")[0].features.feature
    assert {"user_rating", "timestamp", "movie_genres", "user_occupation_text",
            "bucketized_user_age", "user_gender", "user_zip_code"} <= set(rating)


def test_split_depends_on_the_seed_and_the_rating_not_on_the_batch():
    users = np.array([b"1"] * 64, dtype=object)
    movies = np.array([str(m).encode() for m in range(64)], dtype=object)
    times = np.full(64, 3)
    first, second = (executor.eval_mask(users, movies, times, 0.5, seed) for seed in (1, 2))
    assert first.tolist() != second.tolist()
    assert 10 < first.sum() < 54
    halves = np.concatenate([executor.eval_mask(users[:20], movies[:20], times[:20], 0.5, 1),
                             executor.eval_mask(users[20:], movies[20:], times[20:], 0.5, 1)])
    assert halves.tolist() == first.tolist()


def _ratings(examples, split):
    return [(e.features.feature["user_id"].bytes_list.value[0],
             e.features.feature["movie_id"].bytes_list.value[0],
             e.features.feature["timestamp"].int64_list.value[0])
            for e in _read_split(examples, split)]


def test_time_protocol_trains_before_the_cut_off_and_records_it(tmp_path, raw_dir):
    examples = _run(tmp_path, raw_dir, "time", split_protocol="time:0.75")
    train, evaluation = _ratings(examples, "train"), _ratings(examples, "eval")
    cutoff = examples.get_int_custom_property("split_cutoff_time")
    assert max(time for _, _, time in train) < cutoff <= min(time for _, _, time in evaluation)
    assert 0.2 < len(evaluation) / (len(train) + len(evaluation)) < 0.3
    assert examples.get_string_custom_property("split_protocol") == "time:0.75"
    assert examples.get_int_custom_property("eval_ratings") == len(evaluation)
    unseen_users = {user for user, _, _ in evaluation} - {user for user, _, _ in train}
    assert examples.get_int_custom_property("eval_ratings_of_unseen_users") == sum(
        user in unseen_users for user, _, _ in evaluation)


def test_a_large_datasets_random_eval_split_is_capped_and_recorded(tmp_path, raw_dir):
    total = len((raw_dir / "u.data").read_text().splitlines())  # about 400
    uncapped = _run(tmp_path, raw_dir, "uncapped", max_eval_ratings=total // 5 + 1)
    capped = _run(tmp_path, raw_dir, "capped", max_eval_ratings=40)
    assert uncapped.get_string_custom_property("split_rule").startswith(
        "random eval_fraction=0.2 seed=42 ")
    assert capped.get_string_custom_property("split_rule").startswith(
        f"random eval_fraction={40 / total:g} seed=42 ")
    evaluation = _ratings(capped, "eval")
    assert 20 < len(evaluation) < 60
    assert len(evaluation) + len(_ratings(capped, "train")) == total
    # The same hash: the capped eval split is part of the uncapped one.
    assert set(evaluation) < set(_ratings(uncapped, "eval"))
    # Other protocols choose their own eval sets.
    timed = _run(tmp_path, raw_dir, "timed", split_protocol="time:0.75", max_eval_ratings=40)
    assert timed.get_int_custom_property("eval_ratings") > total // 5
    with pytest.raises(ValueError, match="max_eval_ratings must be at least 1, got -5"):
        _run(tmp_path, raw_dir, "bad", max_eval_ratings=-5)


def test_canonical_protocol_holds_out_u_data_lines_as_mku_sh_does(tmp_path, raw_dir):
    examples = _run(tmp_path, raw_dir, "u2", split_protocol="canonical:u2")
    lines = [line.split("\t") for line in (raw_dir / "u.data").read_text().splitlines()]
    block = len(lines) // 5
    expected = sorted((user.encode(), movie.encode()) for user, movie, _, _ in
                      lines[block:2 * block])
    assert sorted((user, movie) for user, movie, _ in _ratings(examples, "eval")) == expected
    assert len(_ratings(examples, "train")) == len(lines) - block
    assert examples.get_string_custom_property("split_protocol") == "canonical:u2"
    assert examples.get_string_custom_property("split_rule") == "canonical:u2"


def test_large_datasets_are_read_in_shards(tmp_path, raw_dir, monkeypatch):
    whole = _run(tmp_path, raw_dir, "whole")
    monkeypatch.setattr(executor, "RATINGS_PER_SHARD", 150)
    monkeypatch.setattr(executor, "READ_BATCH_SIZE", 64)
    sharded = _run(tmp_path, raw_dir, "sharded")
    files = sorted(os.listdir(artifact_utils.get_split_uri([sharded], "train")))
    total = len((raw_dir / "u.data").read_text().splitlines())
    assert len(files) == -(-total // 150) and files[0].endswith("-00000-of-00003.gz")

    def records(examples, split):
        return sorted(e.SerializeToString(deterministic=True) for e in _read_split(examples, split))

    for split in ("train", "eval", "movies"):
        assert records(sharded, split) == records(whole, split)


def test_unknown_dataset_is_named(tmp_path, raw_dir):
    with pytest.raises(tfds_source.DataSourceError, match="movielens/3m-ratings"):
        _run(tmp_path, raw_dir, "bad", dataset="movielens/3m-ratings")


def test_missing_raw_file_is_named(tmp_path, raw_dir):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("u.data", "u.item"):
        (broken / name).write_bytes((raw_dir / name).read_bytes())
    with pytest.raises(tfds_source.DataSourceError, match="has no 'u.user'"):
        _run(tmp_path, broken, "bad")
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").rglob("*.gz"))


def test_malformed_ratings_line_is_named(tmp_path, raw_dir):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("u.item", "u.user"):
        (broken / name).write_bytes((raw_dir / name).read_bytes())
    lines = (raw_dir / "u.data").read_text().splitlines()
    lines[6] = "1\t2\tfive\t881250949"
    (broken / "u.data").write_text("\n".join(lines) + "\n")
    with pytest.raises(tfds_source.DataSourceError, match=r"u.data, line 7: rating 'five'"):
        _run(tmp_path, broken, "bad")
    assert not list((tmp_path / "tfds").glob("raw-*/movielens/100k-ratings/*/*.tfrecord*"))


def test_fingerprint_follows_the_raw_files_content_not_their_times(tmp_path, raw_dir):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("u.data", "u.item", "u.user"):
        (copy / name).write_bytes((raw_dir / name).read_bytes())
    before = tfds_source.raw_dir_fingerprint("100k", copy)
    (copy / "u.data").write_bytes((raw_dir / "u.data").read_bytes())  # rewritten, same content
    os.utime(copy / "u.data", (1, 1))
    assert tfds_source.raw_dir_fingerprint("100k", copy) == before
    with open(copy / "u.data", "a") as ratings:
        ratings.write("1\t1\t5\t881250949\n")
    assert tfds_source.raw_dir_fingerprint("100k", copy) != before


@pytest.mark.parametrize("version", ["1m", "latest-small", "25m"])
def test_every_movielens_format_builds_and_meets_its_curated_schema(tmp_path, version):
    import tensorflow_data_validation as tfdv

    import schemas

    raw = synthetic.write_movielens(tmp_path / "raw", version, num_users=30, num_movies=40,
                                    ratings_per_user=8)
    dataset = f"movielens/{version}-ratings"
    examples = _run(tmp_path, raw, "out", dataset=dataset)
    first = _read_split(examples, "train")[0].features.feature
    assert first["movie_title"].bytes_list.value[0].decode().startswith("Movie ")
    assert ("user_occupation_text" in first) == (version == "1m")

    schema = tfdv.load_schema_text(schemas.schema_path(dataset))
    for split in ("train", "eval"):
        statistics = tfdv.generate_statistics_from_tfrecord(
            data_location=os.path.join(artifact_utils.get_split_uri([examples], split), "*.gz"))
        anomalies = tfdv.validate_statistics(statistics, schema)
        assert not anomalies.anomaly_info, (version, split, dict(anomalies.anomaly_info))


def test_concurrent_builds_into_one_tfds_data_dir_both_succeed(tmp_path, raw_dir):
    """Two runs sharing a TFDS data directory: without the build lock the second build fails
    renaming its finished copy onto the first's. A killed build's leftovers are removed."""
    data_dir = str(tmp_path / "tfds")
    killed_build = tmp_path / "tfds" / "movielens" / "100k-ratings" / "incomplete.ABC123_0.1.1"
    killed_build.mkdir(parents=True)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        builds = [pool.submit(tfds_source.prepare_from_raw_dir, "100k-ratings", str(raw_dir),
                              data_dir) for _ in range(2)]
        builders = [build.result() for build in builds]
    assert all(builder.is_prepared() for builder in builders)
    assert builders[0].info.splits["train"].num_examples == len(
        (raw_dir / "u.data").read_text().splitlines())
    assert not list((tmp_path / "tfds").rglob("incomplete*"))
