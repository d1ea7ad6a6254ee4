# Two images from one Dockerfile, both with the stack from uv.lock plus this project's code at
# /pipeline (kubeflow_v2_runner.CONTAINER_PROJECT_DIR):
#   docker build -t IMAGE .                       the components' image for Kubeflow Pipelines /
#                                                 Vertex AI (and Dataflow workers): the default
#   docker build --target serve -t SERVE_IMAGE .  the model server (python -m serving), for
#                                                 Kubernetes or a Vertex AI Endpoint
#
# Debian 13 (glibc 2.41, GCC 14's libstdc++) runs the manylinux_2_39 wheels of ml-metadata and
# TFDV 1.21 natively: no private C runtime as on Debian 12 hosts.
FROM python:3.11-slim-trixie AS stack

ENV PYTHONUNBUFFERED=1 \
    TF_USE_LEGACY_KERAS=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/pipeline

RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /pipeline
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-cache

COPY components/ components/
COPY pipeline/ pipeline/
COPY schemas/ schemas/
COPY serving/ serving/
COPY local_runner.py kubeflow_v2_runner.py ./

# The model server: REST on $AIP_HTTP_PORT (Vertex AI sets it) or 8501, gRPC on 8500; the model
# from --model-base-path or $AIP_STORAGE_URI.
FROM stack AS serve
EXPOSE 8501 8500
ENTRYPOINT ["python", "-m", "serving"]

FROM stack AS pipeline
# Beam's SDK harness, so Dataflow can run this image as a custom worker container
# (--sdk_container_image); its version must match apache-beam in uv.lock.
COPY --from=apache/beam_python3.11_sdk:2.77.0 /opt/apache/beam /opt/apache/beam
# Kubeflow/Vertex tasks run TFX's executor entry point (the compiled pipeline names it as the
# command); Dataflow starts the Beam harness.
ENTRYPOINT ["/opt/apache/beam/boot"]
