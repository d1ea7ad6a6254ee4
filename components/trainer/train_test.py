import numpy as np
import pytest
import tensorflow as tf

from components import features
from components.trainer import model as model_lib
from components.trainer import serving, train
from components.trainer.config import ModelConfig
from components.trainer.conftest import serialize
from components.trainer.neighbourhood import ItemNeighbourhood


def _ratings(users, movies, times, ratings=None):
    return {features.USER_INDEX: np.array(users, dtype="int64"),
            features.MOVIE_INDEX: np.array(movies, dtype="int64"),
            features.TIMESTAMP: np.array(times, dtype="int64"),
            features.RATING_LABEL: np.array(ratings or [3.0] * len(users), dtype="float32")}


def test_user_chunks_hold_consecutive_ratings_of_one_user_with_windows_ending_close():
    # User 0: 9 ratings in one second, then 4 one a minute; user 1: 3; user 2: 12 a minute.
    users = np.array([0] * 13 + [1] * 3 + [2] * 12)
    times = np.concatenate([[100] * 9, 160 + 60 * np.arange(4), [50, 60, 70],
                            60 * np.arange(12)])
    chunks = train.user_chunks(users, times, chunk_size=4)
    examples = chunks.examples[chunks.slots]
    assert sorted(examples) == list(range(len(users)))  # every rating once
    for rows, slots in zip(chunks.examples, chunks.slots, strict=True):
        held = rows[slots]
        assert slots.tolist() == sorted(slots, reverse=True) and len(held) <= 4
        assert (np.diff(held) == 1).all() and len(set(users[held])) == 1
        assert (rows[~slots] == held[0]).all()  # padding repeats the first example
        # The windows (ratings before each one's time) end within 2 * 4 - 1 positions.
        ends = np.searchsorted(users * 2**32 + times, users[held] * 2**32 + times[held])
        assert ends.max() - ends.min() <= 7
    # User 0's same-second ratings share an end (its first position), the next ones end 9 to
    # 12 positions later: no chunk holds both.
    assert chunks.examples[:4].tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 8, 8, 8],
                                            [9, 10, 11, 12]]
    assert chunks.slots[2].tolist() == [True, False, False, False]
    assert len(chunks.examples) == 4 + 1 + 3
    single = train.user_chunks(users, times, chunk_size=1)
    assert single.examples[:, 0].tolist() == list(range(len(users))) and single.slots.all()


def test_user_chunks_are_cut_the_same_across_the_blocks_they_are_read_in(monkeypatch):
    rng = np.random.default_rng(0)
    users, times = np.sort(rng.integers(0, 6, 200)), rng.integers(0, 30, 200) * 60
    order = np.lexsort([times, users])
    whole = train.user_chunks(users[order], times[order], chunk_size=4)
    monkeypatch.setattr(train, "_CHUNKING_BLOCK", 7)
    blocks = train.user_chunks(users[order], times[order], chunk_size=4)
    np.testing.assert_array_equal(blocks.examples, whole.examples)
    np.testing.assert_array_equal(blocks.slots, whole.slots)


def test_user_chunks_refuse_unsorted_examples_and_a_chunk_size_below_one():
    with pytest.raises(ValueError, match="sorted by user index, then time"):
        train.user_chunks(np.array([0, 0]), np.array([5, 4]), 2)
    with pytest.raises(ValueError, match="user_chunk_size must be at least 1"):
        train.user_chunks(np.array([0]), np.array([5]), 0)


def test_shuffled_chunk_batches_cover_every_chunk_once_a_pass_in_a_seeded_order():
    users = np.repeat(np.arange(5), 4)
    columns = {features.USER_INDEX: users, features.TIMESTAMP: np.arange(20) * 100,
               features.MOVIE_INDEX: np.arange(20)}
    chunks = train.user_chunks(users, columns[features.TIMESTAMP], chunk_size=2)  # 10 chunks
    batches = [batch for _, batch in zip(
        range(8), train.shuffled_chunk_batches(columns, chunks, 4, seed=1).as_numpy_iterator(),
        strict=False)]
    assert [len(batch[features.USER_INDEX]) for batch in batches] == [4, 4, 2] * 2 + [4, 4]
    first, second = (np.concatenate([b[features.MOVIE_INDEX].ravel() for b in batches[i:i + 3]])
                     for i in (0, 3))
    assert sorted(first) == sorted(second) == list(range(20))
    assert first.tolist() != second.tolist()  # a new order every pass
    for batch in batches:
        assert batch[features.MOVIE_INDEX].shape == batch[model_lib.CHUNK_SLOTS].shape
        assert (users[batch[features.MOVIE_INDEX]] == batch[features.USER_INDEX][:, None]).all()
    again = next(train.shuffled_chunk_batches(columns, chunks, 4, seed=1).as_numpy_iterator())
    assert again[features.MOVIE_INDEX].tolist() == batches[0][features.MOVIE_INDEX].tolist()


