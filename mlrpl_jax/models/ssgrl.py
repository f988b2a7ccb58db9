"""The SSGRL core shared by SSGRL, SST, HST, SARB and DSRB: category-specific features + gated GNN.

HST paper §3.1 ("SARL"), DSRB paper §4.2 ("CSRL"); exact reference behaviour in
``shared/reference/hcp_mlr_pl_notes.md`` §1. Shapes: B batch, H x W feature map (P = H*W positions),
D_in backbone channels (2048 for ResNet-101), D = ``feature_dim`` (1024), C classes, E embedding dim.

  feature map f (B, H, W, D_in)
    -> channel reduction: 1x1 conv D_in -> D (no bias) + BatchNorm, **no ReLU**        x (B, H, W, D)
    -> category features ('sd' or 'sa'):                    v (B, C, D), attention a (B, H, W, C)
    -> gated GNN, 3 steps, weights shared, in/out adjacency A / A^T:                   h (B, C, D)
    -> output layer o = tanh(W_o [h ; v] + b_o):                                       o (B, C, D)
    -> element-wise classifier s[b, c] = <W_cls[c], o[b, c]> + b_cls[c]:         logits (B, C)

Semantic decoupling (SD; SSGRL, the reference's ``SemanticDecoupling``), guided by category
embeddings w (C, E):
  e[b, p, c] = fc4(fc3(tanh(fc1(x[b, p]) * fc2(w[c]))))     fc1 D->K, fc2 E->K (no bias), fc3 K->K,
  a[b, :, c] = softmax_p e[b, :, c]                           fc4 K->1, K = ``attention_dim`` (512)
  v[b, c]    = sum_p a[b, p, c] x[b, p]
The reference builds (B*P, C, D)-sized tensors by ``repeat``; here no (B, P, C, D) or (B, P, C, K)
tensor is ever held whole:
  * fc4 o fc3 has no nonlinearity in between, so it collapses exactly into one vector
    u = W3 w4 (K,) and a scalar; e = tanh(...) . u + const (the constant cancels in the softmax but
    is kept so e equals the reference value);
  * the (B, P, C, K) tanh is evaluated in chunks of ``sd_chunk`` classes under ``jax.checkpoint``
    inside a ``lax.map``, so the forward pass keeps only (B, P, C) logits and the backward pass
    recomputes one chunk at a time: peak memory O(B P sd_chunk K) instead of O(B P C K);
  * v = einsum('bpc,bpd->bcd', a, x): the attention-weighted maps F = a x (B, H, W, C, D) are never
    formed (their spatial sum is all that is used).

Semantic attention (SA; ADD-GCN's semantic attention module, cited by HST §3.1 and DSRB §4.2; the
reference code has none): class activation maps m = conv1x1(f) (D_in -> C, no bias) on the
backbone map; a = sigmoid(m); v[b, c] = sum_p a[b, p, c] x[b, p] with x the channel-reduced
("transformed") map. The CAM also gives image-level logits max_p m[b, p, c] (ADD-GCN's s_m), which
the methods supervise with the partial BCE (``method_config.cam_loss_weight``), as ADD-GCN does.

Gated GNN (GGNN; reference ``GraphNeuralNetwork``), per step t = 1..3 with shared weights:
  m = [A h ; A^T h] (B, C, 2D);  z = sig(W_z m + U_z h);  r = sig(W_r m + U_r h)
  h~ = tanh(W_h m + U_h (r * h));  h <- (1 - z) * h + z * h~
All linear layers use PyTorch's default init U(+-1/sqrt(fan_in)) for weight and bias, as the
reference. Category embeddings and the adjacency matrix are frozen parameters (``'label_embeddings'``,
``'adjacency'``), so they are checkpointed with the model, as in the reference's state dict.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

CATEGORY_FEATURES = ("sd", "sa")
# Parameters that are data, not learned: frozen (no gradient, no optimiser state).
CONSTANT_PARAMS = (("head", "label_embeddings"), ("head", "adjacency"))


def torch_uniform_init(fan_in: int):
    """PyTorch's default Linear/Conv init for weights *and* biases: U(-1/sqrt(fan_in), +...)."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def torch_dense(features: int, fan_in: int, use_bias: bool = True, name: str | None = None):
    """``nn.Dense`` initialised like ``torch.nn.Linear(fan_in, features)``."""
    init = torch_uniform_init(fan_in)
    return nn.Dense(features, use_bias=use_bias, kernel_init=init, bias_init=init, name=name)


