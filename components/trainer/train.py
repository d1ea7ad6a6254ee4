"""Trainer's `run_fn`: trains the multi-task model and exports the serving module.

Reads ExampleGen's raw examples and applies Transform's graph in the input pipeline, so the
same graph serves training, the catalogue and raw-input serving.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx.components.trainer.fn_args_utils import FnArgs

from components import features, rating_slices
from components.trainer import config as config_lib
from components.trainer import histories as histories_lib
from components.trainer import model as model_lib
from components.trainer import serving
from components.trainer.catalogue import Catalogue
from components.trainer.neighbourhood import ItemNeighbourhood

MODEL_INPUTS = (features.USER_INDEX, features.MOVIE_INDEX, features.RATING_LABEL)


def read_records(file_patterns: list[str]) -> tf.data.Dataset:
    files = sorted(path for pattern in file_patterns for path in tf.io.gfile.glob(pattern))
    return tf.data.TFRecordDataset(files, compression_type="GZIP")


VALIDATION = "is_validation"


def in_validation_slice(user_id: tf.Tensor, movie_title: tf.Tensor, timestamp: tf.Tensor,
                        fraction: float) -> tf.Tensor:
    """Which ratings the validation slice takes, by the rating's identity (rating_slices)."""
    return rating_slices.in_slice(user_id, movie_title, timestamp, fraction,
                                  rating_slices.VALIDATION_SALT)


def records_in_validation_slice(records: np.ndarray, fraction: float,
                                validation_split: str) -> np.ndarray:
    """[n] bool: which of the serialized examples the Trainer's validation slice takes."""
    raw = tf.io.parse_example(records, {
        features.USER_ID: tf.io.FixedLenFeature([], tf.string),
        features.MOVIE_TITLE: tf.io.FixedLenFeature([], tf.string),
        features.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64)})
    return validation_mask(raw[features.USER_ID].numpy(), raw[features.MOVIE_TITLE].numpy(),
                           raw[features.TIMESTAMP].numpy(), fraction, validation_split)


def model_inputs(records: tf.data.Dataset, tf_transform_output: tft.TFTransformOutput,
                 validation_fraction: float = 0.0,
                 validation_split: str = config_lib.RANDOM_VALIDATION) -> dict[str, np.ndarray]:
    """Raw examples parsed and put through Transform's graph in large batches, as numpy
    columns: MODEL_INPUTS, the raw timestamp
    (the request time: nothing for Transform to learn from it), and VALIDATION (by the rating's
    hash, or under `validation_split="time"` the latest `validation_fraction`). Rows are in
    one canonical order (user, time, title, rating), so that training depends on which
    ratings ExampleGen wrote, not on the order it wrote them in."""
    transform = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    raw_spec = {name: raw_spec[name] for name in (
        features.USER_ID, features.MOVIE_TITLE, features.RATING, features.TIMESTAMP)}

    # Traced as written: converting Transform's graph and this function for AutoGraph took
    # 1.1 of the 1.7 s that reading ml-100k's examples took (the same columns).
    @tf.autograph.experimental.do_not_convert
    def parse_and_transform(batch):
        raw = tf.io.parse_example(batch, raw_spec)
        transformed = transform(raw)
        columns = {name: transformed[name] for name in MODEL_INPUTS}
        columns[features.TIMESTAMP] = tf.reshape(raw[features.TIMESTAMP], [-1])
        columns[VALIDATION] = in_validation_slice(
            tf.reshape(raw[features.USER_ID], [-1]), tf.reshape(raw[features.MOVIE_TITLE], [-1]),
            columns[features.TIMESTAMP], validation_fraction)
        return columns

    batches = list(records.batch(65536).map(parse_and_transform,
                                            num_parallel_calls=tf.data.AUTOTUNE)
                   .prefetch(2).as_numpy_iterator())
    if not batches:
        return {}
    columns = {name: np.concatenate([batch[name] for batch in batches]) for name in batches[0]}
    if _checked_rule(validation_split) == config_lib.TIME_VALIDATION:
        columns[VALIDATION] = latest_fraction(columns[features.TIMESTAMP], validation_fraction)
    order = np.lexsort([columns[name] for name in (
        features.RATING_LABEL, features.MOVIE_INDEX, features.TIMESTAMP, features.USER_INDEX)])
    return {name: column[order] for name, column in columns.items()}


