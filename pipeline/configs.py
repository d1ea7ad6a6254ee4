"""Every knob of the pipeline. Runners read these and may override some from their flags."""

from components.trainer.config import ModelConfig

PIPELINE_NAME = "movielens-recommender"

# Data: any MovieLens `*-ratings` config of TFDS; the matching `*-movies` catalogue comes along.
DATASET = "movielens/100k-ratings"
EVAL_FRACTION = 0.2
# The random protocol holds out EVAL_FRACTION, but at most about this many ratings: ml-1m's
# 200k all stay, ml-25m's 5 M would take the Evaluator hours (each one is ranked against the
# whole catalogue), and 250k measure a top-100 accuracy to within 0.001 (its standard error).
# The rest train. None: no cap.
MAX_EVAL_RATINGS = 250_000
SPLIT_SEED = 42
# Which ratings are eval (components/example_gen/splits.py): "random" (EVAL_FRACTION, by a seeded
# hash), "time" or "time:Q" (train before a global cut-off time, eval after), or MovieLens
# 100k's published "canonical:u1" ... "canonical:u5", "canonical:ua", "canonical:ub".
SPLIT_PROTOCOL = "random"

# Step code, referenced by import path (no module wheel to build or upload).
PREPROCESSING_FN = "components.transform.preprocessing.preprocessing_fn"
RUN_FN = "components.trainer.train.run_fn"
EVALUATOR_MODULE = "components.evaluator.model_loading"

# The model and its training: ModelConfig's defaults are the adopted model (each field is
# documented in components/trainer/config.py); a deployment's changes go here, e.g.
# ModelConfig(embedding_dim=128). The runners' --epochs flag overrides `epochs`.
MODEL = ModelConfig()

# Blessing: absolute bounds, and the largest regression allowed against the latest blessed model.
MIN_TOP_100_ACCURACY = 0.05
MAX_RMSE = 1.5
MAX_TOP_100_ACCURACY_DROP = 0.01
MAX_RMSE_INCREASE = 0.02

# TensorFlow's threads on small machines: on at most this many cores the local runner (and the
# benchmarks that train) run each op on one thread, as many ops at once as there are cores,
# where TensorFlow's default lets each op split over every core (components/stack.py,
# one_thread_per_op; TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS set by hand win). On a
# 2-core AMD EPYC: training 6 to 13 % shorter, the same eval figures (docs/running.md). More
# cores were not measured and keep TensorFlow's default; 0 keeps it everywhere.
ONE_THREAD_PER_OP_MAX_CORES = 2

# Beam (ExampleGen, StatisticsGen, Transform, Evaluator).
BEAM_PIPELINE_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]

