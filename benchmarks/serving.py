"""Serving latency and throughput of a pushed model: in-process (the server's own work per
request, LoadedVersion.predict, without a transport), and through the model server (`python
-m serving`, a separate process) over REST and gRPC, at several concurrencies; then a load run
(many REST requests at the highest concurrency) reporting errors and the server's memory
growth; a run during which a new version is pushed, lasting until the server serves it
(errors, the versions served after it); then the same search over a synthetic catalogue of
1 M titles, ScaNN against exact scores.

    make bench-serving   # .venv/bin/python -m benchmarks.serving [--model-base-path DIR]

One request is one user (batch of 1), users drawn from the catalogue's raters in turn. The
client runs on the same machine as the server, so on 2 cores the two compete: figures are an
upper bound on latency, a lower bound on throughput. Writes benchmarks/results/serving.json and
serving.md.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import aiohttp
import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from components import stack
from components.trainer import serving as export
from serving import models
from serving.__main__ import parse_args as parse_server_args

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SIGNATURES = ("serving_default", "unrated", "brute_force", "rating")
MODEL_NAME = "movielens"


def request_inputs(signature: str, user: str, title: str) -> dict[str, list[str]]:
    inputs = {"user_id": [user]}
    if signature == "rating":
        inputs["movie_title"] = [title]
    return inputs


def percentiles(latencies: list[float]) -> dict:
    values = np.array(latencies) * 1000
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99))}


def in_process(loaded: models.LoadedVersion, signature: str, users: list[str],
               titles: list[str], concurrency: int, requests: int) -> dict:
    """The server's own work for each request, without a transport: LoadedVersion.predict
    (input checks, the signature call, server-side batching as the server's defaults)."""
    def one(index):
        inputs = request_inputs(signature, users[index % len(users)],
                                titles[index % len(titles)])
        started = time.perf_counter()
        loaded.predict(signature, inputs)
        return time.perf_counter() - started

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(concurrency)))  # warm
        started = time.perf_counter()
        latencies = list(pool.map(one, range(requests)))
    return {**percentiles(latencies), "requests_per_s": requests / (time.perf_counter() - started),
            "errors": 0, "requests": requests}


async def over_rest(port: int, signature: str, users: list[str], titles: list[str],
                    concurrency: int, requests: int,
                    until: threading.Event | None = None) -> dict:
    """`requests` requests; with `until`, more, for as long as it is not set."""
    url = f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}:predict"
    latencies, errors, next_index = [], 0, itertools.count()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker():
            nonlocal errors
            for index in next_index:
                if index >= requests and (until is None or until.is_set()):
                    return
                body = {"signature_name": signature, "inputs": request_inputs(
                    signature, users[index % len(users)], titles[index % len(titles)])}
                started = time.perf_counter()
                async with session.post(url, json=body) as response:
                    await response.read()
                    errors += response.status != 200
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {**percentiles(latencies),
            "requests_per_s": len(latencies) / (time.perf_counter() - started),
            "errors": errors, "requests": len(latencies)}


def over_grpc(port: int, signature: str, users: list[str], titles: list[str], concurrency: int,
              requests: int) -> dict:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(f"127.0.0.1:{port}"))
    errors = 0

    def prepared(index):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL_NAME
        request.model_spec.signature_name = signature
        for name, values in request_inputs(signature, users[index % len(users)],
                                           titles[index % len(titles)]).items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(values))
        return request

    # Built before the clock starts: the client shares the server's cores, and what it spends
    # building requests is not the server's cost.
    prepared_requests = [prepared(index) for index in range(requests)]

    def one(index):
        nonlocal errors
        started = time.perf_counter()
        try:
            stub.Predict(prepared_requests[index], timeout=60)
        except grpc.RpcError:
            errors += 1
        return time.perf_counter() - started

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        started = time.perf_counter()
        latencies = list(pool.map(one, range(requests)))
    return {**percentiles(latencies), "requests_per_s": requests / (time.perf_counter() - started),
            "errors": errors, "requests": requests}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def start_server(base_path: str, server_args: list[str]) -> tuple[subprocess.Popen, int, int]:
    rest_port, grpc_port = free_port(), free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "serving", "--model-base-path", base_path, "--model-name",
         MODEL_NAME, "--port", str(rest_port), "--grpc-port", str(grpc_port), *server_args],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/healthz", timeout=5):
                return server, rest_port, grpc_port
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"the server did not start (exit {server.poll()})") from None
            time.sleep(0.5)


