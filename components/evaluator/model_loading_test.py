"""The Evaluator's model loader works in a fresh process, as in a Beam worker."""

import base64
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
import tensorflow_recommenders as tfrs
from apache_beam.internal import pickler
from tensorflow_model_analysis.proto import config_pb2

from components import stack
from components.evaluator import model_loading

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scann_model(tmp_path_factory):
    index = tfrs.layers.factorized_top_k.ScaNN(k=3, num_leaves=4, num_leaves_to_search=2)
    index.index(tf.constant(np.random.default_rng(0).normal(size=(40, 4)).astype("float32")))
    module = tf.Module()
    module.index = index
    module.serve = tf.function(lambda queries: {"scores": index(queries)[0]},
                               input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    path = str(tmp_path_factory.mktemp("model"))
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve},
                        options=tf.saved_model.SaveOptions(
                            namespace_whitelist=list(stack.SCANN_SAVE_OPTIONS_NAMESPACES)))
    return path


def _load_in_fresh_processes(*construct_fns) -> list[subprocess.CompletedProcess]:
    """Runs each loader in a fresh process of its own, side by side (each imports the stack)."""
    runs = []
    for construct_fn in construct_fns:
        payload = base64.b64encode(pickler.dumps(construct_fn)).decode()
        script = ("import base64, components\n"
                  "from apache_beam.internal import pickler\n"
                  f"model = pickler.loads(base64.b64decode({payload!r}))()\n"
                  "print('signatures', sorted(model.signatures))\n")
        command = [sys.executable, "-c", script]
        runs.append((command, subprocess.Popen(command, stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, text=True,
                                               cwd=PROJECT_ROOT)))
    completed = []
    for command, process in runs:
        stdout, stderr = process.communicate()
        completed.append(subprocess.CompletedProcess(command, process.returncode, stdout, stderr))
    return completed


def test_loader_registers_scann_ops_where_the_model_is_loaded(scann_model):
    eval_config = config_pb2.EvalConfig(
        model_specs=[config_pb2.ModelSpec(signature_name="serving_default")])
    stock = tfma.default_eval_shared_model(eval_saved_model_path=scann_model,
                                           eval_config=eval_config)
    ours = model_loading.custom_eval_shared_model(scann_model, "", eval_config)

    failed, loaded = _load_in_fresh_processes(stock.model_loader.construct_fn,
                                              ours.model_loader.construct_fn)
    assert failed.returncode != 0 and "Scann" in failed.stderr
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert "signatures ['serving_default']" in loaded.stdout
