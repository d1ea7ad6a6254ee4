"""python -m serving --model-base-path output/serving_model [--model-name movielens]
[--port 8501] [--grpc-port 8500]

On Vertex AI the container's environment decides: AIP_HTTP_PORT (the REST port),
AIP_HEALTH_ROUTE and AIP_PREDICT_ROUTE (extra routes), AIP_STORAGE_URI (the model directory,
when --model-base-path is not given: a versioned base path, or one SavedModel, served as
version 1).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import os
import signal
import sys

from serving import grpc_service, models, rest

DEFAULT_MODEL_NAME = "movielens"


def parse_args(argv: list[str] | None, environ: dict[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base-path", default=environ.get("AIP_STORAGE_URI"),
                        help="directory of numbered SavedModel versions (the Pusher's "
                             "serving_model/), or one SavedModel; default $AIP_STORAGE_URI")
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    parser.add_argument("--port", type=int, default=int(environ.get("AIP_HTTP_PORT", 8501)),
                        help="REST port (default $AIP_HTTP_PORT, else 8501)")
    parser.add_argument("--grpc-port", type=int, default=8500, help="gRPC port; -1: no gRPC")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--poll-seconds", type=float, default=1.0,
                        help="how often the base path is checked for new versions")
    parser.add_argument("--threads", type=int, default=16,
                        help="requests run at once (TensorFlow releases the GIL)")
    parser.add_argument("--max-batch-size", type=int, default=1024,
                        help="most rows one request may carry (a larger one gets a 400)")
    parser.add_argument("--enable-batching", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="join concurrent requests to a signature into one call "
                             "(serving/batching.py; no added wait)")
    args = parser.parse_args(argv)
    if not args.model_base_path:
        parser.error("--model-base-path is required (or set AIP_STORAGE_URI).")
    if args.threads < 1 or args.poll_seconds <= 0 or args.max_batch_size < 1:
        parser.error("--threads and --max-batch-size must be at least 1 and --poll-seconds "
                     "above 0.")
    return args


async def serve(args: argparse.Namespace, environ: dict[str, str],
                started: concurrent.futures.Future | None = None) -> None:
    """Serves until cancelled (main() cancels it on SIGTERM or SIGINT). `started` receives
    (REST port, gRPC port or None) once both listen."""
    from aiohttp import web

    manager = models.ModelManager(args.model_name, args.model_base_path, args.poll_seconds,
                                  args.max_batch_size, args.enable_batching)
    executor = concurrent.futures.ThreadPoolExecutor(args.threads, "predict")
    vertex_routes = None
    if "AIP_PREDICT_ROUTE" in environ:
        vertex_routes = (environ.get("AIP_HEALTH_ROUTE", "/healthz"), environ["AIP_PREDICT_ROUTE"])
    runner = web.AppRunner(rest.create_app(manager, executor, vertex_routes),
                           access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    rest_port = runner.addresses[0][1]
    grpc_server, grpc_port = None, None
    if args.grpc_port >= 0:
        grpc_server, grpc_port = grpc_service.create_server(
            manager, args.grpc_port, concurrent.futures.ThreadPoolExecutor(args.threads, "grpc"))
        grpc_server.start()
    manager.start()
    logging.info("Model %s from %s: REST on port %d%s.", args.model_name, args.model_base_path,
                 rest_port,
                 f", gRPC on port {grpc_port}" if grpc_port else "")
    if started is not None:
        started.set_result((rest_port, grpc_port))
    try:
        await asyncio.Event().wait()
    finally:
        manager.stop()
        if grpc_server is not None:
            grpc_server.stop(grace=5)
        await runner.cleanup()
        executor.shutdown(wait=False)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv, dict(os.environ))
    from components import stack

    stack.quiet_library_logs()

    async def run():
        task = asyncio.ensure_future(serve(args, dict(os.environ)))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