def _checked_rule(validation_split: str) -> str:
    if validation_split not in (config_lib.RANDOM_VALIDATION, config_lib.TIME_VALIDATION):
        raise ValueError(f"validation_split must be {config_lib.RANDOM_VALIDATION!r} or "
                         f"{config_lib.TIME_VALIDATION!r}, got {validation_split!r}.")
    return validation_split


def validation_mask(user_ids: np.ndarray, movie_titles: np.ndarray, timestamps: np.ndarray,
                    fraction: float, validation_split: str) -> np.ndarray:
    """[n] bool: the ratings the Trainer's validation slice takes, from their raw values (what
    model_inputs decides in its input pipeline; the quality benchmark's peers tune on it)."""
    if _checked_rule(validation_split) == config_lib.TIME_VALIDATION:
        return latest_fraction(timestamps, fraction)
    return in_validation_slice(user_ids, movie_titles, timestamps, fraction).numpy()


def latest_fraction(timestamps: np.ndarray, fraction: float) -> np.ndarray:
    """[n] bool: the ratings at or after the (1 - fraction) quantile of the times (none when
    fraction is 0)."""
    if fraction <= 0 or not len(timestamps):
        return np.zeros(len(timestamps), dtype=bool)
    return timestamps >= np.quantile(timestamps, 1.0 - fraction, method="higher")


def evenly_spread(size: int, count: int) -> np.ndarray:
    """Indices of `count` rows spread evenly over `size` (all of them when size <= count): a
    fixed sample, so that every check scores the same rows."""
    if size <= count:
        return np.arange(size)
    return np.arange(count, dtype=np.int64) * size // count


_CHUNKING_BLOCK = 1 << 20


@dataclasses.dataclass(frozen=True)
class UserChunks:
    """Training examples grouped in chunks of ratings of one user close in time:
    `examples[c]` are chunk c's rows of the example columns, `slots[c]` False where a chunk
    shorter than the others is padded (with its own first example)."""

    examples: np.ndarray  # [chunks, chunk_size] int64
    slots: np.ndarray  # [chunks, chunk_size] bool


def user_chunks(users: np.ndarray, times: np.ndarray, chunk_size: int) -> UserChunks:
    """`users` and `times` [n] (sorted by user, then time, as model_inputs orders them) in
    chunks of at most `chunk_size` consecutive ratings of one user whose windows of earlier
    ratings (model.HistoryTable.ends over these ratings) end within `2 * chunk_size - 1`
    positions of each other: the user tower reads one window for a whole chunk
    (model.UserTower.chunk_vectors), `2 * chunk_size - 1` ratings longer than one example's.
    Chunks are cut greedily, in order. Ratings made in the same second share an end; bounding
    the ends' spread by `chunk_size - 1` instead left 11.8 % of ml-100k's slots padding, not
    2.1 % (chunks of 4; of 8: 8.7 and 3.2 %)."""
    if chunk_size < 1:
        raise ValueError(f"user_chunk_size must be at least 1, got {chunk_size}.")
    users = np.asarray(users, np.int64)
    keys = users * (model_lib.LATEST_TIME + 1) + np.clip(times, 0, model_lib.LATEST_TIME)
    if np.any(np.diff(keys) < 0):
        raise ValueError("Training examples must be sorted by user index, then time.")
    ends = np.searchsorted(keys, keys, side="left")
    # Cutting greedily does not vectorise: about 3 s for 10 M ratings (AMD EPYC, 2 cores), a
    # block at a time, so that the Python ints it reads stay a block's (a whole 22 M-rating
    # set's took 2.3 GB at once).
    block_starts, count, first_end, user = [], chunk_size, 0, -1
    for offset in range(0, len(keys), _CHUNKING_BLOCK):
        starts = []
        for position, (example_user, end) in enumerate(
                zip(users[offset:offset + _CHUNKING_BLOCK].tolist(),
                    ends[offset:offset + _CHUNKING_BLOCK].tolist(), strict=True), offset):
            if example_user != user or count == chunk_size or end - first_end >= 2 * chunk_size:
                starts.append(position)
                count, first_end, user = 0, end, example_user
            count += 1
        block_starts.append(np.array(starts, np.int64))
    starts = np.concatenate(block_starts) if block_starts else np.zeros(0, np.int64)
    counts = np.diff(np.append(starts, len(keys)))
    slot = np.arange(chunk_size)[None, :]
    slots = slot < counts[:, None]
    return UserChunks(np.where(slots, starts[:, None] + slot, starts[:, None]), slots)


