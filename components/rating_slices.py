"""The one rule for a reproducible random slice of the ratings: ExampleGen's eval split under
the `random` protocol, and the Trainer's validation slice of the training ratings (which the
quality benchmark's peers are tuned on too).

A rating belongs to a slice by a hash of its identity (user id, movie title, time) and the
slice's salt (ExampleGen's: its split seed; the Trainer's: "validation"), never by its position
or serialized bytes, so the assignment does not depend on reading order, batching, worker
count or how an encoder orders a tf.Example's features, and two slices of different salts are
independent. The hash is TensorFlow's 64-bit fingerprint (`tf.strings.to_hash_bucket_fast`,
"deterministic on the content of the string ... and will never change"), computed in C++ over
whole batches, in an input pipeline's graph or on numpy arrays.
"""

from __future__ import annotations

import tensorflow as tf

# What ExampleGen records of the rule (its `split_rule` property, with the fraction and seed):
# a model trained on another rule's split must not be the baseline of one trained on this
# rule's, whose eval ratings it may have trained on.
RULE_NAME = "fingerprint64(salt|user_id|movie_title|timestamp)"
EVAL_SALT = "eval-seed-{seed}"
VALIDATION_SALT = "validation"
_BUCKETS = 2**32


def in_slice(user_ids, movie_titles, timestamps, fraction: float, salt: str) -> tf.Tensor:
    """[n] bool: which ratings (user ids and movie titles [n] strings, timestamps [n] integers;
    tensors or arrays) fall in the slice of `fraction` of all ratings named by `salt`."""
    identity = tf.strings.join([salt, user_ids, movie_titles,
                                tf.strings.as_string(tf.cast(timestamps, tf.int64))], "|")
    return tf.strings.to_hash_bucket_fast(identity, _BUCKETS) < int(round(fraction * _BUCKETS))
