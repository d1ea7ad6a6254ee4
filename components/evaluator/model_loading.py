"""Evaluator hook (`module_path`): loads the model with ScaNN's TF ops registered.

TFX's Evaluator calls `custom_eval_shared_model` from this module instead of TFMA's default;
without ScaNN's ops, loading the model fails with `Op type not registered 'Scann>...'`. This
matters on Kubeflow/Vertex, where the Evaluator runs in a process that imported nothing of ours.
"""

import tensorflow_model_analysis as tfma

from components import stack


def custom_eval_shared_model(eval_saved_model_path, model_name, eval_config, **kwargs):
    stack.register_scann_ops()
    return tfma.default_eval_shared_model(
        eval_saved_model_path=eval_saved_model_path, model_name=model_name,
        eval_config=eval_config, **kwargs)
