"""TF Serving's gRPC API: PredictionService (Predict, GetModelMetadata) and ModelService
(GetModelStatus), with the messages of the `tensorflow-serving-api` package, so TF Serving's
own clients and stubs work unchanged."""

from __future__ import annotations

import concurrent.futures

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    status_pb2,
)

from serving import models

_CODE_OF_ERROR = {models.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
                  models.NotFound: grpc.StatusCode.NOT_FOUND,
                  models.Unavailable: grpc.StatusCode.UNAVAILABLE}
_STATE_CODES = {models.AVAILABLE: get_model_status_pb2.ModelVersionStatus.AVAILABLE,
                models.LOADING: get_model_status_pb2.ModelVersionStatus.LOADING,
                models.END: get_model_status_pb2.ModelVersionStatus.END}


def _requested_version(model_spec) -> int | None:
    if model_spec.HasField("version_label"):
        raise models.InvalidArgument("Version labels are not supported; ask for a version "
                                     "number or the latest.")
    return model_spec.version.value if model_spec.HasField("version") else None


# The repeated field of each dtype that TF Serving's default serialization (AsProtoField)
# fills: clients read `response.outputs[name].float_val` as well as `tf.make_ndarray`.
_VALUE_FIELDS = {np.dtype(np.float32): "float_val", np.dtype(np.float64): "double_val",
                 np.dtype(np.int32): "int_val", np.dtype(np.int64): "int64_val",
                 np.dtype(np.bool_): "bool_val"}


def tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """What TF Serving answers for a signature's output (an array of bytes objects, or of
    numbers), built directly: strings in `string_val`, numbers in their dtype's repeated field
    (`tensor_content` for dtypes no signature here returns). 4 to 7 us an output of 10 to 100
    numbers here, where tf.make_tensor_proto's checks took 13 to 19."""
    proto = tensor_pb2.TensorProto(tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape]))
    if array.dtype == object:
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(array.ravel().tolist())
        return proto
    proto.dtype = tf.as_dtype(array.dtype).as_datatype_enum
    field = _VALUE_FIELDS.get(array.dtype)
    if field:
        getattr(proto, field).extend(array.ravel().tolist())
    else:
        proto.tensor_content = np.ascontiguousarray(array).tobytes()
    return proto


def _aborting_on_errors(method):
    def call(self, request, context):
        try:
            return method(self, request, context)
        except tuple(_CODE_OF_ERROR) as error:
            context.abort(_CODE_OF_ERROR[type(error)], str(error))
    return call


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: models.ModelManager):
        self.manager = manager

    @_aborting_on_errors
    def Predict(self, request: predict_pb2.PredictRequest, context) -> predict_pb2.PredictResponse:
        loaded = self.manager.get(request.model_spec.name,
                                  _requested_version(request.model_spec))
        signature = request.model_spec.signature_name or models.DEFAULT_SIGNATURE
        try:
            inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        except (TypeError, ValueError) as error:
            raise models.InvalidArgument(f"Unreadable input tensor: {error}") from None
        outputs = loaded.predict(signature, inputs, tuple(request.output_filter))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.manager.name
        response.model_spec.version.value = loaded.version
        response.model_spec.signature_name = signature
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tensor_proto(value))
        return response

    @_aborting_on_errors
    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest, context
                         ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        unsupported = [field for field in request.metadata_field if field != "signature_def"]
        if not request.metadata_field or unsupported:
            raise models.InvalidArgument(
                f"metadata_field must be ['signature_def'], got {list(request.metadata_field)}.")
        loaded = self.manager.get(request.model_spec.name,
                                  _requested_version(request.model_spec))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self.manager.name
        response.model_spec.version.value = loaded.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, signature_def in loaded.signature_defs.items():
            signature_map.signature_def[name].CopyFrom(signature_def)
        response.metadata["signature_def"].Pack(signature_map)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: models.ModelManager):
        self.manager = manager

    @_aborting_on_errors
    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest, context
                       ) -> get_model_status_pb2.GetModelStatusResponse:
        response = get_model_status_pb2.GetModelStatusResponse()
        for status in self.manager.statuses(request.model_spec.name,
                                            _requested_version(request.model_spec)):
            response.model_version_status.add(
                version=status.version, state=_STATE_CODES[status.state],
                status=status_pb2.StatusProto(
                    error_code=2 if status.error_message else 0,  # UNKNOWN, OK
                    error_message=status.error_message))
        return response


def create_server(manager: models.ModelManager, port: int,
                  executor: concurrent.futures.ThreadPoolExecutor) -> tuple[grpc.Server, int]:
    """The gRPC server, bound to `port` on every interface (0: a free port); not started.
    Returns it and the bound port."""
    server = grpc.server(executor, options=[
        ("grpc.max_receive_message_length", 64 * 1024**2),
        ("grpc.max_send_message_length", 64 * 1024**2)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(manager), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager), server)
    bound = server.add_insecure_port(f"[::]:{port}")
    return server, bound
