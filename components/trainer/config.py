"""The model's and its training's settings, in one dataclass whose defaults are the adopted model.

How each default was chosen, on the validation slice only: benchmarks/results/tuning.md. Free
of TensorFlow, so that pipeline/configs.py and the runners read it without importing the stack.
The Trainer receives every field in its custom_config (`as_custom_config`), so ML Metadata
records the whole model of a run, not only what differed from the defaults.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

CUSTOM_CONFIG_KEY = "model"

RANDOM_VALIDATION, TIME_VALIDATION = "random", "time"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Every hyperparameter of the model (components/trainer/model.py) and its training."""

    embedding_dim: int = 64
    rating_hidden_units: tuple[int, ...] = (256, 64)
    # Dropout after each hidden layer of the rating MLP (the rating task overfits long before
    # the retrieval task stops improving).
    rating_dropout: float = 0.5
    retrieval_weight: float = 1.0
    rating_weight: float = 1.0
    # Retrieval softmax temperature.
    temperature: float = 1.0
    # The retrieval softmax runs over every movie of the vocabulary (an exact softmax, cheap at
    # MovieLens catalogue sizes); over a larger catalogue, over a uniform sample of this many
    # titles per batch (shared by its examples), so a step's cost stops growing with the
    # catalogue (ml-1m has 3.7k titles, ml-25m 59k); the sampled softmax's correction keeps the
    # loss an estimate of the full one.
    catalogue_softmax_size: int = 2048
    # The taste history term: the user vector adds the mean embedding of the titles the user
    # rated in training (SVD++'s implicit feedback); each training example leaves its own title
    # out. Users with more than `taste_history_size` ratings: that many of them, spread evenly
    # over the history.
    taste_history_size: int = 128
    # The session and rated terms read the user's `recent_history_size` latest ratings before
    # the request: a bounded window keeps the cost per example flat as histories grow (on
    # ml-100k the 10 minutes before a rating hold 24 earlier ratings on average, 64 at p95).
    recent_history_size: int = 64
    # The retrieval vector adds the session term, a weighted mean of the recent ratings'
    # "session" embeddings, each weight learnt per bucket of the time between its rating and
    # the request (bucket upper ends in seconds: 1 min, 10 min, 1 h, 6 h, 1 day, 3 days, 1 week,
    # 30 days, 90 days), so the titles rated in the same session, just before the request, can
    # dominate it. Only ratings made before the request count: a live system has no later ones.
    # Without a request time (the user-id-only serving signatures) the mean is uniform, as it
    # is with no boundaries at all.
    # The rating vector adds the rated term instead: a weighted mean of the same ratings'
    # "rated" embeddings, each scaled by how far the user's rating sits from the training mean
    # (Koren's explicit neighbourhood term), weighted by time buckets of its own.
    history_time_boundaries: tuple[float, ...] = (60, 600, 3_600, 21_600, 86_400, 259_200,
                                                  604_800, 2_592_000, 7_776_000)
    # L2 penalty on the user and title embedding tables, applied by the optimizer to the rows
    # each step updates (components/trainer/lazy_adam.py: a step's cost then stays
    # independent of the vocabularies' sizes).
    l2_regularization: float = 1e-4
    # The precision of the history terms' sums in training (validation checks included; the
    # recent terms of user chunks are summed in float32): "auto" computes them in bfloat16 on
    # CPUs that multiply bfloat16 in hardware (Intel AMX), for catalogues of 2,049 to 32,768
    # titles (ml-1m's size: a 1,024-example step 57 -> 42 ms before user chunks,
    # docs/cost_and_scale.md), and in float32 otherwise; "float32" and "bfloat16" force one.
    # The exported model computes in float32 whatever this says.
    history_sum_precision: str = "auto"
    # Adam's learning rate (the optimizer of every tuning round since the first); its sparse
    # updates are lazy: only the rows a batch read move.
    learning_rate: float = 0.01
    batch_size: int = 1024
    # Training batches hold `batch_size // user_chunk_size` chunks of up to `user_chunk_size`
    # consecutive ratings of one user (a pass over the chunks in a new order each time): the
    # examples of a chunk share one window of recent ratings, so the recent terms read at most
    # `recent_history_size + 2 * user_chunk_size - 1` ratings per chunk, not
    # `recent_history_size` per example. 1: batches of independent examples. On ml-100k 2, 4
    # and 8 train as independent examples do; on ml-1m-shaped data, with 4 or 8 alike, the
    # rating head found the synthetic taste-group affinity within the held checks at 9e-4 in
    # 2 of 4 runs (validation RMSE 0.667 to 0.668; 0.675 to 0.680 when it did not, top-k the
    # same), where independent examples did in 3 of 3 (tuning.md, rounds 22 and 25).
    user_chunk_size: int = 4
    # Training stops when the validation loss (both tasks' weighted loss, without the L2
    # penalty, on a slice carved from the training split, never the eval split) has not
    # improved for `early_stopping_patience` checks; the best weights are kept. It is checked
    # after every pass over the data, or every `validation_interval` examples when a pass is
    # longer (ml-1m: about 3 checks a pass), so that patience costs a bounded number of examples
    # whatever the dataset's size. `epochs`: the most passes. Each check scores at most
    # `validation_check_size` of the slice's ratings, the same evenly spread ones every time
    # (ml-25m's slice holds 2 M: scoring it all cost twice the 250k training examples between
    # checks); every rating of the slice still joins the served histories. Each is asked as a
    # live request is, with the user's earlier ratings of the slice in the request
    # (train.earlier_slice_ratings).
    epochs: int = 30
    validation_interval: int = 250_000
    validation_check_size: int = 100_000
    validation_fraction: float = 0.1
    # RANDOM_VALIDATION: the validation slice is a hash-chosen `validation_fraction` of the
    # training ratings; TIME_VALIDATION: their latest `validation_fraction` (the time split
    # protocol's rule).
    validation_split: str = RANDOM_VALIDATION
    early_stopping_patience: int = 2
    # Neither early stopping nor the learning-rate cuts read the checks of the first
    # `minimum_passes` passes: an embedding model has not trained a user's rows before it has
    # seen their ratings. At ml-25m's size (a check every 1 % of a pass) the checks' noise
    # stopped training after 0.07 passes, its loss still falling (tuning.md, round 15).
    # ml-100k and ml-1m-shaped data train for many passes; their checks are unchanged.
    minimum_passes: float = 1.0
    # A check improves on the best so far only by more than this (both for early stopping and
    # for the learning-rate cuts, whose Keras default it is). Without it early stopping counted
    # any improvement: on ml-1m-shaped data the last 8 of 40 checks moved the loss by 0.0002 in
    # all, at learning rates down to 5e-9 (docs/cost_and_scale.md).
    min_improvement: float = 1e-4
    # The learning rate is multiplied by `learning_rate_drop` each time the validation loss has
    # not improved for `learning_rate_patience` checks (1.0: constant).
    learning_rate_drop: float = 0.3
    learning_rate_patience: int = 1
    # Where checks come every `validation_interval` examples, within a pass (ml-1m's size and
    # larger), a cut rate is held for `within_pass_rate_hold` checks (neither cut again nor
    # stopped in them), and training stops at the first stalled check after `within_pass_cuts`
    # cuts (0: no limit), keeping its best check's weights. Such a check follows a third of a
    # pass or less, over which the loss can stall while training is on its way: on
    # ml-1m-shaped data the checked RMSE falls from 0.745 to 0.67 only after 8 to 14 checks
    # below the initial rate, slowly at first, and a cut or a stop in that slow start ended
    # runs at 0.743. Held rates let the first cut come at the first stall (0.01 had stalled
    # the RMSE at 0.77 for the last 5 to 7 of its 15 to 17 checks): seeds 42, 44 and 43 train
    # 40, 41 and 49 checks, not 60, 50 and 51 to 60, to a validation RMSE 0.001 to 0.003
    # higher, the same top-k (tuning.md, round 22). Whole-pass checks (ml-100k) are unchanged.
    within_pass_rate_hold: int = 8
    within_pass_cuts: int = 3
    seed: int = 42
    # Users unseen in training, with no rating of their own in the request, are ranked by the
    # titles' popularity over the last `cold_start_popularity_days` days of the training
    # ratings (catalogue.recent_popularity_scores) instead of by their untrained user vector,
    # whose ranking is the titles' learnt biases: popularity over all of training. 0 turns
    # the rule off. (Under the time protocol most eval ratings are by such users: tuning.md
    # round 11.) The rule rates their titles by each title's mean training rating, shrunk
    # towards the mean of all by `cold_start_rating_shrinkage` ratings, instead of through the
    # untrained vector.
    cold_start_popularity_days: float = 30.0
    cold_start_rating_shrinkage: float = 2.0
    # The served rating blends the rating head's with an item-based neighbourhood model's
    # (components/trainer/neighbourhood.py: Koren's kNN with baselines over the
    # `neighbourhood_size` titles most similar to the rated one among up to
    # `neighbourhood_history_size` of the user's ratings; Pearson similarities shrunk by
    # `neighbourhood_shrinkage` common raters, kept for the `neighbourhood_max_titles` most
    # rated titles), weighted by least squares on the validation slice. 0: the head alone.
    neighbourhood_size: int = 40
    neighbourhood_history_size: int = 256
    neighbourhood_shrinkage: float = 100.0
    neighbourhood_max_titles: int = 4_096
    # How many titles the serving signatures return.
    top_k: int = 10

    @classmethod
    def from_custom_config(cls, custom_config: Mapping[str, Any] | None) -> "ModelConfig":
        """Reads the Trainer's custom_config[CUSTOM_CONFIG_KEY] (other keys belong to TFX's
        executors, e.g. Vertex AI Training's); fields it leaves out keep their defaults."""
        values = dict((custom_config or {}).get(CUSTOM_CONFIG_KEY, {}))
        unknown = set(values) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"Unknown model hyperparameters: {sorted(unknown)}.")
        return cls(**{name: tuple(value) if isinstance(value, list) else value
                      for name, value in values.items()})

    def as_custom_config(self) -> dict:
        """Every field, JSON-ready (tuples as lists), for the Trainer's custom_config."""
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in dataclasses.asdict(self).items()}
