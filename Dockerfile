# The components' image for Kubeflow Pipelines / Vertex AI (and Dataflow workers): the stack
# from uv.lock plus this project's code, at /pipeline (kubeflow_v2_runner.CONTAINER_PROJECT_DIR).
#
# Debian 13 (glibc 2.41, GCC 14's libstdc++) runs the manylinux_2_39 wheels of ml-metadata and
# TFDV 1.21 natively: no private C runtime as on Debian 12 hosts.
FROM python:3.11-slim-trixie

# Beam's SDK harness, so Dataflow can run this image as a custom worker container
# (--sdk_container_image); its version must match apache-beam in uv.lock.
COPY --from=apache/beam_python3.11_sdk:2.77.0 /opt/apache/beam /opt/apache/beam

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
COPY local_runner.py kubeflow_v2_runner.py ./

# Kubeflow/Vertex tasks run TFX's executor entry point (the compiled pipeline names it as the
# command); Dataflow starts the Beam harness.
ENTRYPOINT ["/opt/apache/beam/boot"]
