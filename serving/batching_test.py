"""The batcher on a Python stand-in for a signature that can be held mid-call, so requests
provably arrive while a call runs."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from serving.batching import Batcher, is_batchable


class HeldSignature:
    """Echoes its input; the first call waits for `release`. Records each call's batch."""

    def __init__(self):
        self.batches: list[list[str]] = []
        self.release = threading.Event()
        self.first_call_started = threading.Event()

    def __call__(self, user_id: np.ndarray) -> dict[str, np.ndarray]:
        users = [value.decode() for value in user_id]
        self.batches.append(users)
        if len(self.batches) == 1:
            self.first_call_started.set()
            assert self.release.wait(30)
        if "bad" in users:
            raise ValueError("bad user")
        return {"echo": user_id, "length": np.array([len(value) for value in user_id])}


def run_held(signature: HeldSignature, batcher: Batcher, users: list[list[str]]) -> list:
    """The first request starts and is held; the others are submitted, then it is released.
    Returns each request's outputs (or error), in order."""

    def call(values):
        try:
            return batcher(user_id=np.array([value.encode() for value in values], object))
        except ValueError as error:
            return error

    with concurrent.futures.ThreadPoolExecutor(len(users)) as pool:
        first = pool.submit(call, users[0])
        assert signature.first_call_started.wait(30)
        rest = [pool.submit(call, values) for values in users[1:]]
        time.sleep(0.3)  # the others are queued behind the held call by now
        signature.release.set()
        return [first.result(30)] + [future.result(30) for future in rest]


def test_requests_arriving_during_a_call_go_together_as_the_next_one():
    signature = HeldSignature()
    users = [["first"], ["a"], ["b", "bb"], ["c"]]
    answers = run_held(signature, Batcher(signature, max_batch_size=100), users)
    assert signature.batches[0] == ["first"]
    assert sorted(signature.batches[1]) == ["a", "b", "bb", "c"] and len(signature.batches) == 2
    for values, answer in zip(users, answers, strict=True):
        assert [value.decode() for value in answer["echo"]] == values
        assert answer["length"].tolist() == [len(value) for value in values]


def test_a_joined_call_that_fails_is_run_again_per_request():
    signature = HeldSignature()
    answers = run_held(signature, Batcher(signature, max_batch_size=100),
                       [["first"], ["a"], ["bad"], ["c"]])
    assert isinstance(answers[2], ValueError)
    assert [answers[i]["echo"].tolist() for i in (0, 1, 3)] == [[b"first"], [b"a"], [b"c"]]
    assert len(signature.batches) == 5  # held, joined (failed), then a, bad and c alone


def test_no_joined_call_exceeds_the_batch_limit():
    signature = HeldSignature()
    run_held(signature, Batcher(signature, max_batch_size=3),
             [["first"], ["a", "b"], ["c", "d"], ["e"]])
    assert all(len(batch) <= 3 for batch in signature.batches)
    assert sorted(sum(signature.batches, [])) == ["a", "b", "c", "d", "e", "first"]


def test_a_request_alone_runs_at_once_and_errors_reach_their_caller():
    signature = HeldSignature()
    signature.release.set()
    batcher = Batcher(signature, max_batch_size=100)
    assert batcher(user_id=np.array([b"x"], object))["echo"].tolist() == [b"x"]
    with pytest.raises(ValueError, match="bad user"):
        batcher(user_id=np.array([b"bad"], object))


def test_only_signatures_of_batch_inputs_and_batch_outputs_are_joined():
    catalogue = tf.constant(["A", "B", "C"])

    def signature(function, *specs):
        return tf.function(function, input_signature=list(specs)).get_concrete_function()

    users = tf.TensorSpec([None], tf.string)
    assert is_batchable(signature(lambda u: {"echo": u, "pairs": tf.stack([u, u], 1)}, users))
    assert not is_batchable(signature(lambda u: {"echo": u, "titles": catalogue}, users))
    assert not is_batchable(signature(lambda u: {"echo": u[:, 0]},
                                      tf.TensorSpec([None, None], tf.string)))
