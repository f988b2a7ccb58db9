"""Straightforward transcriptions of the reference PyTorch heads, for parity tests and benchmarks.

Never used for training. They follow the order of operations of HCP-MLR-PL's
``model/SemanticDecoupling.py``, ``model/GraphNeuralNetwork.py``, ``Element_Wise_Layer.py``
(``shared/reference/hcp_mlr_pl_notes.md`` §1.2-1.5) and of SST/HST's intra-image co-occurrence head
(§7.1), including the ``repeat``-materialised (B*H*W, C, K) and (B, H, W, C, D) tensors and the
(B, P, 2D) pair concatenation that `mlrpl_jax.models.ssgrl` and `mlrpl_jax.models.ist` avoid. They
read the parameters of our modules (`SSGRLHead` 'sd' variant, `ISTHead`) so both sides can be
compared on the same weights.
"""

import jax
import jax.numpy as jnp


def _batch_norm(x, scale, bias, mean, var, train: bool, eps: float = 1e-5):
    if train:
        mean = jnp.mean(x, axis=(0, 1, 2))
        var = jnp.var(x, axis=(0, 1, 2))
    return (x - mean) / jnp.sqrt(var + eps) * scale + bias


def semantic_decoupling(p, x, embeddings):
    """The reference SD on x (B, H, W, D) and embeddings (C, E). Returns v (B, C, D), a (B, H, W, C)."""
    b, h, w, d = x.shape
    c = embeddings.shape[0]
    flat = x.reshape(b * h * w, d)
    img = flat @ p["fc1"]["kernel"]  # (BHW, K)
    img = jnp.repeat(img[:, None, :], c, axis=1)  # (BHW, C, K)
    word = embeddings @ p["fc2"]["kernel"]  # (C, K)
    word = jnp.broadcast_to(word[None], (b * h * w, c, word.shape[-1]))
    t = jnp.tanh(img * word)
    t = t @ p["fc3_kernel"] + p["fc3_bias"]  # fc3
    e = t @ p["fc4_kernel"] + p["fc4_bias"]  # fc4: (BHW, C, 1)
    e = e.reshape(b, h * w, c)
    a = jax.nn.softmax(e, axis=1).reshape(b, h, w, c)
    coef = jnp.repeat(a[..., None], d, axis=-1)  # (B, H, W, C, D)
    maps = coef * jnp.repeat(x[:, :, :, None, :], c, axis=3)  # featuremapWithCoefficient
    return maps.sum(axis=(1, 2)), a


def gated_gnn(p, h, adjacency, steps: int = 3):
    """The reference GGNN on h (B, C, D) with inMatrix = A and outMatrix = A^T repeated per image."""
    b = h.shape[0]
    in_m = jnp.broadcast_to(adjacency, (b,) + adjacency.shape)
    out_m = jnp.broadcast_to(adjacency.T, (b,) + adjacency.shape)

    def lin(name, v):
        return v @ p[name]["kernel"] + p[name]["bias"]

    for _ in range(steps):
        a_in = jnp.matmul(in_m, h)
        a_out = jnp.matmul(out_m, h)
        a = jnp.concatenate([a_in, a_out], axis=2)
        z = jax.nn.sigmoid(lin("w_z", a) + lin("u_z", h))
        r = jax.nn.sigmoid(lin("w_r", a) + lin("u_r", h))
        h_hat = jnp.tanh(lin("w_h", a) + lin("u_h", r * h))
        h = (1 - z) * h + z * h_hat
    return h


def head_apply(params, batch_stats, f, train: bool, gnn_steps: int = 3):
    """Reference head on a backbone map f (B, H, W, D_in) with `SSGRLHead` ('sd') parameters.

    Returns (logits (B, C), v (B, C, D), attention (B, H, W, C)).
    """
    x = f @ params["reduce"]["conv"]["kernel"][0, 0]
    bn, stats = params["reduce"]["bn"], batch_stats["reduce"]["bn"]
    x = _batch_norm(x, bn["scale"], bn["bias"], stats["mean"], stats["var"], train)
    v, a = semantic_decoupling(params["sd"], x, params["label_embeddings"])
    h = gated_gnn(params["gnn"], v, params["adjacency"], gnn_steps)
    o = jnp.tanh(
        jnp.concatenate([h, v], axis=2) @ params["output"]["kernel"] + params["output"]["bias"]
    )
    cls = params["classifier"]
    logits = (o * cls["kernel"][None]).sum(axis=2) + cls["bias"]
    return logits, v, a


def ist_head_apply(params, v):
    """The reference IST head on category features v (B, C, D) with `ISTHead` parameters.

    u = fc1(v); for every pair p = (i < j) in row-major order: g = ReLU(fc2([u_i ; u_j]));
    q = fc3(g); l[b, p] = <W_pair[p], q> + b_pair[p]. Returns pair logits (B, P).
    """
    c = v.shape[1]
    i, j = jnp.triu_indices(c, k=1)
    u = v @ params["fc1"]["kernel"] + params["fc1"]["bias"]  # (B, C, H)
    pairs = jnp.concatenate([u[:, i], u[:, j]], axis=-1)  # (B, P, 2H)
    g = jax.nn.relu(pairs @ params["fc2"]["kernel"] + params["fc2"]["bias"])
    q = g @ params["fc3"]["kernel"] + params["fc3"]["bias"]
    return (q * params["classifier"]["kernel"][None]).sum(-1) + params["classifier"]["bias"]
