"""Evaluator hook (`module_path`): loads the model with ScaNN's TF ops registered.

TFX's Evaluator calls `custom_eval_shared_model` from this module instead of TFMA's default.
The model is loaded wherever TFMA's Beam workers run (this process, worker processes of the
multi-processing DirectRunner, Dataflow workers, the Kubeflow/Vertex container), none of which
has ScaNN's ops unless told: loading would fail with `Op type not registered 'Scann>...'`.
"""

import functools

import tensorflow_model_analysis as tfma

from components import stack


def _load_with_scann_ops(construct_fn):
    stack.register_scann_ops()
    return construct_fn()


def custom_eval_shared_model(eval_saved_model_path, model_name, eval_config, **kwargs):
    shared_model = tfma.default_eval_shared_model(
        eval_saved_model_path=eval_saved_model_path, model_name=model_name,
        eval_config=eval_config, **kwargs)
    # Runs in the process that loads the model, wherever that is.
    shared_model.model_loader.construct_fn = functools.partial(
        _load_with_scann_ops, shared_model.model_loader.construct_fn)
    return shared_model
