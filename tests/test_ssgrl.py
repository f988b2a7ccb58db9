"""SSGRL core: the heads against the reference formulas written out here in float64 numpy.

Reference: shared/reference/hcp_mlr_pl_notes.md §1.2-1.5 (semantic decoupling, gated GNN, output layer,
element-wise classifier). Parameters are taken from our Flax modules, so both sides use the same weights.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlrpl_jax.models import reference_heads, ssgrl

B, H, W, D_IN, D, K, C, E = 3, 3, 4, 12, 10, 8, 7, 5


def _np(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference_sd(p, x, w):
    """SD as the reference computes it, per (b, p, c), float64."""
    b, h, wd, d = x.shape
    c = w.shape[0]
    v = np.zeros((b, c, d))
    a = np.zeros((b, h, wd, c))
    for i in range(b):
        e = np.zeros((h * wd, c))
        flat = x[i].reshape(h * wd, d)
        for pos in range(h * wd):
            for k in range(c):
                t = np.tanh((flat[pos] @ p["fc1"]["kernel"]) * (w[k] @ p["fc2"]["kernel"]))
                t = t @ p["fc3_kernel"] + p["fc3_bias"]
                e[pos, k] = (t @ p["fc4_kernel"] + p["fc4_bias"])[0]
        att = np.exp(e - e.max(axis=0)) / np.exp(e - e.max(axis=0)).sum(axis=0)  # softmax over HW
        a[i] = att.reshape(h, wd, c)
        for k in range(c):
            v[i, k] = (att[:, k : k + 1] * flat).sum(axis=0)  # sum_hw of a * x
    return v, a


def reference_ggnn(p, h, adj, steps=3):
    """The GGNN equations, node by node."""
    b, c, _ = h.shape

    def lin(name, x):
        return x @ p[name]["kernel"] + p[name]["bias"]

    for _ in range(steps):
        new = np.zeros_like(h)
        for i in range(b):
            for n in range(c):
                m = np.concatenate(
                    [
                        sum(adj[n, j] * h[i, j] for j in range(c)),
                        sum(adj[j, n] * h[i, j] for j in range(c)),
                    ]
                )
                z = _sigmoid(lin("w_z", m) + lin("u_z", h[i, n]))
                r = _sigmoid(lin("w_r", m) + lin("u_r", h[i, n]))
                hh = np.tanh(lin("w_h", m) + lin("u_h", r * h[i, n]))
                new[i, n] = (1 - z) * h[i, n] + z * hh
        h = new
    return h


def reference_head(params, f, steps=3):
    """Channel reduction (train-mode BN) -> SD -> GGNN -> tanh fc -> element-wise classifier."""
    x = f @ params["reduce"]["conv"]["kernel"][0, 0]
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    bn = params["reduce"]["bn"]
    x = (x - mean) / np.sqrt(var + 1e-5) * bn["scale"] + bn["bias"]
    v, a = reference_sd(params["sd"], x, params["label_embeddings"])
    h = reference_ggnn(params["gnn"], v, params["adjacency"], steps)
    o = np.tanh(
        np.concatenate([h, v], axis=-1) @ params["output"]["kernel"] + params["output"]["bias"]
    )
    cls = params["classifier"]
    logits = np.einsum("bcd,cd->bc", o, cls["kernel"]) + cls["bias"]
    return logits, v, a


@pytest.fixture(scope="module")
def setup():
    rng = np.random.RandomState(0)
    emb = rng.randn(C, E)
    adj = rng.rand(C, C)
    np.fill_diagonal(adj, 1.0)
    f = jax.random.normal(jax.random.PRNGKey(0), (B, H, W, D_IN))
    heads = {}
    for cf in ("sd", "sa"):
        head = ssgrl.SSGRLHead(
            num_classes=C, label_embeddings=emb, adjacency=adj, category_features=cf,
            feature_dim=D, attention_dim=K, sd_chunk=3,
        )  # fmt: skip
        variables = head.init(jax.random.PRNGKey(1), f, train=False)
        # Non-trivial BN affine parameters.
        bn = variables["params"]["reduce"]["bn"]
        bn["scale"] = 1.0 + 0.3 * jax.random.normal(jax.random.PRNGKey(2), bn["scale"].shape)
        bn["bias"] = 0.2 * jax.random.normal(jax.random.PRNGKey(3), bn["bias"].shape)
        heads[cf] = (head, variables)
    return f, heads


def test_head_matches_reference_formulas(setup):
    f, heads = setup
    head, variables = heads["sd"]
    (logits, aux), _ = head.apply(variables, f, train=True, mutable=["batch_stats"])
    ref_logits, ref_v, ref_a = reference_head(_np(variables["params"]), np.asarray(f, np.float64))
    np.testing.assert_allclose(aux["attention"], ref_a, atol=1e-5)
    np.testing.assert_allclose(aux["category_features"], ref_v, atol=1e-5)
    np.testing.assert_allclose(logits, ref_logits, atol=1e-5)
    # The attention is a softmax over the H*W positions of each (image, class).
    np.testing.assert_allclose(np.asarray(aux["attention"]).sum(axis=(1, 2)), 1.0, atol=1e-5)


def test_straightforward_transcription_matches_formulas(setup):
    """`reference_heads` (the benchmark's baseline) computes the same as the formulas."""
    f, heads = setup
    _, variables = heads["sd"]
    logits, v, a = reference_heads.head_apply(
        variables["params"], variables["batch_stats"], f, train=True
    )
    ref_logits, ref_v, ref_a = reference_head(_np(variables["params"]), np.asarray(f, np.float64))
    np.testing.assert_allclose(a, ref_a, atol=1e-5)
    np.testing.assert_allclose(v, ref_v, atol=1e-5)
    np.testing.assert_allclose(logits, ref_logits, atol=1e-5)


@pytest.mark.slow
@pytest.mark.mutation
def test_gradients_match_straightforward_transcription(setup):
    """The chunked, rematerialised SD gives the reference gradients for every parameter."""
    f, heads = setup
    head, variables = heads["sd"]
    weights = jax.random.normal(jax.random.PRNGKey(4), (B, C))

    def ours(params):
        (logits, aux), _ = head.apply(
            {"params": params, "batch_stats": variables["batch_stats"]}, f, train=True,
            mutable=["batch_stats"],
        )  # fmt: skip
        return jnp.sum(weights * logits) + jnp.sum(aux["category_features"] ** 2) * 1e-2

    def ref(params):
        logits, v, _ = reference_heads.head_apply(params, variables["batch_stats"], f, train=True)
        return jnp.sum(weights * logits) + jnp.sum(v**2) * 1e-2

    g_ours = jax.grad(ours)(variables["params"])
    g_ref = jax.grad(ref)(variables["params"])
    flat_ours = dict(jax.tree_util.tree_leaves_with_path(g_ours))
    for path, g in jax.tree_util.tree_leaves_with_path(g_ref):
        scale = max(1.0, float(jnp.max(jnp.abs(g))))
        np.testing.assert_allclose(
            flat_ours[path], g, atol=2e-5 * scale, err_msg=jax.tree_util.keystr(path)
        )


@pytest.mark.parametrize("chunk", [1, 2, 7, 50])
def test_sd_chunking_is_exact(chunk):
    """Any chunk size (dividing C or not, larger than C) gives the same logits."""
    hx = jax.random.normal(jax.random.PRNGKey(0), (2, 5, K))
    hw = jax.random.normal(jax.random.PRNGKey(1), (C, K))
    u = jax.random.normal(jax.random.PRNGKey(2), (K,))
    direct = jnp.tanh(hx[:, :, None, :] * hw[None, None]) @ u + 0.5
    np.testing.assert_allclose(
        ssgrl.sd_attention_logits(hx, hw, u, jnp.float32(0.5), chunk), direct, atol=1e-5
    )


def test_semantic_attention_formula(setup):
    """SA: v = sum_p sigmoid(CAM) x, CAM = 1x1 conv of the backbone map, cam_logits = max_p CAM."""
    f, heads = setup
    head, variables = heads["sa"]
    (logits, aux), _ = head.apply(variables, f, train=True, mutable=["batch_stats"])
    p = _np(variables["params"])
    fx = np.asarray(f, np.float64)
    x = fx @ p["reduce"]["conv"]["kernel"][0, 0]
    x = (x - x.mean(axis=(0, 1, 2))) / np.sqrt(x.var(axis=(0, 1, 2)) + 1e-5)
    x = x * p["reduce"]["bn"]["scale"] + p["reduce"]["bn"]["bias"]
    cam = fx @ p["sa"]["cam"]["kernel"]  # (B, H, W, C)
    att = _sigmoid(cam)
    v = np.einsum("bhwc,bhwd->bcd", att, x)
    np.testing.assert_allclose(aux["attention"], att, atol=1e-5)
    np.testing.assert_allclose(aux["category_features"], v, atol=1e-4)
    np.testing.assert_allclose(aux["cam_logits"], cam.max(axis=(1, 2)), atol=1e-5)
    h = reference_ggnn(p["gnn"], v, p["adjacency"])
    o = np.tanh(np.concatenate([h, v], axis=-1) @ p["output"]["kernel"] + p["output"]["bias"])
    ref = np.einsum("bcd,cd->bc", o, p["classifier"]["kernel"]) + p["classifier"]["bias"]
    np.testing.assert_allclose(logits, ref, atol=1e-4)


def test_linear_init_is_pytorch_default():
    """Weights and biases ~ U(+-1/sqrt(fan_in)), as torch.nn.Linear."""
    layer = ssgrl.torch_dense(300, 400)
    p = layer.init(jax.random.PRNGKey(0), jnp.zeros((1, 400)))["params"]
    bound = 1 / np.sqrt(400)
    for x in (p["kernel"], p["bias"]):
        assert float(jnp.max(jnp.abs(x))) <= bound
        assert float(jnp.std(x)) == pytest.approx(bound / np.sqrt(3), rel=0.05)


def test_constants_are_frozen_parameters(setup):
    _, heads = setup
    head, variables = heads["sd"]
    for path in ssgrl.CONSTANT_PARAMS:
        assert path[0] == "head"
        assert path[1] in variables["params"]
    np.testing.assert_allclose(
        variables["params"]["adjacency"], np.asarray(head.adjacency, np.float32)
    )
