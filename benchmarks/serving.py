"""Serving latency and throughput of a pushed model: in-process, and through the model server
(`python -m serving`, a separate process) over REST and gRPC, at several concurrencies; then a
load run (many REST requests at the highest concurrency) reporting errors and the server's
memory growth.

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
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from components import stack

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


def in_process(model, signature: str, users: list[str], titles: list[str], concurrency: int,
               requests: int) -> dict:
    function = model.signatures[signature]

    def one(index):
        inputs = request_inputs(signature, users[index % len(users)],
                                titles[index % len(titles)])
        started = time.perf_counter()
        function(**{name: tf.constant(values) for name, values in inputs.items()})
        return time.perf_counter() - started

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(concurrency)))  # warm
        started = time.perf_counter()
        latencies = list(pool.map(one, range(requests)))
    return {**percentiles(latencies), "requests_per_s": requests / (time.perf_counter() - started),
            "errors": 0}


async def over_rest(port: int, signature: str, users: list[str], titles: list[str],
                    concurrency: int, requests: int) -> dict:
    url = f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}:predict"
    latencies, errors, next_index = [], 0, iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker():
            nonlocal errors
            for index in next_index:
                body = {"signature_name": signature, "inputs": request_inputs(
                    signature, users[index % len(users)], titles[index % len(titles)])}
                started = time.perf_counter()
                async with session.post(url, json=body) as response:
                    await response.read()
                    errors += response.status != 200
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {**percentiles(latencies), "requests_per_s": requests / (time.perf_counter() - started),
            "errors": errors}


def over_grpc(port: int, signature: str, users: list[str], titles: list[str], concurrency: int,
              requests: int) -> dict:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(f"127.0.0.1:{port}"))
    errors = 0

    def one(index):
        nonlocal errors
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL_NAME
        request.model_spec.signature_name = signature
        for name, values in request_inputs(signature, users[index % len(users)],
                                           titles[index % len(titles)]).items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(values))
        started = time.perf_counter()
        try:
            stub.Predict(request, timeout=60)
        except grpc.RpcError:
            errors += 1
        return time.perf_counter() - started

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        started = time.perf_counter()
        latencies = list(pool.map(one, range(requests)))
    return {**percentiles(latencies), "requests_per_s": requests / (time.perf_counter() - started),
            "errors": errors}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def start_server(base_path: str) -> tuple[subprocess.Popen, int, int]:
    rest_port, grpc_port = free_port(), free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "serving", "--model-base-path", base_path, "--model-name",
         MODEL_NAME, "--port", str(rest_port), "--grpc-port", str(grpc_port)],
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


def markdown(rows: list[dict], load: dict) -> str:
    lines = ["| signature | transport | concurrency | p50 ms | p99 ms | requests/s | errors |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {row['signature']} | {row['transport']} | {row['concurrency']} | "
              f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['requests_per_s']:.0f} | "
              f"{row['errors']} |" for row in rows]
    lines += ["", f"Load: {load['requests']} REST requests (serving_default) at concurrency "
              f"{load['concurrency']}: {load['errors']} errors, {load['requests_per_s']:.0f} "
              f"requests/s, p99 {load['p99_ms']:.1f} ms; server RSS {load['rss_before_mb']:.0f} "
              f"-> {load['rss_after_mb']:.0f} MB."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base-path",
                        default=str(ROOT / "benchmarks" / ".pipeline_run" / "serving_model"))
    parser.add_argument("--requests", type=int, default=400, help="per measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--load-requests", type=int, default=20_000)
    args = parser.parse_args(argv)
    versions = sorted(int(name) for name in os.listdir(args.model_base_path) if name.isdigit())
    if not versions:
        parser.error(f"no model version under {args.model_base_path}: run `make bench` first.")
    stack.register_scann_ops()
    model = tf.saved_model.load(os.path.join(args.model_base_path, str(versions[-1])))
    titles = [title.decode() for title in model.signatures["catalogue_scores"](
        user_id=tf.constant(["1"]))["titles"].numpy()[:200]]
    users = [str(user) for user in range(1, 201)]
    rows = []
    server, rest_port, grpc_port = start_server(args.model_base_path)
    try:
        for signature in SIGNATURES:
            for concurrency in args.concurrency:
                arguments = (signature, users, titles, concurrency, args.requests)
                for transport, measure in (
                        ("in-process", lambda a=arguments: in_process(model, *a)),
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
        load.update(requests=args.load_requests, concurrency=concurrency,
                    rss_before_mb=rss_before, rss_after_mb=rss_mb(server.pid))
    finally:
        server.terminate()
        server.wait(timeout=60)
    table = markdown(rows, load)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serving.json").write_text(json.dumps(
        {"model": os.path.join(args.model_base_path, str(versions[-1])), "cores": os.cpu_count(),
         "rows": rows, "load": load}, indent=2) + "\n")
    (RESULTS / "serving.md").write_text(
        f"# Serving latency\n\nMeasured on {os.cpu_count()} cores by `make bench-serving` "
        "(client and server on the same machine).\n\n" + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
