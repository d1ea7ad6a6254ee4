"""Every knob of the pipeline. Runners read these and may override some from their flags."""

PIPELINE_NAME = "movielens-recommender"

# Data: any MovieLens `*-ratings` config of TFDS; the matching `*-movies` catalogue comes along.
DATASET = "movielens/100k-ratings"
EVAL_FRACTION = 0.2
SPLIT_SEED = 42
# Which ratings are eval (components/example_gen/splits.py): "random" (EVAL_FRACTION, by a seeded
# hash), "time" or "time:Q" (train before a global cut-off time, eval after), or MovieLens
# 100k's published "canonical:u1" ... "canonical:u5", "canonical:ua", "canonical:ub".
SPLIT_PROTOCOL = "random"

# Step code, referenced by import path (no module wheel to build or upload).
PREPROCESSING_FN = "components.transform.preprocessing.preprocessing_fn"
RUN_FN = "components.trainer.train.run_fn"
EVALUATOR_MODULE = "components.evaluator.model_loading"

# Model and training (components/trainer/model.py: ModelConfig documents each one).
EMBEDDING_DIM = 64
RATING_HIDDEN_UNITS = (256, 64)
RATING_DROPOUT = 0.5
RETRIEVAL_WEIGHT = 1.0
RATING_WEIGHT = 1.0
TEMPERATURE = 1.0
RETRIEVAL_NEGATIVES = "catalogue"
SAMPLING_BIAS_CORRECTION = True  # in-batch negatives only
EXCLUDE_RATED_NEGATIVES = False
USER_HISTORY = True
# The retrieval vector's session term: the history weighed by the time between each rating
# and the request, in buckets with these boundaries (seconds): 1 min, 10 min, 1 h, 6 h, 1 day,
# 3 days, 1 week, 30 days, 90 days. () leaves the session term out.
HISTORY_TIME_BOUNDARIES = (60, 600, 3_600, 21_600, 86_400, 259_200, 604_800, 2_592_000,
                           7_776_000)
# The rating vector's rated term: the history's titles scaled by the user's ratings of them,
# weighed by the same time buckets (learnt for this term) where the session term is on.
RATING_HISTORY = True
# The history each example reads: up to TASTE_HISTORY_SIZE titles spread over the user's whole
# history (the uniform term), and the RECENT_HISTORY_SIZE latest ratings before the request (the
# session and rated terms). Bounded, so a training step's cost is flat in history length.
TASTE_HISTORY_SIZE = 128
RECENT_HISTORY_SIZE = 64
# Catalogue negatives: an exact softmax up to this many titles, a uniform sample of this many
# per batch above it (ml-1m has 3.7k titles, ml-25m 59k).
CATALOGUE_SOFTMAX_SIZE = 2048
USER_DEMOGRAPHICS = False
L2_REGULARIZATION = 1e-4
OPTIMIZER = "adam"
LEARNING_RATE = 0.01
BATCH_SIZE = 1024
EPOCHS = 30  # passes at most: early stopping on the validation slice ends training sooner
VALIDATION_FRACTION = 0.1
# The validation loss is checked after every pass, or every this many examples if a pass is
# longer, so that early stopping's patience costs a bounded amount of training on large data.
VALIDATION_INTERVAL = 250_000
EARLY_STOPPING_PATIENCE = 2
# The learning rate is cut to this fraction whenever a check does not improve the validation loss.
LEARNING_RATE_DROP = 0.3
TRAINING_SEED = 42
SERVING_TOP_K = 10
HYPERPARAMETERS = {  # the Trainer's custom_config: ModelConfig's fields
    "embedding_dim": EMBEDDING_DIM, "rating_hidden_units": list(RATING_HIDDEN_UNITS),
    "rating_dropout": RATING_DROPOUT,
    "retrieval_weight": RETRIEVAL_WEIGHT, "rating_weight": RATING_WEIGHT,
    "temperature": TEMPERATURE, "retrieval_negatives": RETRIEVAL_NEGATIVES,
    "sampling_bias_correction": SAMPLING_BIAS_CORRECTION,
    "exclude_rated_negatives": EXCLUDE_RATED_NEGATIVES,
    "user_history": USER_HISTORY,
    "history_time_boundaries": list(HISTORY_TIME_BOUNDARIES),
    "rating_history": RATING_HISTORY,
    "taste_history_size": TASTE_HISTORY_SIZE, "recent_history_size": RECENT_HISTORY_SIZE,
    "catalogue_softmax_size": CATALOGUE_SOFTMAX_SIZE,
    "user_demographics": USER_DEMOGRAPHICS,
    "l2_regularization": L2_REGULARIZATION, "optimizer": OPTIMIZER,
    "learning_rate": LEARNING_RATE, "batch_size": BATCH_SIZE, "epochs": EPOCHS,
    "validation_fraction": VALIDATION_FRACTION, "validation_interval": VALIDATION_INTERVAL,
    "early_stopping_patience": EARLY_STOPPING_PATIENCE,
    "learning_rate_drop": LEARNING_RATE_DROP, "seed": TRAINING_SEED,
    "top_k": SERVING_TOP_K,
}

# Blessing: absolute bounds, and the largest regression allowed against the latest blessed model.
MIN_TOP_100_ACCURACY = 0.05
MAX_RMSE = 1.5
MAX_TOP_100_ACCURACY_DROP = 0.01
MAX_RMSE_INCREASE = 0.02

# Beam (ExampleGen, StatisticsGen, Transform, Evaluator).
BEAM_PIPELINE_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]

