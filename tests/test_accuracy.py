"""tfmpq.accuracy: the one definition of a hit (Keras's "accuracy")."""
import numpy as np

from tfmpq.accuracy import hits, model_accuracy, model_hits


def test_hits_follow_keras_accuracy_for_every_label_form():
    out = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3], [0.2, 0.2, 0.6]])
    np.testing.assert_array_equal(hits(out, np.array([1, 2, 2])), [True, False, True])
    np.testing.assert_array_equal(hits(out, np.eye(3)[[1, 2, 2]]), [True, False, True])  # one-hot
    np.testing.assert_array_equal(hits(out, np.array([[1], [2], [2]])), [True, False, True])  # (N, 1) ids
    binary = np.array([[0.7], [0.2], [0.51]])
    np.testing.assert_array_equal(hits(binary, np.array([1, 0, 0])), [True, True, False])
    logits = np.array([[0.3], [-0.2], [-1.0]])
    np.testing.assert_array_equal(hits(logits, np.array([1, 0, 1]), from_logits=True), [True, True, False])
    assert hits(np.array([[np.nan, 1.0]]), np.array([1])) is None


def test_model_accuracy_counts_a_non_finite_batch_as_wrong(digits_mlp, digits):
    _, (x, y) = digits
    h = model_hits(digits_mlp, x, y, batch_size=100)
    expected = np.asarray(digits_mlp(x, training=False)).argmax(-1) == y
    np.testing.assert_array_equal(h, expected)
    assert model_accuracy(digits_mlp, x, y) == float(expected.mean())
    bad = x.copy()
    bad[:100] = np.nan  # the first batch of 100 gives NaN outputs: all wrong, the rest scored
    h_bad = model_hits(digits_mlp, bad, y, batch_size=100)
    assert not h_bad[:100].any()
    np.testing.assert_array_equal(h_bad[100:], expected[100:])
    assert np.isnan(model_accuracy(digits_mlp, x[:0], y[:0]))
