"""Server-side batching: concurrent requests to one signature joined into one TensorFlow call.

Each call into a SavedModel has a fixed cost (about 0.3 ms on a small machine, more than a
one-user ScaNN search), so under load the server does better running the requests that
arrived together as one batch. The batching here adds no wait: a request that finds its
signature idle runs at once, alone, at the cost of a lock (0.02 ms); requests that arrive
while a call runs queue up and go together as the next call (up to `max_batch_size` rows), led
by the first of them. At low load every request runs alone, as without batching; under load
batches grow by themselves.

Only signatures whose inputs are all batches of scalars ([B]) and whose outputs all start
with the batch dimension are joined (not, say, `catalogue_scores`, whose `titles` output is
the whole catalogue); the others run per request. A joined call that fails is run again per
request, so each request gets its own answer or its own error.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from typing import Callable

import numpy as np
import tensorflow as tf

Arrays = dict[str, np.ndarray]


def is_batchable(function) -> bool:
    """Whether a signature's inputs are all [B] and its outputs all [B, ...]."""
    inputs = tf.nest.flatten(function.structured_input_signature)
    outputs = tf.nest.flatten(function.structured_outputs)
    return all(spec.shape.rank == 1 for spec in inputs) and all(
        spec.shape.rank and spec.shape[0] is None for spec in outputs)


@dataclasses.dataclass(eq=False)
class _Request:
    inputs: Arrays
    rows: int
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    leads: bool = False
    outputs: Arrays | None = None
    error: Exception | None = None


class Batcher:
    """Runs `function(**inputs)` (numpy arrays in and out) for the requests of one signature,
    joining concurrent ones into calls of at most `max_batch_size` rows (None: no limit). Joining
    and splitting are numpy's (views, no TensorFlow op per request)."""

    def __init__(self, function: Callable[..., Arrays], max_batch_size: int | None = None):
        self._function = function
        self._max_batch_size = max_batch_size
        self._lock = threading.Lock()
        self._queue: collections.deque[_Request] = collections.deque()
        self._busy = False

    def __call__(self, **inputs: np.ndarray) -> Arrays:
        request = None
        with self._lock:
            alone = not self._busy
            if alone:
                self._busy = True
            else:
                rows = {len(array) for array in inputs.values()}
                # Inputs of different lengths: the signature's own error, alone.
                if len(rows) == 1:
                    request = _Request(inputs, rows.pop())
                    self._queue.append(request)
        if alone:
            try:
                return self._function(**inputs)
            finally:
                self._hand_over()
        if request is None:
            return self._function(**inputs)
        request.done.wait()
        if request.leads:
            self._lead()
        if request.error is not None:
            raise request.error
        return request.outputs

    def _lead(self) -> None:
        """Runs the queue's head batch (the leader is its first request), then hands the lead
        on."""
        with self._lock:
            batch, rows = [], 0
            while self._queue and (not batch or self._max_batch_size is None
                                   or rows + self._queue[0].rows <= self._max_batch_size):
                batch.append(self._queue.popleft())
                rows += batch[-1].rows
        self._run(batch)
        self._hand_over()
        for request in batch:
            request.leads = False
            request.done.set()

    def _hand_over(self) -> None:
        """After a call: the next queued request leads the next batch, or the signature is
        idle."""
        with self._lock:
            if self._queue:
                self._queue[0].leads = True
                self._queue[0].done.set()
            else:
                self._busy = False

    def _run(self, batch: list[_Request]) -> None:
        if len(batch) > 1:
            try:
                outputs = self._function(**{
                    name: np.concatenate([request.inputs[name] for request in batch])
                    for name in batch[0].inputs})
            except Exception:  # run each alone: every request gets its own error
                pass
            else:
                start = 0
                for request in batch:
                    request.outputs = {name: value[start:start + request.rows]
                                       for name, value in outputs.items()}
                    start += request.rows
                return
        for request in batch:
            try:
                request.outputs = self._function(**request.inputs)
            except Exception as error:
                request.error = error
