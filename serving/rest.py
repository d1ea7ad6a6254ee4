"""TF Serving's REST API (https://www.tensorflow.org/tfx/serving/api_rest), on aiohttp.

    GET  /v1/models/<name>[/versions/<v>]            version status
    GET  /v1/models/<name>[/versions/<v>]/metadata   signatures, inputs and outputs
    POST /v1/models/<name>[/versions/<v>]:predict    {"signature_name", "instances" | "inputs"}

Row format ("instances": one object per example, or bare values for a one-input signature)
answers {"predictions": [...]}; columnar ("inputs": {name: values}) answers {"outputs": ...}.
Strings that are not UTF-8 travel as {"b64": "..."}, as in TF Serving. Errors are
{"error": "..."} with 400 (bad request), 404 (unknown model, version or signature) or 503 (no
version loaded yet). Vertex AI's custom-container routes (`AIP_HEALTH_ROUTE`,
`AIP_PREDICT_ROUTE`) are added by `create_app(vertex_routes=...)`.

Aiohttp is asyncio's most used HTTP server; TensorFlow releases the GIL while a signature
runs, so requests run concurrently on a thread pool.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
from typing import Any

import numpy as np
from aiohttp import web
from google.protobuf import json_format
from tensorflow.core.protobuf import meta_graph_pb2

from serving import models

_STATUS_OF_ERROR = {models.InvalidArgument: 400, models.NotFound: 404, models.Unavailable: 503}


def _decode_value(value: Any) -> Any:
    """JSON -> Python: {"b64": ...} objects become bytes, lists recursively."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (ValueError, TypeError):
            raise models.InvalidArgument(f"Invalid base64 value: {value['b64']!r}.") from None
    if isinstance(value, list):
        return [_decode_value(item) for item in value]
    return value


def _encode_array(array: np.ndarray) -> Any:
    """numpy -> JSON: bytes as UTF-8 text, or {"b64": ...} where not UTF-8."""
    if array.dtype == object or array.dtype.kind == "S":
        def text(value):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                return {"b64": base64.b64encode(value).decode("ascii")}
        return np.vectorize(text, otypes=[object])(array).tolist() if array.size else \
            array.tolist()
    return array.tolist()


def request_inputs(body: Any, input_names: list[str]) -> tuple[dict[str, Any], bool]:
    """(inputs by name, row format?) from a predict request's JSON body."""
    if not isinstance(body, dict):
        raise models.InvalidArgument("The request body must be a JSON object.")
    if ("instances" in body) == ("inputs" in body):
        raise models.InvalidArgument(
            'The request must have exactly one of "instances" (row format) or "inputs" '
            "(columnar format).")
    if "inputs" in body:
        inputs = body["inputs"]
        if not isinstance(inputs, dict):
            if len(input_names) != 1:
                raise models.InvalidArgument(
                    f'"inputs" must be an object naming the inputs {input_names}.')
            inputs = {input_names[0]: inputs}
        return {name: _decode_value(values) for name, values in inputs.items()}, False
    instances = body["instances"]
    if not isinstance(instances, list):
        raise models.InvalidArgument('"instances" must be a list.')
    columns: dict[str, list] = {name: [] for name in input_names}
    for position, instance in enumerate(instances):
        if not isinstance(instance, dict):
            if len(input_names) != 1:
                raise models.InvalidArgument(
                    f"Instance {position} must be an object with the inputs {input_names}.")
            instance = {input_names[0]: instance}
        if set(instance) != set(input_names):
            raise models.InvalidArgument(
                f"Instance {position} has inputs {sorted(instance)}; the signature takes "
                f"{sorted(input_names)}.")
        for name, value in instance.items():
            columns[name].append(_decode_value(value))
    return columns, True