@pytest.mark.parametrize("size", [8, 10, 3])
def test_batches_in_order_are_the_rows_in_order_the_last_batch_partial(size):
    columns = {"row": np.arange(size), "window": np.arange(size * 2).reshape(size, 2)}
    batches = list(train.batches_in_order(columns, 4).as_numpy_iterator())
    assert [len(batch["row"]) for batch in batches] == [4] * (size // 4) + (
        [size % 4] if size % 4 else [])
    for name, values in columns.items():
        np.testing.assert_array_equal(np.concatenate([b[name] for b in batches]), values)


def test_validation_slice_follows_the_ratings_identity_not_its_bytes():
    def example(user, title, time, **extra):
        feature = {features.USER_ID: [user], features.MOVIE_TITLE: [title], **extra}
        proto = tf.train.Example(features=tf.train.Features(feature={
            name: tf.train.Feature(bytes_list=tf.train.BytesList(value=value))
            for name, value in feature.items()}))
        proto.features.feature[features.TIMESTAMP].int64_list.value.append(time)
        return proto.SerializeToString()

    plain = [example(str(u).encode(), b"T", 100 + u) for u in range(400)]
    padded = [example(str(u).encode(), b"T", 100 + u, user_zip_code=[b"12345"])
              for u in range(400)]
    assert plain[0] != padded[0]
    first = train.records_in_validation_slice(np.array(plain), 0.2, "random")
    assert first.tolist() == train.records_in_validation_slice(np.array(padded), 0.2,
                                                               "random").tolist()
    assert 40 < first.sum() < 120


def test_histories_are_in_time_order_per_user():
    histories = train.user_histories(
        _ratings([0, 0, 1, 2], [1, 0, 1, 2], [50, 40, 7, 9], [1.0, 2.0, 3.0, 4.0]), num_users=2)
    assert histories.row_splits.tolist() == [0, 2, 3, 4]
    assert histories.movies.tolist() == [0, 1, 1, 2] and histories.times.tolist() == [40, 50, 7, 9]
    assert histories.ratings.tolist() == [2.0, 1.0, 3.0, 4.0]
    assert train.user_histories({}, num_users=2).row_splits.tolist() == [0, 0, 0, 0]


def test_model_inputs_do_not_depend_on_the_order_of_the_records(analyze_ratings):
    rows = [{"user_id": [user], "movie_title": [title], "movie_genres": [0],
             "user_rating": [rating], "timestamp": [time]}
            for user, title, rating, time in [(b"1", b"A", 4.0, 30), (b"2", b"B", 2.0, 10),
                                              (b"1", b"B", 5.0, 20), (b"2", b"A", 1.0, 10)]]
    output, records = analyze_ratings(rows)
    first, second = (train.model_inputs(tf.data.Dataset.from_tensor_slices(ordered), output)
                     for ordered in (records, records[::-1]))
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    keys = list(zip(first[features.USER_INDEX].tolist(), first[features.TIMESTAMP].tolist(),
                    strict=True))
    assert keys == sorted(keys) and len(keys) == 4


def test_the_time_rule_holds_out_the_latest_ratings():
    times = np.array([50, 10, 40, 30, 20, 60, 70, 80, 90, 100])
    assert np.flatnonzero(train.latest_fraction(times, 0.2)).tolist() == [8, 9]
    assert not train.latest_fraction(times, 0.0).any()


def test_validation_mask_from_raw_values_is_the_slice_of_the_records():
    users = [str(u).encode() for u in range(300)]
    titles = [b"T%d" % (u % 7) for u in range(300)]
    times = list(range(1_000, 1_300))
    rows = [{features.USER_ID: [u], features.MOVIE_TITLE: [t], features.TIMESTAMP: [time]}
            for u, t, time in zip(users, titles, times, strict=True)]
    records = np.array(serialize(rows))
    mask = train.validation_mask(np.array(users), np.array(titles), np.array(times), 0.3,
                                 "random")
    assert mask.tolist() == train.records_in_validation_slice(records, 0.3, "random").tolist()
    assert 50 < mask.sum() < 130
    latest = train.validation_mask(np.array(users), np.array(titles), np.array(times), 0.1,
                                   "time")
    assert np.flatnonzero(latest).tolist() == list(range(270, 300))
    assert train.records_in_validation_slice(records, 0.1, "time").tolist() == latest.tolist()
    with pytest.raises(ValueError, match="validation_split must be"):
        train.validation_mask(np.array(users), np.array(titles), np.array(times), 0.1, "hash")