def chunks_per_batch(batch_size: int, chunk_size: int) -> int:
    """How many user chunks a training batch of `batch_size` slots holds (at least one)."""
    return max(batch_size // chunk_size, 1)


def shuffled_chunk_batches(columns: dict[str, np.ndarray], chunks: UserChunks,
                           chunks_per_batch: int, seed: int) -> tf.data.Dataset:
    """Endless training batches of `columns` (model.CHUNK_SLOTS' layout: the user index per
    chunk, the other columns per chunk and slot): each pass over the chunks in a new order
    (seeded), its last batch partial. Batches are gathered by index, never element by
    element."""
    tensors = {name: tf.constant(values) for name, values in columns.items()}
    examples, slots = tf.constant(chunks.examples), tf.constant(chunks.slots)
    size = len(chunks.examples)
    num_batches = -(-size // chunks_per_batch)

    def batches_of_one_pass(pass_seed):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(size, dtype=tf.int64), seed=tf.stack([pass_seed, tf.constant(0, tf.int64)]))
        return tf.data.Dataset.range(num_batches).map(
            lambda batch: order[batch * chunks_per_batch:(batch + 1) * chunks_per_batch])

    def batch_of(picked):
        rows = tf.gather(examples, picked)
        batch = {name: tf.gather(tensor, rows) for name, tensor in tensors.items()}
        batch[features.USER_INDEX] = batch[features.USER_INDEX][:, 0]
        batch[model_lib.CHUNK_SLOTS] = tf.gather(slots, picked)
        return batch

    return without_autotune(
        tf.data.Dataset.random(seed=seed).flat_map(batches_of_one_pass).map(batch_of)
        .prefetch(2))


def batches_in_order(columns: dict[str, np.ndarray], batch_size: int) -> tf.data.Dataset:
    """`columns` in batches of `batch_size` in their order, the last one partial; each element
    is sliced from the arrays once, so iterating again (every validation check) copies whole
    batches, where `from_tensor_slices(columns).batch()` slices every row again (0.25 to 0.33
    against 0.01 to 0.03 s a pass over 99k rows with their request windows)."""
    size = len(next(iter(columns.values())))
    full = size // batch_size * batch_size
    batches = tf.data.Dataset.from_tensor_slices(
        {name: values[:full].reshape(-1, batch_size, *values.shape[1:])
         for name, values in columns.items()})
    if full < size:
        batches = batches.concatenate(tf.data.Dataset.from_tensors(
            {name: values[full:] for name, values in columns.items()}))
    return without_autotune(batches)


def without_autotune(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset` with tf.data's autotuning off. Its gather-by-index pipeline needs none, and on
    2 cores, with it on, Keras' fit ran training steps on one core about half the time (128 ms a
    step of 1,024 examples instead of 85 ms)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def earlier_slice_ratings(validation: dict[str, np.ndarray],
                          validation_histories: histories_lib.UserHistories, rows: np.ndarray,
                          size: int) -> dict[str, np.ndarray]:
    """For each of `rows` of the validation slice: the latest `size` of its user's slice
    ratings made strictly before it, oldest first, as model.REQUEST_COLUMNS [len(rows), size]
    (invalid slots pad), read from the slice's own histories (`validation_histories`) as the
    user tower reads its stored ones (model.HistoryTable.earlier).

    A check asks each rating as the served model is asked live, with the user's ratings that
    the stored (fit part's) history lacks in the request. Without them a check saw the fit
    part's history alone: under the time rule, none of the user's ratings of the days before,
    so the session term went untrained (training stopped after one pass)."""
    history = model_lib.HistoryTable(validation_histories)
    window = history.window(*history.earlier(tf.constant(validation[features.USER_INDEX][rows]),
                                             tf.constant(validation[features.TIMESTAMP][rows]),
                                             size))
    return dict(zip(model_lib.REQUEST_COLUMNS, (window.movies.numpy(), window.times.numpy(),
                                                window.ratings.numpy(), window.valid.numpy()),
                    strict=True))


class ReduceLROnPlateauFrom(tf.keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau that reads no check before `start_from_epoch` (as EarlyStopping's
    argument of that name does) and cuts the rate at most `max_cuts` times (0: no limit);
    `exhausted` once a check stalls for `patience` checks after the last cut."""

    def __init__(self, start_from_epoch: int = 0, max_cuts: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.start_from_epoch = start_from_epoch
        self.max_cuts = max_cuts
        self.cuts = 0

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_from_epoch:
            if logs is not None:
                logs["lr"] = float(self.model.optimizer.learning_rate)
            return
        rate = float(self.model.optimizer.learning_rate)
        if self.max_cuts and self.cuts >= self.max_cuts:
            self.min_lr = rate  # Keras cuts only a rate above min_lr
        super().on_epoch_end(epoch, logs)
        self.cuts += float(self.model.optimizer.learning_rate) < rate

    @property
    def exhausted(self) -> bool:
        return bool(self.max_cuts) and self.cuts >= self.max_cuts and self.wait >= self.patience


class EarlyStoppingAtHeldRates(tf.keras.callbacks.EarlyStopping):
    """EarlyStopping that does not count the checks during `rates`' cooldown (a rate just cut
    is held) and stops once `rates` is exhausted (a stall after its last cut)."""

    def __init__(self, rates: ReduceLROnPlateauFrom, **kwargs):
        super().__init__(**kwargs)
        self.rates = rates

    def on_epoch_end(self, epoch, logs=None):
        if self.rates.in_cooldown():
            self.wait = 0
        super().on_epoch_end(epoch, logs)
        if self.rates.exhausted:
            self.stopped_epoch = epoch
            self.model.stop_training = True


def first_monitored_check(examples: int, examples_per_check: int, minimum_passes: float) -> int:
    """The index of the first check made after `minimum_passes` passes over `examples`, with
    `examples_per_check` trained before each check."""
    return max(math.ceil(minimum_passes * examples / examples_per_check) - 1, 0)


def validation_callbacks(config: config_lib.ModelConfig, first_check: int = 0,
                         checks_within_pass: bool = False) -> list[tf.keras.callbacks.Callback]:
    """Early stopping (the best check's weights kept) and the learning-rate cuts, both on the
    validation loss from check `first_check` on, and both counting a check as better only by
    `min_improvement`. Checks made within a pass hold each cut rate for
    `within_pass_rate_hold` checks (no cut and no stop in them), and stop at the first stall
    after `within_pass_cuts` cuts."""
    stopping = dict(monitor="val_loss", patience=config.early_stopping_patience,
                    min_delta=config.min_improvement, restore_best_weights=True,
                    start_from_epoch=first_check)
    if config.learning_rate_drop == 1.0:
        return [tf.keras.callbacks.EarlyStopping(**stopping)]
    rates = ReduceLROnPlateauFrom(
        start_from_epoch=first_check, monitor="val_loss", factor=config.learning_rate_drop,
        patience=config.learning_rate_patience, min_delta=config.min_improvement,
        cooldown=config.within_pass_rate_hold if checks_within_pass else 0,
        max_cuts=config.within_pass_cuts if checks_within_pass else 0, verbose=1)
    # The rates first: early stopping reads what this check did to them.
    return [rates, EarlyStoppingAtHeldRates(rates, **stopping)]


def user_histories(inputs: dict[str, np.ndarray], num_users: int) -> histories_lib.UserHistories:
    """For each user index (OOV last), the movies rated in `inputs`, when and how, in time
    order."""
    if not inputs:
        empty = np.zeros(0, np.int64)
        return histories_lib.UserHistories.from_ratings(empty, empty, empty,
                                                        np.zeros(0, np.float32), num_users)
    return histories_lib.UserHistories.from_ratings(
        inputs[features.USER_INDEX], inputs[features.MOVIE_INDEX], inputs[features.TIMESTAMP],
        inputs[features.RATING_LABEL], num_users)


def fitted_blend(model: model_lib.MultiTaskRecommender, neighbourhood: ItemNeighbourhood,
                 validation: dict[str, np.ndarray], fit_histories: histories_lib.UserHistories,
                 rating_range: tuple[float, float], batch_size: int
                 ) -> tuple[float, float, float]:
    """(head, neighbourhood, constant): the least-squares blend of the two ratings (the
    head's clipped to `rating_range`) of the validation ratings, each asked as a check asks
    it; ratings by users without a fit-part rating are left out (the cold-start rule rates
    those)."""
    known = np.diff(fit_histories.row_splits)[validation[features.USER_INDEX]] > 0
    columns = {name: values[known] for name, values in validation.items()}
    stars = columns[features.RATING_LABEL]
    if len(stars) < 3:
        return serving.HEAD_ALONE
    head, neighbours = [], []
    for batch in batches_in_order(columns, batch_size):
        head.append(tf.clip_by_value(model(batch)[2], *rating_range).numpy())
        neighbours.append(neighbourhood.rate(
            model.user_tower.history, batch[features.USER_INDEX], batch[features.MOVIE_INDEX],
            model_lib.RatingWindow(*(batch[name] for name in model_lib.REQUEST_COLUMNS))
        ).numpy())
    ratings = np.column_stack([np.concatenate(head), np.concatenate(neighbours),
                               np.ones(len(stars))])
    weights = np.linalg.lstsq(ratings, stars, rcond=None)[0]

    def rmse(predicted):
        return float(np.sqrt(np.mean(np.square(predicted - stars))))

    logging.info("Rating blend on %d validation ratings: head %.4f, neighbourhood %.4f, blend "
                 "%.4f (RMSE); weights %s", len(stars), rmse(ratings[:, 0]),
                 rmse(np.clip(ratings[:, 1], *rating_range)),
                 rmse(np.clip(ratings @ weights, *rating_range)),
                 [round(float(w), 4) for w in weights])
    return tuple(float(w) for w in weights)


def train_module(train_file_patterns: list[str], catalogue_file_pattern: str,
                 tf_transform_output: tft.TFTransformOutput, config: config_lib.ModelConfig,
                 log_dir: str | None = None,
                 serve_validation_ratings: bool = True) -> serving.RecommenderModule:
    """Trains the model on the given raw training examples (and ExampleGen's `movies` split,
    the catalogue); returns the serving module.

    Training sees only the fit part's ratings, in the loss and in the users' histories, so the
    validation slice stays unseen. The served histories (the history term, and the rated
    titles that `_unrated` metrics leave out) add the validation slice's ratings, unless
    `serve_validation_ratings` is False: tuning scores the module on that slice.
    """
    num_users = tf_transform_output.vocabulary_size_by_name(features.USER_VOCABULARY)
    inputs = model_inputs(read_records(train_file_patterns), tf_transform_output,
                          config.validation_fraction, config.validation_split)
    if not inputs or inputs[VALIDATION].all():
        raise ValueError(f"No training examples in {train_file_patterns}.")
    fit_part = {name: column[~inputs[VALIDATION]] for name, column in inputs.items()}
    validation = {name: column[inputs[VALIDATION]] for name, column in inputs.items()}
    catalogue = Catalogue.read(catalogue_file_pattern, tf_transform_output)
    fit_histories = user_histories(fit_part, num_users)
    validation_histories = user_histories(validation, num_users)
    served_histories = fit_histories
    if serve_validation_ratings:
        served_histories = fit_histories.merged(validation_histories)

    model = model_lib.build_model(num_users, catalogue.num_movies, config,
                                  catalogue.genres_by_movie_index(), fit_histories)
    columns = (*MODEL_INPUTS, features.TIMESTAMP)
    checked = evenly_spread(len(validation[features.USER_INDEX]), config.validation_check_size)
    # What each check scores, asked as a live request is; the blend is fitted on the same.
    checked_ratings = {**{name: validation[name][checked] for name in columns},
                       **earlier_slice_ratings(validation, validation_histories, checked,
                                               config.recent_history_size)}
    examples = len(fit_part[features.USER_INDEX])
    chunks = user_chunks(fit_part[features.USER_INDEX], fit_part[features.TIMESTAMP],
                         config.user_chunk_size)
    batch_chunks = chunks_per_batch(config.batch_size, config.user_chunk_size)
    steps_per_pass = -(-len(chunks.examples) // batch_chunks)
    interval = min(examples, config.validation_interval)
    # A check is one pass (its last batch partial), or the steps that train about `interval`
    # examples (a step trains a pass's examples over its steps).
    steps_per_check = (steps_per_pass if interval == examples
                       else min(-(-interval // config.batch_size), steps_per_pass))
    examples_per_check = examples * steps_per_check / steps_per_pass
    checks = -(-config.epochs * steps_per_pass // steps_per_check)
    first_check = first_monitored_check(examples, examples_per_check, config.minimum_passes)
    within_pass = examples_per_check < examples
    logging.info("Training batches of %d chunks of up to %d ratings of one user (%d chunks, "
                 "%.1f %% of their slots padding)", batch_chunks, config.user_chunk_size,
                 len(chunks.examples), 100 * (1 - examples / chunks.slots.size))
    logging.info("Early stopping and the learning-rate cuts read the checks from check %d on "
                 "(%d examples a check, %d in a pass%s)", first_check + 1, examples_per_check,
                 examples, f"; each cut rate held for {config.within_pass_rate_hold} checks, "
                 f"at most {config.within_pass_cuts} cuts" if within_pass else "")
    logging.info("History sums in %s in training (history_sum_precision %r)",
                 "bfloat16" if model.user_tower.history_sums_in_bfloat16 else "float32",
                 config.history_sum_precision)
    callbacks = validation_callbacks(config, first_check, checks_within_pass=within_pass)
    if log_dir:
        callbacks.append(tf.keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"))
    started = time.perf_counter()
    history = model.fit(
        shuffled_chunk_batches({name: fit_part[name] for name in columns}, chunks,
                               batch_chunks, config.seed),
        steps_per_epoch=steps_per_check, epochs=checks,
        validation_data=batches_in_order(checked_ratings, config.batch_size)
        if len(checked) else None,
        verbose=2, callbacks=callbacks)
    seconds = time.perf_counter() - started
    trained = round(len(history.epoch) * examples_per_check)
    logging.info("Trained on %d examples (%.1f passes over %d) in %.1f s: %.0f examples/s "
                 "(validation included)", trained, trained / examples, examples, seconds,
                 trained / seconds)
    for term, weights in model.user_tower.learnt_time_weights().items():
        logging.info("Learnt %s term weights, by time before the request (from 1 s, %s s): %s",
                     term, config.history_time_boundaries, [float(f"{w:.4g}") for w in weights])
    stars = fit_part[features.RATING_LABEL]
    rating_range = (float(stars.min()), float(stars.max()))
    neighbourhood, blend = None, serving.HEAD_ALONE
    if config.neighbourhood_size and len(checked):
        neighbourhood = ItemNeighbourhood.fit(
            fit_histories, catalogue.num_movies, config.neighbourhood_size,
            config.neighbourhood_history_size, config.neighbourhood_shrinkage,
            config.neighbourhood_max_titles)
        blend = fitted_blend(model, neighbourhood, checked_ratings, fit_histories,
                             rating_range, config.batch_size)
        if blend == serving.HEAD_ALONE:  # nothing to fit the blend on: serve no table for it
            neighbourhood = None
    model.user_tower.history.assign(served_histories)
    return serving.RecommenderModule(
        tf_transform_output, model.user_tower, model.movie_tower, model.rating_head,
        catalogue, catalogue.rated_rows(served_histories), config.top_k,
        rating_range=rating_range, neighbourhood=neighbourhood, blend=blend,
        cold_start=catalogue.cold_start(served_histories, config.cold_start_popularity_days,
                                        config.cold_start_rating_shrinkage)
        if config.cold_start_popularity_days > 0 else None)


def run_fn(fn_args: FnArgs) -> None:
    """The pipeline's Trainer trains on two splits (its TrainArgs): the ratings and the
    catalogue, in that order; TFX's split helpers give each its file pattern."""
    train_files, catalogue_files = fn_args.train_files
    module = train_module([train_files], catalogue_files,
                          tft.TFTransformOutput(fn_args.transform_output),
                          config_lib.ModelConfig.from_custom_config(fn_args.custom_config),
                          log_dir=fn_args.model_run_dir)
    module.save(fn_args.serving_model_dir)