class LargeCatalogue(tf.Module):
    """The pushed model's user tower (its `user_embedding` signature) over a synthetic
    catalogue, indexed by the export's own ScaNN code (components/trainer/serving.py)."""

    def __init__(self, pushed_model, candidates: np.ndarray, k: int):
        super().__init__()
        self.pushed_model = pushed_model  # tracked: the tower's variables and tables
        self.user_embedding = pushed_model.signatures["user_embedding"]
        self.candidates = tf.Variable(candidates, trainable=False)
        self.titles = tf.Variable([f"Synthetic title {row}" for row in range(len(candidates))])
        self.k = k
        self.scann = export.ScannIndex(self.candidates, k=k)

    def _answer(self, scores, rows):
        return {"titles": tf.gather(self.titles, rows), "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
    def user_vector(self, user_id):
        """What both searches do before searching: the call and the user tower."""
        return {"embedding": self.user_embedding(user_id=user_id)["embedding"]}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
    def recommend(self, user_id):
        return self._answer(*self.scann(self.user_embedding(user_id=user_id)["embedding"]))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
    def recommend_exact(self, user_id):
        scores = tf.matmul(self.user_embedding(user_id=user_id)["embedding"], self.candidates,
                           transpose_b=True)
        return self._answer(*tf.math.top_k(scores, k=self.k))


def clustered_candidates(movie_vectors: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """`count` vectors around the trained title vectors (each a random title's vector plus
    Gaussian noise of half the vectors' spread per dimension): a catalogue of 1 M titles
    clustered like the real one, so ScaNN's partitioning meets realistic structure."""
    rng = np.random.default_rng(seed)
    centres = movie_vectors[rng.integers(0, len(movie_vectors), count)]
    noise = rng.standard_normal(centres.shape, dtype=np.float32) * movie_vectors.std(axis=0)
    return (centres + 0.5 * noise).astype(np.float32)


def served_version(path: str) -> models.LoadedVersion:
    """The SavedModel loaded as the server loads a version, with its default options."""
    defaults = parse_server_args(["--model-base-path", path], {})
    return models.LoadedVersion(1, path, defaults.max_batch_size, defaults.enable_batching)


def directory_mb(path: str) -> float:
    return sum(file.stat().st_size for file in Path(path).rglob("*") if file.is_file()) / 2**20


def tf_call_floor_ms() -> float:
    """p50 of calling a trivial tf.function through its public call (argument binding included)."""
    variable = tf.Variable(tf.zeros([8]))
    trivial = tf.function(lambda x: x + variable)
    value = tf.constant(np.zeros(8, np.float32))
    trivial(value)
    latencies = []
    for _ in range(500):
        started = time.perf_counter()
        trivial(value)
        latencies.append(time.perf_counter() - started)
    return float(np.median(latencies) * 1000)


def recall_at_10(found_titles: np.ndarray, exact_titles: np.ndarray) -> float:
    return float(np.mean([len(set(found) & set(exact)) / len(exact)
                          for found, exact in zip(found_titles, exact_titles, strict=True)]))


def recall_of_fresh_builds(module: LargeCatalogue, users: list[str], exact_titles: np.ndarray,
                           builds: int) -> list[float]:
    """recall@10 of `builds` more indexes of the same catalogue, built by the export's code:
    ScaNN's k-means is not seeded, so each build partitions the titles differently (at 1 M
    titles one build's recall ranged from 0.93 to 0.97 while the k-means trained on ScaNN's
    default sample, 0.975 to 0.983 since it trains on every title)."""
    user_vectors = module.user_vector(tf.constant(users))["embedding"]
    recalls = []
    for _ in range(builds):
        rows = export.ScannIndex(module.candidates, k=module.k)(user_vectors)[1]
        recalls.append(recall_at_10(tf.gather(module.titles, rows).numpy(), exact_titles))
    return recalls


def large_catalogue(model, users: list[str], count: int, requests: int,
                    index_builds: int) -> dict:
    """ScaNN against exact scores over `count` synthetic titles, as a SavedModel built,
    saved and loaded like the pushed one: build time, size, p50/p99, and recall@10 of that
    index and of `index_builds` - 1 more builds."""
    movie_vectors = model.movie_embeddings[:-1].numpy()  # the last row: unknown titles
    started = time.perf_counter()
    module = LargeCatalogue(model, clustered_candidates(movie_vectors, count), k=10)
    build_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as export_dir:
        module_signatures = {"serving_default": module.recommend.get_concrete_function(),
                             "brute_force": module.recommend_exact.get_concrete_function(),
                             "user_vector": module.user_vector.get_concrete_function()}
        tf.saved_model.save(module, export_dir, signatures=module_signatures,
                            options=tf.saved_model.SaveOptions(
                                namespace_whitelist=list(stack.SCANN_SAVE_OPTIONS_NAMESPACES)))
        size_mb = directory_mb(export_dir)
        loaded = served_version(export_dir)
    result = {"candidates": count, "index_build_s": build_s, "saved_model_mb": size_mb,
              **export.scann_parameters(count),
              "rescored_for_top_10": int(module.scann.rescored(10))}
    batch = np.array(users, dtype=object)
    exact_titles = loaded.predict("brute_force", {"user_id": batch})["titles"]
    result["recall_at_10"] = recall_at_10(
        loaded.predict("serving_default", {"user_id": batch})["titles"], exact_titles)
    result["recall_at_10_of_builds"] = [result["recall_at_10"], *recall_of_fresh_builds(
        module, users, exact_titles, index_builds - 1)]
    for signature in ("serving_default", "brute_force", "user_vector"):
        result[signature] = in_process(loaded, signature, users, [""], 1, requests)
    result["speed_up"] = result["brute_force"]["p50_ms"] / result["serving_default"]["p50_ms"]
    # The searches alone: what each adds to the call and user tower they share.
    result["search_speed_up"] = (
        (result["brute_force"]["p50_ms"] - result["user_vector"]["p50_ms"])
        / max(result["serving_default"]["p50_ms"] - result["user_vector"]["p50_ms"], 1e-3))
    return result


def push_during(base_path: str, model_path: str, version: int, after_s: float,
                rest_port: int) -> tuple[threading.Thread, threading.Event]:
    """Copies the model into `base_path` as `version` after `after_s` seconds, as a Pusher
    would, then watches the server until it serves that version (it must load it and swap
    without failing a request); the event is set then, or after 5 minutes without it."""
    served = threading.Event()

    def push():
        time.sleep(after_s)
        shutil.copytree(model_path, os.path.join(base_path, str(version)))
        deadline = time.monotonic() + 300
        while ((str(version), models.AVAILABLE) not in served_versions(rest_port)
               and time.monotonic() < deadline):
            time.sleep(0.2)
        served.set()

    pusher = threading.Thread(target=push, daemon=True)
    pusher.start()
    return pusher, served


def served_versions(rest_port: int) -> list[tuple[str, str]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/v1/models/{MODEL_NAME}",
                                timeout=30) as response:
        return [(status["version"], status["state"])
                for status in json.load(response)["model_version_status"]]


def markdown(rows: list[dict], load: dict, reload: dict, large: dict | None,
             floor_ms: float) -> str:
    lines = ["| signature | transport | concurrency | p50 ms | p99 ms | requests/s | errors |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {row['signature']} | {row['transport']} | {row['concurrency']} | "
              f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['requests_per_s']:.0f} | "
              f"{row['errors']} |" for row in rows]
    lines += ["", f"Load: {load['requests']:,} REST requests (serving_default) at concurrency "
              f"{load['concurrency']}: {load['errors']} errors, {load['requests_per_s']:.0f} "
              f"requests/s, p99 {load['p99_ms']:.1f} ms; server RSS "
              f"{load['rss_before_mb']:.0f} -> {load['rss_after_mb']:.0f} MB.",
              "", f"Hot reload: version {reload['pushed_version']} copied into the base path "
              f"{reload['push_after_s']:.0f} s into a run at concurrency {reload['concurrency']} "
              f"that lasts until the server serves it ({reload['requests']:,} requests): "
              f"{reload['errors']} errors, p99 "
              f"{reload['p99_ms']:.1f} ms; versions after: "
              + ", ".join(f"{version} {state}" for version, state in reload["versions_after"])
              + ".",
              "", f"Floor: calling a trivial tf.function costs {floor_ms:.2f} ms (p50) here; "
              "the server calls its signatures past tf.function's argument binding "
              "(serving/models.py: DirectCall), so its in-process figures come close to it."]
    if large:
        lines += ["", f"{large['candidates']:,} synthetic titles (clustered around the trained "
                  f"title vectors), the trained user tower: index built in "
                  f"{large['index_build_s']:.1f} s ({large['num_leaves']} leaves, "
                  f"{large['num_leaves_to_search']} searched, "
                  f"{large['rescored_for_top_10']} re-scored for a top 10, up to "
                  f"{large['num_reordering_candidates']} for deeper searches), SavedModel "
                  f"{large['saved_model_mb']:.0f} MB; in-process, one user: ScaNN p50 "
                  f"{large['serving_default']['p50_ms']:.2f} ms (p99 "
                  f"{large['serving_default']['p99_ms']:.2f}), exact p50 "
                  f"{large['brute_force']['p50_ms']:.2f} ms (p99 "
                  f"{large['brute_force']['p99_ms']:.2f}): {large['speed_up']:.1f}x; ScaNN "
                  f"recall@10 {large['recall_at_10']:.4f} (over "
                  f"{len(large['recall_at_10_of_builds'])} builds of the index: mean "
                  f"{np.mean(large['recall_at_10_of_builds']):.4f}, lowest "
                  f"{min(large['recall_at_10_of_builds']):.4f}). Both pay the call and the user "
                  f"tower, p50 {large['user_vector']['p50_ms']:.2f} ms alone; the searches "
                  f"beyond it: {large['search_speed_up']:.1f}x."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base-path",
                        default=str(ROOT / "benchmarks" / ".pipeline_run" / "serving_model"))
    parser.add_argument("--requests", type=int, default=400, help="per measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--load-requests", type=int, default=20_000)
    parser.add_argument("--reload-requests", type=int, default=2_000,
                        help="least requests of the run during which a new version is pushed "
                             "(it goes on until the server serves that version)")
    parser.add_argument("--push-after", type=float, default=1.0,
                        help="seconds into that run at which the new version is pushed")
    parser.add_argument("--candidates", type=int, default=1_000_000,
                        help="synthetic catalogue size for ScaNN against exact scores (0: skip)")
    parser.add_argument("--index-builds", type=int, default=3,
                        help="builds of the large catalogue's index whose recall is measured "
                             "(ScaNN's k-means is not seeded)")
    parser.add_argument("--server-args", default="",
                        help='more flags for the server, e.g. "--no-enable-batching"')
    parser.add_argument("--signatures", nargs="+", default=list(SIGNATURES))
    args = parser.parse_args(argv)
    versions = sorted(int(name) for name in os.listdir(args.model_base_path) if name.isdigit())
    if not versions:
        parser.error(f"no model version under {args.model_base_path}: run `make bench` first.")
    stack.register_scann_ops()
    model_path = os.path.join(args.model_base_path, str(versions[-1]))
    model = tf.saved_model.load(model_path)
    loaded = served_version(model_path)
    titles = [title.decode() for title in loaded.predict(
        "catalogue_scores", {"user_id": ["1"]})["titles"][:200]]
    users = [str(user) for user in range(1, 201)]
    rows = []
    # A base path of its own: the load run pushes a version into it.
    served_base = tempfile.mkdtemp(prefix="bench-serving-")
    shutil.copytree(model_path, os.path.join(served_base, "1"))
    server, rest_port, grpc_port = start_server(served_base, args.server_args.split())
    try:
        for signature in args.signatures:
            for concurrency in args.concurrency:
                arguments = (signature, users, titles, concurrency, args.requests)
                for transport, measure in (
                        ("in-process", lambda a=arguments: in_process(loaded, *a)),
                        ("REST", lambda a=arguments: asyncio.run(over_rest(rest_port, *a))),
                        ("gRPC", lambda a=arguments: over_grpc(grpc_port, *a))):
                    row = {"signature": signature, "transport": transport,
                           "concurrency": concurrency, **measure()}
                    rows.append(row)
                    print(f"{signature:16s} {transport:10s} {concurrency:3d}  p50 "
                          f"{row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  "
                          f"{row['requests_per_s']:7.0f}/s  errors {row['errors']}", flush=True)
        concurrency = max(args.concurrency)
        rss_before = rss_mb(server.pid)
        load = asyncio.run(over_rest(rest_port, "serving_default", users, titles, concurrency,
                                     args.load_requests))
        load.update(concurrency=concurrency, rss_before_mb=rss_before,
                    rss_after_mb=rss_mb(server.pid))
        pusher, served = push_during(served_base, model_path, 2, args.push_after, rest_port)
        reload = asyncio.run(over_rest(rest_port, "serving_default", users, titles,
                                       concurrency, args.reload_requests, until=served))
        pusher.join()
        reload.update(concurrency=concurrency, pushed_version=2, push_after_s=args.push_after,
                      versions_after=served_versions(rest_port))
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(served_base, ignore_errors=True)
    print(f"load: {load}\nhot reload: {reload}", flush=True)
    floor_ms = tf_call_floor_ms()
    large = None
    if args.candidates:
        large = large_catalogue(model, users, args.candidates, args.requests,
                                args.index_builds)
        print(f"large catalogue: {large}", flush=True)
    table = markdown(rows, load, reload, large, floor_ms)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serving.json").write_text(json.dumps(
        {"model": model_path, "cores": os.cpu_count(), "server_args": args.server_args,
         "rows": rows, "load": load, "hot_reload": reload, "tf_call_floor_ms": floor_ms,
         "large_catalogue": large},
        indent=2) + "\n")
    (RESULTS / "serving.md").write_text(
        f"# Serving latency\n\nMeasured on {os.cpu_count()} cores by `make bench-serving` "
        "(client and server on the same machine).\n\n" + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