def test_checks_score_an_even_spread_of_a_large_validation_slice():
    assert train.evenly_spread(5, 10).tolist() == [0, 1, 2, 3, 4]
    spread = train.evenly_spread(1_000, 4)
    assert spread.tolist() == [0, 250, 500, 750]
    users = np.repeat(np.arange(100), 50)  # records in file order: grouped by user
    assert len(set(users[train.evenly_spread(len(users), 200)])) == 100


def test_a_check_replays_each_ratings_earlier_slice_ratings_of_its_user_as_its_request():
    # The slice as model_inputs sorts it: by user, then time.
    validation = _ratings([0, 0, 0, 0, 1, 1], [5, 6, 7, 8, 5, 9], [10, 20, 20, 30, 15, 40],
                          [1.0, 2.0, 3.0, 4.0, 5.0, 1.5])
    request = train.earlier_slice_ratings(validation, train.user_histories(validation, 2),
                                          np.array([0, 1, 3, 5]), size=2)
    movies, times, ratings, valid = (request[name] for name in model_lib.REQUEST_COLUMNS)
    # Strictly earlier only (row 2 shares row 1's second), the latest `size`, oldest first.
    assert valid.tolist() == [[False, False], [False, True], [True, True], [False, True]]
    assert movies[valid].tolist() == [5, 6, 7, 5]
    assert times[valid].tolist() == [10, 20, 20, 15]
    assert ratings[valid].tolist() == [1.0, 2.0, 3.0, 5.0]
    assert movies.dtype == times.dtype == np.int64 and ratings.dtype == np.float32


def test_no_check_before_the_first_monitored_one_stops_training_cuts_the_rate_or_is_kept():
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(1,))])
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="mse")
    config = ModelConfig(early_stopping_patience=2, learning_rate_patience=1,
                         learning_rate_drop=0.5)
    callbacks = tf.keras.callbacks.CallbackList(
        train.validation_callbacks(config, first_check=3), model=model)
    callbacks.on_train_begin()
    rates, stopped = [], []
    # Checks 0-2 get worse (check 0 is the lowest of all); from check 3 on they are read.
    for check, loss in enumerate([1.0, 1.5, 2.0, 2.5, 2.6, 2.7]):
        model.layers[0].bias.assign([float(check)])  # marks whose weights each check scored
        callbacks.on_epoch_end(check, {"val_loss": loss})
        rates.append(float(model.optimizer.learning_rate))
        stopped.append(model.stop_training)
    assert rates == pytest.approx([0.01, 0.01, 0.01, 0.01, 0.005, 0.0025])
    assert stopped == [False] * 5 + [True]
    callbacks.on_train_end()
    assert float(model.layers[0].bias[0]) == 3.0  # the best monitored check's weights


def test_the_first_monitored_check_is_the_first_after_the_minimum_passes():
    assert train.first_monitored_check(72_116, 72_116, 1.0) == 0  # a check each pass
    assert train.first_monitored_check(709_659, 250_880, 1.0) == 2  # after 752,640 examples
    assert train.first_monitored_check(22_500_000, 250_880, 1.0) == 89
    assert train.first_monitored_check(1_000, 250, 2.0) == 7
    assert train.first_monitored_check(1_000, 250, 0.0) == 0


def test_checks_that_improve_by_less_than_the_threshold_stop_training_and_cut_the_rate():
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(1,))])
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="mse")
    config = ModelConfig(early_stopping_patience=2, learning_rate_patience=1,
                         learning_rate_drop=0.5, min_improvement=1e-4)
    callbacks = tf.keras.callbacks.CallbackList(train.validation_callbacks(config), model=model)
    callbacks.on_train_begin()
    rates = []
    for epoch, loss in enumerate([1.0, 0.99995, 0.99991]):  # each less than 1e-4 below 1.0
        callbacks.on_epoch_end(epoch, {"val_loss": loss})
        rates.append(float(model.optimizer.learning_rate))
    assert model.stop_training
    assert rates == pytest.approx([0.01, 0.005, 0.0025])


