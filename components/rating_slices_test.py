"""The slice rule shared by ExampleGen's eval split and the Trainer's validation slice."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from components import rating_slices


def identities(count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    users = np.array([str(index % 943).encode() for index in range(count)], dtype=object)
    titles = np.array([f"Movie {index // 943} (1995)".encode() for index in range(count)],
                      dtype=object)
    return users, titles, 874_724_710 + np.arange(count, dtype=np.int64)


def test_a_slice_takes_its_fraction_and_slices_of_other_salts_are_independent():
    users, titles, times = identities(20_000)
    validation = rating_slices.in_slice(users, titles, times, 0.2,
                                        rating_slices.VALIDATION_SALT).numpy()
    evaluation = rating_slices.in_slice(users, titles, times, 0.5,
                                        rating_slices.EVAL_SALT.format(seed=42)).numpy()
    assert 0.19 < validation.mean() < 0.21 and 0.49 < evaluation.mean() < 0.51
    assert 0.09 < (validation & evaluation).mean() < 0.11  # 0.2 * 0.5: independent
    assert not rating_slices.in_slice(users, titles, times, 0.0, "any").numpy().any()


def test_membership_depends_on_the_rating_not_on_the_batch_or_the_graph():
    users, titles, times = identities(64)
    whole = rating_slices.in_slice(users, titles, times, 0.5, "validation").numpy()
    halves = np.concatenate([rating_slices.in_slice(users[part], titles[part], times[part],
                                                    0.5, "validation").numpy()
                             for part in (slice(0, 20), slice(20, None))])
    in_graph = tf.function(lambda u, t, s: rating_slices.in_slice(u, t, s, 0.5, "validation"))(
        tf.constant(users.astype(bytes)), tf.constant(titles.astype(bytes)), tf.constant(times))
    assert whole.tolist() == halves.tolist() == in_graph.numpy().tolist()


def test_the_rule_is_pinned():
    """Changing the rule moves every rating between the slices, and every measured figure: these
    are its values on fixed ratings, pinned when it was written."""
    users = np.array([str(user).encode() for user in range(16)], dtype=object)
    titles = np.array([b"Toy Story (1995)"] * 16, dtype=object)
    times = np.arange(16) * 1000 + 874_724_710
    assert rating_slices.in_slice(users, titles, times, 0.5, "validation").numpy().astype(
        int).tolist() == [1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0]
    assert rating_slices.in_slice(users, titles, times, 0.5, rating_slices.EVAL_SALT.format(
        seed=42)).numpy().astype(int).tolist() == [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0,
                                                    1]
