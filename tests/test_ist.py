"""IST head: same logits and gradients as the reference layers (pair concatenation, fc3, classifier)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlrpl_jax.models import ist, reference_heads

B, C, D, H, O = 3, 6, 10, 8, 12


def reference_numpy(p, v):
    """The reference layers pair by pair, float64."""
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), p)
    v = np.asarray(v, np.float64)
    u = v @ p["fc1"]["kernel"] + p["fc1"]["bias"]
    out = np.zeros((v.shape[0], C * (C - 1) // 2))
    for b in range(v.shape[0]):
        idx = 0
        for i in range(C):
            for j in range(i + 1, C):
                g = np.maximum(
                    np.concatenate([u[b, i], u[b, j]]) @ p["fc2"]["kernel"] + p["fc2"]["bias"], 0
                )
                q = g @ p["fc3"]["kernel"] + p["fc3"]["bias"]
                out[b, idx] = q @ p["classifier"]["kernel"][idx] + p["classifier"]["bias"][idx]
                idx += 1
    return out


@pytest.fixture(scope="module")
def head():
    module = ist.ISTHead(hidden_dim=H, pair_dim=O, chunk=4)
    v = jax.random.normal(jax.random.PRNGKey(0), (B, C, D))
    params = module.init(jax.random.PRNGKey(1), v)["params"]
    return module, params, v


def test_parameters_have_the_reference_layout(head):
    _, params, _ = head
    shapes = jax.tree.map(jnp.shape, params)
    assert shapes == {
        "fc1": {"kernel": (D, H), "bias": (H,)},
        "fc2": {"kernel": (2 * H, O), "bias": (O,)},
        "fc3": {"kernel": (O, O), "bias": (O,)},
        "classifier": {"kernel": (15, O), "bias": (15,)},
    }


def test_logits_match_reference_layers(head):
    module, params, v = head
    ours = module.apply({"params": params}, v)
    np.testing.assert_allclose(ours, reference_numpy(params, v), atol=1e-5)
    np.testing.assert_allclose(reference_heads.ist_head_apply(params, v), ours, atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 7, 15, 100])
def test_any_chunk_size_gives_the_same_logits(head, chunk):
    _, params, v = head
    other = ist.ISTHead(hidden_dim=H, pair_dim=O, chunk=chunk)
    np.testing.assert_allclose(
        other.apply({"params": params}, v), reference_heads.ist_head_apply(params, v), atol=1e-5
    )


@pytest.mark.slow
@pytest.mark.mutation
def test_gradients_match_reference_layers(head):
    """Every parameter and the input features get the reference gradients."""
    module, params, v = head
    w = jax.random.normal(jax.random.PRNGKey(2), (B, 15))

    def ours(p, x):
        return jnp.sum(w * jnp.tanh(module.apply({"params": p}, x)))

    def ref(p, x):
        return jnp.sum(w * jnp.tanh(reference_heads.ist_head_apply(p, x)))

    g_ours = jax.grad(ours, argnums=(0, 1))(params, v)
    g_ref = jax.grad(ref, argnums=(0, 1))(params, v)
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(g_ours), jax.tree_util.tree_leaves(g_ref)
    ):
        np.testing.assert_allclose(a, b, atol=1e-5, err_msg=jax.tree_util.keystr(path))
