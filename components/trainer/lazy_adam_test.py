import numpy as np
import tensorflow as tf

from components.trainer.lazy_adam import LazyAdam


def _table(rows=4, dim=3, seed=0):
    table = tf.keras.layers.Embedding(rows, dim)
    table.build(None)
    table.set_weights([np.random.default_rng(seed).normal(size=(rows, dim)).astype("float32")])
    return table


def _steps(optimizer, table, rows, steps=3, l2_in_loss=0.0):
    target = tf.constant([[1.0, -2.0, 0.5]])
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(table(tf.constant(rows)) - target))
            if l2_in_loss:
                loss += l2_in_loss * tf.reduce_sum(tf.square(table.embeddings))
        optimizer.apply_gradients(zip(tape.gradient(loss, table.trainable_variables),
                                      table.trainable_variables, strict=True))
    return table.embeddings.numpy()


def test_rows_a_step_does_not_read_keep_their_values_and_moments():
    table = _table()
    before = table.embeddings.numpy()
    optimizer = LazyAdam(0.1, l2=0.01, l2_tables=[table])
    after = _steps(optimizer, table, rows=[0, 2, 2])  # a repeated row: one update of the sum
    np.testing.assert_array_equal(after[[1, 3]], before[[1, 3]])
    assert not np.allclose(after[[0, 2]], before[[0, 2]])
    moments = optimizer.variables[1].numpy()  # iterations, then m of the table
    assert not moments[[1, 3]].any() and moments[[0, 2]].all()


def test_when_every_row_is_read_it_is_keras_adam_with_the_whole_table_penalty():
    rows = [3, 0, 1, 2, 1]
    lazy = _steps(LazyAdam(0.1, l2=0.01, l2_tables=[table := _table()]), table, rows)
    keras = _steps(tf.keras.optimizers.Adam(0.1), _table(), rows, l2_in_loss=0.01)
    np.testing.assert_allclose(lazy, keras, rtol=1e-5, atol=1e-6)
    without_l2 = _steps(LazyAdam(0.1, l2=0.01), _table(), rows)  # a table it does not penalise
    assert not np.allclose(without_l2, lazy)


def test_small_tables_are_updated_densely_as_keras_adam_does():
    table, rows = _table(), [0, 2]
    dense = _steps(LazyAdam(0.1, l2=0.01, l2_tables=[table], dense_max_rows=4), table, rows)
    keras = _steps(tf.keras.optimizers.Adam(0.1), _table(), rows, l2_in_loss=0.01)
    np.testing.assert_allclose(dense, keras, rtol=1e-5, atol=1e-6)
    assert not np.allclose(dense[[1, 3]], _table().embeddings.numpy()[[1, 3]])  # decayed