def _checks(config: ModelConfig, checks_within_pass: bool,
            losses: list[float]) -> tuple[list[float], int, float]:
    """Each check's learning rate after it, the number of checks made before stopping, and
    the check whose weights training kept (a bias marks the weights each check scored)."""
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(1,))])
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="mse")
    callbacks = tf.keras.callbacks.CallbackList(
        train.validation_callbacks(config, checks_within_pass=checks_within_pass), model=model)
    callbacks.on_train_begin()
    rates = []
    for check, loss in enumerate(losses):
        model.layers[0].bias.assign([float(check)])
        callbacks.on_epoch_end(check, {"val_loss": loss})
        rates.append(float(model.optimizer.learning_rate))
        if model.stop_training:
            break
    callbacks.on_train_end()
    return rates, len(rates), float(model.layers[0].bias[0])


def test_checks_of_whole_passes_cut_the_rate_at_each_stall_and_stop_at_the_second():
    config = ModelConfig(early_stopping_patience=2, learning_rate_patience=1,
                         learning_rate_drop=0.5, within_pass_rate_hold=3, within_pass_cuts=1)
    rates, checks, kept = _checks(config, False, [1.0, 0.9, 0.95, 0.8, 0.85, 0.85, 0.85])
    assert rates == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.0025, 0.00125])
    assert checks == 6 and kept == 3.0


def test_checks_within_a_pass_hold_each_cut_rate_and_stop_at_a_stall_after_the_last_cut():
    config = ModelConfig(early_stopping_patience=2, learning_rate_patience=1,
                         learning_rate_drop=0.5, within_pass_rate_hold=3, within_pass_cuts=2)
    # Stalls at checks 1 (a cut), 2 and 3 (held: no cut, no stop), 4 (the second cut), 6 (held)
    # and 7 (after the last cut: the stop). Check 5 is the best.
    rates, checks, kept = _checks(config, True, [1.0, 1.0, 1.0, 1.0, 1.0, 0.9, 0.95, 0.95, 0.5])
    assert rates == pytest.approx([0.01, 0.005, 0.005, 0.005, 0.0025, 0.0025, 0.0025, 0.0025])
    assert checks == 8 and kept == 5.0


def test_the_rating_blend_is_fitted_on_the_validation_ratings_of_users_with_a_history():
    """Stars that are exactly 0.3 x the head's rating + 0.6 x the neighbourhood model's + 0.5
    give back those weights; the ratings of a user without a fit-part rating (rated by the
    cold-start rule when served) would pull them anywhere if they counted."""
    rng = np.random.default_rng(0)
    num_users, num_movies = 6, 12
    fit_part = _ratings(np.repeat(np.arange(5), 6), rng.integers(0, num_movies, 30),
                        np.arange(30) * 100, list(rng.integers(1, 6, 30).astype(float)))
    histories = train.user_histories(fit_part, num_users)
    config = ModelConfig(embedding_dim=8)
    model = model_lib.build_model(num_users, num_movies, config,
                                  np.zeros((num_movies, features.NUM_GENRES), np.float32),
                                  histories)
    neighbours = ItemNeighbourhood.fit(histories, num_movies, size=3, history_size=8,
                                       shrinkage=1.0, max_titles=num_movies)
    validation = _ratings(np.repeat(np.arange(6), 5), rng.integers(0, num_movies, 30),
                          np.arange(30) * 100 + 50)
    validation.update(train.earlier_slice_ratings(
        validation, train.user_histories(validation, num_users), np.arange(30), size=4))
    columns = {name: tf.constant(values) for name, values in validation.items()}
    head = model(columns)[2].numpy()
    estimates = neighbours.rate(model.user_tower.history, columns[features.USER_INDEX],
                                columns[features.MOVIE_INDEX],
                                model_lib.RatingWindow(*(columns[name] for name in
                                                         model_lib.REQUEST_COLUMNS))).numpy()
    stars = 0.3 * head + 0.6 * estimates + 0.5
    stars[validation[features.USER_INDEX] == 5] = 100.0
    validation[features.RATING_LABEL] = stars.astype(np.float32)
    blend = train.fitted_blend(model, neighbours, validation, histories,
                               (-np.inf, np.inf), batch_size=7)
    np.testing.assert_allclose(blend, [0.3, 0.6, 0.5], atol=1e-3)
    unseen_only = {name: values[validation[features.USER_INDEX] == 5]
                   for name, values in validation.items()}
    assert train.fitted_blend(model, neighbours, unseen_only, histories, (1.0, 5.0),
                              batch_size=7) == serving.HEAD_ALONE
