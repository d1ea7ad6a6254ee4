"""The Evaluator's model loader works in a fresh process, as in a Beam worker."""

import base64
import json
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


def _load_in_a_fresh_process(*construct_fns) -> list[str]:
    """Runs each loader in turn in one fresh process (which imports the stack once, as a Beam
    worker does) and returns what each did: its model's signatures, or its error."""
    payloads = [base64.b64encode(pickler.dumps(fn)).decode() for fn in construct_fns]
    script = ("import base64, json, components\n"
              "from apache_beam.internal import pickler\n"
              "outcomes = []\n"
              f"for payload in {payloads!r}:\n"
              "    try:\n"
              "        model = pickler.loads(base64.b64decode(payload))()\n"
              "        outcomes.append(f'signatures {sorted(model.signatures)}')\n"
              "    except Exception as error:\n"
              "        outcomes.append(f'failed: {error}')\n"
              "print(json.dumps(outcomes))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_loader_registers_scann_ops_where_the_model_is_loaded(scann_model):
    eval_config = config_pb2.EvalConfig(
        model_specs=[config_pb2.ModelSpec(signature_name="serving_default")])
    stock = tfma.default_eval_shared_model(eval_saved_model_path=scann_model,
                                           eval_config=eval_config)
    ours = model_loading.custom_eval_shared_model(scann_model, "", eval_config)

    # TFMA's own loader first: nothing has registered ScaNN's ops in that process yet.
    stock_outcome, our_outcome = _load_in_a_fresh_process(stock.model_loader.construct_fn,
                                                          ours.model_loader.construct_fn)
    assert stock_outcome.startswith("failed: ") and "Scann" in stock_outcome
    assert our_outcome == "signatures ['serving_default']"