def response_body(outputs: dict[str, np.ndarray], row_format: bool) -> dict:
    if not row_format:
        encoded = {name: _encode_array(value) for name, value in outputs.items()}
        return {"outputs": next(iter(encoded.values())) if len(encoded) == 1 else encoded}
    sizes = {name: value.shape[0] if value.ndim else None for name, value in outputs.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise models.InvalidArgument(
            f"The outputs' first dimensions differ ({sizes}), so they cannot be returned as "
            'rows: use the columnar format ("inputs").')
    encoded = {name: _encode_array(value) for name, value in outputs.items()}
    if len(encoded) == 1:
        return {"predictions": next(iter(encoded.values()))}
    return {"predictions": [dict(zip(encoded, row, strict=True))
                            for row in zip(*encoded.values(), strict=True)]}


def version_status_body(statuses: list[models.VersionStatus]) -> dict:
    return {"model_version_status": [
        {"version": str(status.version), "state": status.state,
         "status": {"error_code": "UNKNOWN" if status.error_message else "OK",
                    "error_message": status.error_message}}
        for status in statuses]}


def metadata_body(name: str, loaded: models.LoadedVersion) -> dict:
    signature_map = json_format.MessageToDict(
        meta_graph_pb2.MetaGraphDef(signature_def=loaded.signature_defs),
        preserving_proto_field_name=True)
    return {"model_spec": {"name": name, "signature_name": "", "version": str(loaded.version)},
            "metadata": {"signature_def": signature_map}}


def create_app(manager: models.ModelManager, executor: concurrent.futures.Executor,
               vertex_routes: tuple[str, str] | None = None) -> web.Application:
    """The REST app. `vertex_routes`: (health route, predict route) of a Vertex AI Endpoint."""

    async def run(function):
        return await asyncio.get_running_loop().run_in_executor(executor, function)

    def error_response(error: Exception) -> web.Response:
        return web.json_response({"error": str(error)}, status=_STATUS_OF_ERROR[type(error)])

    def parse_version(text: str | None) -> int | None:
        if text is None:
            return None
        if not text.isdigit():
            raise models.InvalidArgument(f"Version must be a number, got {text!r}.")
        return int(text)

    async def read_json(request: web.Request) -> Any:
        text = await request.text()
        try:
            body = json.loads(text)
        except json.JSONDecodeError as error:
            raise models.InvalidArgument(f"The request body is not valid JSON: {error}.") \
                from None
        if not isinstance(body, dict):
            raise models.InvalidArgument("The request body must be a JSON object.")
        return body

    async def predict(name: str, version: int | None, body: dict, signature: Any,
                      ) -> web.Response:
        if not isinstance(signature, str):
            raise models.InvalidArgument('"signature_name" must be a string.')
        loaded = manager.get(name, version)
        inputs, row_format = request_inputs(body, loaded.input_names(signature))

        def answer() -> str:  # encoding a large answer must not hold up the event loop either
            return json.dumps(response_body(loaded.predict(signature, inputs), row_format))

        return web.Response(text=await run(answer), content_type="application/json")

    async def predict_verb(request: web.Request, name: str, version: str | None,
                           verb: str) -> web.Response:
        if verb != "predict":
            raise models.NotFound(f"Unsupported verb {verb!r}: this server answers :predict.")
        body = await read_json(request)
        return await predict(name, parse_version(version), body, body.get("signature_name", ""))

    def handler(coroutine):
        async def handle(request: web.Request) -> web.Response:
            try:
                return await coroutine(request)
            except tuple(_STATUS_OF_ERROR) as error:
                return error_response(error)
        return handle

    @handler
    async def model_status(request):
        return web.json_response(version_status_body(manager.statuses(
            request.match_info["name"], parse_version(request.match_info.get("version")))))

    @handler
    async def model_metadata(request):
        name = request.match_info["name"]
        return web.json_response(metadata_body(name, manager.get(
            name, parse_version(request.match_info.get("version")))))

    @handler
    async def model_predict(request):
        name, _, verb = request.match_info["name_and_verb"].partition(":")
        return await predict_verb(request, name, None, verb)

    @handler
    async def model_version_predict(request):
        version, _, verb = request.match_info["version_and_verb"].partition(":")
        return await predict_verb(request, request.match_info["name"], version, verb)

    async def health(request):
        if manager.ready:
            return web.json_response({"status": "ok"})
        return web.json_response({"error": "no model version loaded yet"}, status=503)

    @handler
    async def vertex_predict(request):
        """Vertex AI: {"instances": [...], "parameters": {"signature_name": ...}} in,
        {"predictions": [...]} out."""
        body = await read_json(request)
        parameters = body.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise models.InvalidArgument('"parameters" must be an object.')
        if "instances" not in body:
            raise models.InvalidArgument('The request must have "instances".')
        return await predict(manager.name, None, {"instances": body["instances"]},
                             parameters.get("signature_name", ""))

    app = web.Application(client_max_size=64 * 1024**2)
    app.router.add_get("/v1/models/{name}", model_status)
    app.router.add_get("/v1/models/{name}/versions/{version}", model_status)
    app.router.add_get("/v1/models/{name}/metadata", model_metadata)
    app.router.add_get("/v1/models/{name}/versions/{version}/metadata", model_metadata)
    app.router.add_post("/v1/models/{name_and_verb}", model_predict)
    app.router.add_post("/v1/models/{name}/versions/{version_and_verb}", model_version_predict)
    app.router.add_get("/healthz", health)
    if vertex_routes:
        health_route, predict_route = vertex_routes
        if health_route != "/healthz":
            app.router.add_get(health_route, health)
        app.router.add_post(predict_route, vertex_predict)
    return app