def constant_init(value: np.ndarray):
    """Initialiser returning `value` (for data-derived frozen parameters)."""
    value = np.asarray(value, np.float32)

    def init(key, shape=None, dtype=jnp.float32):
        del key, shape
        return jnp.asarray(value, dtype)

    return init


def sd_attention_logits(
    hx: jax.Array, hw: jax.Array, u: jax.Array, bias: jax.Array, chunk: int
) -> jax.Array:
    """Semantic-decoupling logits e[b, p, c] = sum_k tanh(hx[b, p, k] hw[c, k]) u[k] + bias.

    Equal to ``tanh(hx[:, :, None] * hw[None, None]) @ u + bias`` without holding the (B, P, C, K)
    tanh: classes are processed ``chunk`` at a time under ``jax.checkpoint`` (the backward pass
    recomputes each chunk's tanh), so activation memory is O(B P chunk K).

    Args:
      hx: (B, P, K) fc1 of the feature map.
      hw: (C, K) fc2 of the category embeddings.
      u: (K,) collapsed fc4 o fc3 weight.
      bias: () collapsed bias.
      chunk: classes per chunk (>= 1).

    Returns:
      (B, P, C) logits.
    """
    num_classes, k = hw.shape
    chunk = max(1, min(chunk, num_classes))
    num_chunks = -(-num_classes // chunk)
    padded = jnp.pad(hw, ((0, num_chunks * chunk - num_classes), (0, 0)))

    @jax.checkpoint
    def one_chunk(hw_chunk):  # (chunk, K) -> (B, P, chunk)
        return jnp.einsum("bpck,k->bpc", jnp.tanh(hx[:, :, None, :] * hw_chunk), u)

    e = jax.lax.map(one_chunk, padded.reshape(num_chunks, chunk, k))  # (n, B, P, chunk)
    e = jnp.moveaxis(e, 0, 2).reshape(hx.shape[0], hx.shape[1], num_chunks * chunk)
    return e[:, :, :num_classes] + bias


class ChannelReduction(nn.Module):
    """The reference's ``changeChannel``: 1x1 conv D_in -> D (no bias) + BatchNorm, no ReLU."""

    features: int

    @nn.compact
    def __call__(self, f: jax.Array, train: bool) -> jax.Array:
        """(B, H, W, D_in) -> (B, H, W, D); BN on batch statistics when `train`."""
        x = nn.Conv(
            self.features,
            (1, 1),
            use_bias=False,
            kernel_init=torch_uniform_init(f.shape[-1]),
            name="conv",
        )(f)
        return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="bn")(x)


