"""Partial BCE against the equation written out in numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlrpl_jax.losses import partial_bce


def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_partial_bce_matches_known_entry_mean():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 5)) * 3
    labels = rng.choice([-1, 0, 1], size=(6, 5)).astype(np.int8)
    p = _np_sigmoid(logits)
    terms = []
    for b in range(6):
        for c in range(5):
            if labels[b, c] == 1:
                terms.append(-np.log(p[b, c]))
            elif labels[b, c] == -1:
                terms.append(-np.log(1 - p[b, c]))
    loss, metrics = partial_bce(jnp.asarray(logits, jnp.float32), jnp.asarray(labels))
    np.testing.assert_allclose(float(loss), np.mean(terms), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["known_fraction"]), len(terms) / 30, rtol=1e-6)


def test_partial_bce_soft_targets_and_margin():
    logits = np.array([[0.3, -1.2, 2.0, 0.5]], np.float32)
    y = np.array([[0.7, -0.4, 0.05, -1.0]], np.float32)
    p = _np_sigmoid(logits.astype(np.float64))
    margin = 0.1
    # Positive entries (y > margin): -[y log p + (1 - y) log(1 - p)];
    # negative entries (y < -margin): -[(-y) log(1 - p) + (1 + y) log p]; |y| <= margin ignored.
    expected = np.mean(
        [
            -(0.7 * np.log(p[0, 0]) + 0.3 * np.log(1 - p[0, 0])),
            -(0.4 * np.log(1 - p[0, 1]) + 0.6 * np.log(p[0, 1])),
            -(1.0 * np.log(1 - p[0, 3]) + 0.0 * np.log(p[0, 3])),
        ]
    )
    loss, _ = partial_bce(jnp.asarray(logits), jnp.asarray(y), margin=margin)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_partial_bce_no_known_entry_is_zero_and_unknowns_get_no_gradient():
    logits = jnp.ones((2, 3))
    loss, _ = partial_bce(logits, jnp.zeros((2, 3), jnp.int8))
    assert float(loss) == 0.0
    labels = jnp.array([[1, 0, -1], [0, 0, 1]], jnp.int8)
    grads = jax.grad(lambda x: partial_bce(x, labels)[0])(logits)
    assert np.all(np.asarray(grads)[np.asarray(labels) == 0] == 0)
    assert np.all(np.asarray(grads)[np.asarray(labels) != 0] != 0)


@pytest.mark.parametrize("margin", [1.0, 1.5])
def test_margin_at_least_one_empties_the_mask(margin):
    loss, _ = partial_bce(jnp.ones((2, 2)), jnp.array([[1, -1], [1, 0]], jnp.int8), margin=margin)
    assert float(loss) == 0.0
