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
# User demographics: in the 100k and 1m configs only.
USER_GENDER = "user_gender"
USER_AGE = "bucketized_user_age"
USER_OCCUPATION = "user_occupation_label"
DEMOGRAPHIC_FEATURES = (USER_GENDER, USER_AGE, USER_OCCUPATION)
# TFDS's age buckets are 1, 18, 25, 35, 45, 50 and 56; it has 22 occupation labels.
AGE_BUCKET_BOUNDARIES = (18.0, 25.0, 35.0, 45.0, 50.0, 56.0)
DEMOGRAPHIC_SIZES = (2, len(AGE_BUCKET_BOUNDARIES) + 1, 22)  # gender, age bucket, occupation

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
# [batch, 3] int64 indices of gender, age bucket and occupation (datasets with demographics).
USER_DEMOGRAPHICS = "user_demographics"

# Vocabulary file names written by Transform.
USER_VOCABULARY = "user_id"
MOVIE_VOCABULARY = "movie_title"