class SemanticDecoupling(nn.Module):
    """SD: category-embedding-guided spatial attention (module docstring).

    Attributes:
      attention_dim: K (reference 512).
      chunk: classes per chunk of the (B, P, chunk, K) tanh.
    """

    attention_dim: int = 512
    chunk: int = 16

    @nn.compact
    def __call__(self, x: jax.Array, embeddings: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Args: x (B, P, D) channel-reduced features; embeddings (C, E).

        Returns: v (B, C, D) category features, a (B, P, C) attention (softmax over P).
        """
        d, e_dim, k = x.shape[-1], embeddings.shape[-1], self.attention_dim
        hx = torch_dense(k, d, use_bias=False, name="fc1")(x)
        hw = torch_dense(k, e_dim, use_bias=False, name="fc2")(embeddings)
        # fc3 (K -> K, bias) then fc4 (K -> 1, bias) with no nonlinearity: one vector and a scalar.
        k3 = self.param("fc3_kernel", torch_uniform_init(k), (k, k))
        b3 = self.param("fc3_bias", torch_uniform_init(k), (k,))
        k4 = self.param("fc4_kernel", torch_uniform_init(k), (k, 1))
        b4 = self.param("fc4_bias", torch_uniform_init(k), (1,))
        u = k3 @ k4[:, 0]
        bias = b3 @ k4[:, 0] + b4[0]
        logits = sd_attention_logits(hx, hw, u, bias, self.chunk)
        attention = jax.nn.softmax(logits, axis=1)
        v = jnp.einsum("bpc,bpd->bcd", attention, x)
        return v, attention


class SemanticAttention(nn.Module):
    """SA: class activation maps as spatial attention (ADD-GCN's SAM; module docstring).

    Attributes:
      num_classes: C.
    """

    num_classes: int

    @nn.compact
    def __call__(self, f: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Args: f (B, P, D_in) backbone features; x (B, P, D) channel-reduced features.

        Returns: v (B, C, D), a (B, P, C) = sigmoid(CAM), cam_logits (B, C) = max_p CAM.
        """
        cam = torch_dense(self.num_classes, f.shape[-1], use_bias=False, name="cam")(f)
        attention = jax.nn.sigmoid(cam)
        v = jnp.einsum("bpc,bpd->bcd", attention, x)
        return v, attention, jnp.max(cam, axis=1)


class GatedGNN(nn.Module):
    """The reference's gated graph neural network (module docstring).

    Attributes:
      steps: number of propagation steps (3), weights shared across steps.
    """

    steps: int = 3

    @nn.compact
    def __call__(self, h: jax.Array, adjacency: jax.Array) -> jax.Array:
        """Args: h (B, C, D) node features; adjacency (C, C) A (A[i, j] = P(j | i)).

        Returns: (B, C, D) node features after `steps` steps.
        """
        d = h.shape[-1]
        w_z, w_r, w_h = (torch_dense(d, 2 * d, name=n) for n in ("w_z", "w_r", "w_h"))
        u_z, u_r, u_h = (torch_dense(d, d, name=n) for n in ("u_z", "u_r", "u_h"))
        for _ in range(self.steps):
            m_in = jnp.einsum("ij,bjd->bid", adjacency, h)
            m_out = jnp.einsum("ji,bjd->bid", adjacency, h)
            m = jnp.concatenate([m_in, m_out], axis=-1)
            z = jax.nn.sigmoid(w_z(m) + u_z(h))
            r = jax.nn.sigmoid(w_r(m) + u_r(h))
            h_new = jnp.tanh(w_h(m) + u_h(r * h))
            h = (1.0 - z) * h + z * h_new
        return h


class ElementWiseClassifier(nn.Module):
    """logits[b, c] = sum_d W[c, d] x[b, c, d] + b[c]; W, b ~ U(+-1/sqrt(D)) (reference init)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """(B, C, D) -> (B, C)."""
        c, d = x.shape[-2:]
        w = self.param("kernel", torch_uniform_init(d), (c, d))
        b = self.param("bias", torch_uniform_init(d), (c,))
        return jnp.einsum("bcd,cd->bc", x, w) + b


class SSGRLHead(nn.Module):
    """Everything after the backbone: reduction, category features, GNN, output, classifier.

    Attributes:
      num_classes: C.
      label_embeddings: (C, E) initial value of the frozen ``label_embeddings`` parameter.
      adjacency: (C, C) initial value of the frozen ``adjacency`` parameter.
      category_features: 'sd' (semantic decoupling) or 'sa' (semantic attention).
      feature_dim: D (reference 1024).
      attention_dim: K of SD (reference 512).
      gnn_steps: GGNN steps (reference 3).
      sd_chunk: classes per chunk in SD.
    """

    num_classes: int
    label_embeddings: Any
    adjacency: Any
    category_features: str = "sd"
    feature_dim: int = 1024
    attention_dim: int = 512
    gnn_steps: int = 3
    sd_chunk: int = 16

    def setup(self):
        if self.category_features not in CATEGORY_FEATURES:
            raise ValueError(
                f"category_features={self.category_features!r}: must be one of "
                f"{CATEGORY_FEATURES} (config.model.category_features)."
            )
        emb = np.asarray(self.label_embeddings, np.float32)
        adj = np.asarray(self.adjacency, np.float32)
        c = self.num_classes
        if emb.ndim != 2 or emb.shape[0] != c or adj.shape != (c, c):
            raise ValueError(
                f"label_embeddings {emb.shape} and adjacency {adj.shape} must be (C, E) and (C, C) "
                f"with C = {c}."
            )
        self.embeddings = self.param("label_embeddings", constant_init(emb), emb.shape)
        self.adj = self.param("adjacency", constant_init(adj), adj.shape)
        self.gnn = GatedGNN(self.gnn_steps, name="gnn")
        self.classifier = ElementWiseClassifier(name="classifier")
        if self.category_features == "sd":
            self.sd = SemanticDecoupling(self.attention_dim, self.sd_chunk, name="sd")
        else:
            self.sa = SemanticAttention(self.num_classes, name="sa")
        d = self.feature_dim
        self.output_layer = torch_dense(d, 2 * d, name="output")
        self.reduce = ChannelReduction(d, name="reduce")

    def features(self, f: jax.Array, train: bool) -> dict[str, jax.Array]:
        """Category features of a backbone map f (B, H, W, D_in).

        Returns {'category_features': v (B, C, D), 'attention': (B, H, W, C), 'feature_sum':
        (B, H, W) the channel sum of the transformed map x (with the attention it gives the
        spatial sums of the category-specific maps F = a x without building them: DSRB's location
        statistic), and for 'sa' also 'cam_logits': (B, C)}.
        """
        b, h, w, _ = f.shape
        x = self.reduce(f, train).astype(jnp.float32).reshape(b, h * w, self.feature_dim)
        out = {}
        if self.category_features == "sd":
            v, attention = self.sd(x, self.embeddings)
        else:
            v, attention, out["cam_logits"] = self.sa(
                f.astype(jnp.float32).reshape(b, h * w, -1), x
            )
        out["category_features"] = v
        out["attention"] = attention.reshape(b, h, w, self.num_classes)
        out["feature_sum"] = jnp.sum(x, axis=-1).reshape(b, h, w)
        return out

    def classify(self, v: jax.Array) -> jax.Array:
        """Category features v (B, C, D) -> logits (B, C): GNN, tanh output layer, classifier."""
        h = self.gnn(v, self.adj)
        o = jnp.tanh(self.output_layer(jnp.concatenate([h, v], axis=-1)))
        return self.classifier(o)

    def __call__(self, f: jax.Array, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(B, H, W, D_in) backbone map -> (logits (B, C), aux of `features`)."""
        aux = self.features(f, train)
        return self.classify(aux["category_features"]), aux


class SSGRL(nn.Module):
    """Backbone + `SSGRLHead` (+ optional method parts). ``apply(..., images, train)`` ->
    (logits (B, C), aux) with aux {'category_features': (B, C, D), 'attention': (B, H, W, C),
    'feature_sum': (B, H, W), ['cam_logits': (B, C)], ['pair_logits': (B, P) from `ist`]}.

    Later methods reuse the parts: ``apply(..., method=SSGRL.features)`` maps images to the aux
    dict, ``apply(..., v, method=SSGRL.classify)`` maps (possibly blended) category features to
    logits.

    Attributes:
      backbone: images -> (B, H, W, D_in).
      head: the SSGRL head.
      ist: optional `ist.ISTHead` on the category features (SST, HST). Parameters that only the
        loss uses (HST's margins, SARB's alpha and beta) are the method's own
        (``params['method']``, `methods.base.Method.init_params`), not part of this model.
    """

    backbone: nn.Module
    head: SSGRLHead
    ist: nn.Module | None = None

    def features(self, images: jax.Array, train: bool) -> dict[str, jax.Array]:
        """(B, H, W, 3) images -> aux dict (see class docstring)."""
        return self.head.features(self.backbone(images, train=train), train)

    def classify(self, v: jax.Array) -> jax.Array:
        """(B, C, D) category features -> (B, C) logits."""
        return self.head.classify(v)

    def __call__(self, images: jax.Array, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        aux = self.features(images, train)
        if self.ist is not None:
            aux["pair_logits"] = self.ist(aux["category_features"])
        return self.classify(aux["category_features"]), aux
