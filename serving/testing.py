"""Test helpers: a small SavedModel shaped like the pushed one (string ids in; titles and scores
from a real ScaNN index out; a rating signature; an unbatched output), versions landing as a
push lands them, and the server running in a thread of the test process."""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from components import stack
from serving import __main__ as server_main

TITLES = [f"Movie {number}".encode() for number in range(40)]
USERS = [b"alice", b"bob", b"carol"]


class ToyRecommender(tf.Module):
    """User i's vector is one-hot, so its top titles are fixed; unknown users score 0."""

    def __init__(self, offset: float = 0.0):
        super().__init__()
        rng = np.random.default_rng(0)
        movie_vectors = rng.normal(size=(len(TITLES), 8)).astype(np.float32)
        self.users = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(USERS), tf.range(len(USERS), dtype=tf.int64)), default_value=-1)
        self.user_vectors = tf.constant(np.eye(len(USERS), 8, dtype=np.float32) * 2 + offset)
        self.scann = tfrs.layers.factorized_top_k.ScaNN(
            k=3, num_leaves=4, num_leaves_to_search=4, num_reordering_candidates=40)
        self.scann.index(tf.constant(movie_vectors), tf.constant(TITLES))

    def _vectors(self, user_id):
        rows = self.users.lookup(user_id)
        return tf.where((rows >= 0)[:, None], tf.gather(self.user_vectors, tf.maximum(rows, 0)),
                        0.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
    def recommend(self, user_id):
        scores, titles = self.scann(self._vectors(user_id))
        return {"titles": titles, "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                  tf.TensorSpec([None], tf.int64, name="timestamp")])
    def rating(self, user_id, timestamp):
        return {"rating": tf.reduce_sum(self._vectors(user_id), axis=1)
                + tf.cast(timestamp, tf.float32) * 0.0 + 3.0}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
    def catalogue(self, user_id):
        return {"scores": tf.zeros([tf.shape(user_id)[0], len(TITLES)]),
                "titles": tf.constant(TITLES)}


def save_toy_model(path: Path, offset: float = 0.0) -> Path:
    module = ToyRecommender(offset)
    tf.saved_model.save(module, str(path), signatures={
        "serving_default": module.recommend.get_concrete_function(),
        "rating": module.rating.get_concrete_function(),
        "catalogue": module.catalogue.get_concrete_function()},
        options=tf.saved_model.SaveOptions(
            namespace_whitelist=list(stack.SCANN_SAVE_OPTIONS_NAMESPACES)))
    return path


def add_version(base_path: Path, version: int, model: Path) -> Path:
    """Copies `model` in as `version` the way a push lands: into a temporary name first."""
    staging = base_path / f".staging-{version}"
    shutil.copytree(model, staging)
    return staging.rename(base_path / str(version))


class RunningServer:
    def __init__(self, args: argparse.Namespace, environ: dict[str, str]):
        self.loop = asyncio.new_event_loop()
        started: concurrent.futures.Future = concurrent.futures.Future()
        self.task = None

        def run():
            asyncio.set_event_loop(self.loop)
            self.task = self.loop.create_task(server_main.serve(args, environ, started))
            try:
                self.loop.run_until_complete(self.task)
            except asyncio.CancelledError:
                pass

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        self.rest_port, self.grpc_port = started.result(timeout=60)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.rest_port}{path}"

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(timeout=30)


def start_server(base_path: Path, environ: dict[str, str] | None = None,
                 *extra: str) -> RunningServer:
    environ = environ or {}
    arguments = ["--port", "0", "--grpc-port", "0", "--poll-seconds", "0.2", *extra]
    if base_path is not None:
        arguments = ["--model-base-path", str(base_path), *arguments]
    return RunningServer(server_main.parse_args(arguments, environ), environ)


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def get_json(url: str, body: dict | bytes | None = None) -> tuple[int, dict]:
    """(HTTP status, JSON body) of a GET, or of a POST where `body` is given."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)
