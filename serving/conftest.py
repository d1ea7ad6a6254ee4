"""Fixtures of the server's tests (helpers in serving/testing.py)."""

from pathlib import Path

import pytest

from serving.testing import add_version, get_json, save_toy_model, start_server, wait_for


@pytest.fixture(scope="session")
def toy_model(tmp_path_factory) -> Path:
    return save_toy_model(tmp_path_factory.mktemp("toy") / "model")


@pytest.fixture(scope="module")
def served_toy(tmp_path_factory, toy_model):
    base_path = tmp_path_factory.mktemp("served")
    add_version(base_path, 1, toy_model)
    server = start_server(base_path, None, "--max-batch-size", "8")
    wait_for(lambda: get_json(server.url("/healthz"))[0] == 200)
    yield server
    server.stop()
