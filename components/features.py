"""Feature names and split names shared by every step (ExampleGen, Transform, Trainer, Evaluator).

Raw names are TFDS's MovieLens feature names; tf.Examples carry them unchanged (every TFDS
feature is kept; the model uses those named here).
"""

from __future__ import annotations

USER_ID = "user_id"
MOVIE_ID = "movie_id"
MOVIE_TITLE = "movie_title"
MOVIE_GENRES = "movie_genres"
RATING = "user_rating"
TIMESTAMP = "timestamp"
# Features of the movie catalogue (TFDS's `movielens/<version>-movies`).
MOVIE_FEATURES = (MOVIE_ID, MOVIE_TITLE, MOVIE_GENRES)
# TFDS's ClassLabel for movie_genres has 21 names in every MovieLens version.
NUM_GENRES = 21

TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
# The whole movie catalogue, written by ExampleGen beside the rating splits, so retrieval is
# trained, scored and indexed over every movie, not only those rated in training.
MOVIES_SPLIT = "movies"

# Transform's outputs, read by the Trainer.
USER_INDEX = "user_index"
MOVIE_INDEX = "movie_index"
GENRES_MULTI_HOT = "genres_multi_hot"
RATING_LABEL = "rating"

# Vocabulary file names written by Transform.
USER_VOCABULARY = "user_id"
MOVIE_VOCABULARY = "movie_title"
