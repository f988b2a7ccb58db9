"""Intra-image semantic transfer (IST) head: a co-occurrence logit for every unordered class pair.

HST paper §3.2, eq. 3 (p_ij = phi_intra([f_i ; f_j])); the reference layers (SST/HST ``model/*.py``,
``shared/reference/hcp_mlr_pl_notes.md`` §7.1) on category features v (B, C, D):

  u = fc1(v)                                     fc1: D -> H (512), no activation
  g[b, p] = ReLU(fc2([u[b, i] ; u[b, j]]))       fc2: 2H -> O (1024), pair p = (i < j), row-major
  q[b, p] = fc3(g[b, p])                         fc3: O -> O, no activation
  l[b, p] = <W_pair[p], q[b, p]> + b_pair[p]     element-wise classifier over the P = C(C-1)/2 pairs

computed without the reference's cost (two (B, P, O) x (O, O) products, 1.3 TFLOP each at B=32,
C=200, and several (B, P, O) tensors):

* fc2 on a concatenation is the sum of two per-class linears: fc2([u_i ; u_j]) = u_i W_a + u_j W_b + b,
  so x_a = u W_a and x_b = u W_b are computed once per class (B, C, O) and broadcast-added per pair;
* fc3 followed by the per-pair element-wise classifier is one linear map per pair:
  l[b, p] = <g[b, p], V[p]> + k[p] with V = W_pair W_3^T (P, O) and k = W_pair b_3 + b_pair, computed
  once per step (independent of B);
* the (B, P, O) ReLU activations are evaluated ``chunk`` pairs at a time under ``jax.checkpoint`` in
  a ``lax.map``, so memory is O(B chunk O) and the backward pass recomputes one chunk at a time.

Same logits as the reference layers (to float rounding) and the same gradients for every parameter
(tests/test_ist.py).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mlrpl_jax.models.ssgrl import torch_dense, torch_uniform_init


def num_pairs(num_classes: int) -> int:
    """P = C (C - 1) / 2."""
    return num_classes * (num_classes - 1) // 2


def pair_logits(
    x_a: jax.Array,
    x_b: jax.Array,
    bias: jax.Array,
    v: jax.Array,
    k: jax.Array,
    chunk: int,
) -> jax.Array:
    """l[b, p] = <ReLU(x_a[b, i_p] + x_b[b, j_p] + bias), v[p]> + k[p], chunked over pairs.

    Args:
      x_a, x_b: (B, C, O) per-class halves of the pair layer.
      bias: (O,) the pair layer's bias.
      v: (P, O) collapsed fc3 x pair-classifier weights.
      k: (P,) collapsed biases.
      chunk: pairs per rematerialised chunk (>= 1).

    Returns:
      (B, P) pair logits.
    """
    num_classes = x_a.shape[1]
    i, j = np.triu_indices(num_classes, k=1)
    p = len(i)
    chunk = max(1, min(chunk, p))
    n = -(-p // chunk)
    pad = n * chunk - p
    i = np.pad(i, (0, pad)).reshape(n, chunk)
    j = np.pad(j, (0, pad)).reshape(n, chunk)
    v_chunks = jnp.pad(v, ((0, pad), (0, 0))).reshape(n, chunk, -1)

    @jax.checkpoint
    def one_chunk(args):  # -> (B, chunk)
        ic, jc, vc = args
        g = jax.nn.relu(x_a[:, ic] + x_b[:, jc] + bias)
        return jnp.einsum("bpo,po->bp", g, vc)

    out = jax.lax.map(one_chunk, (jnp.asarray(i), jnp.asarray(j), v_chunks))  # (n, B, chunk)
    out = jnp.moveaxis(out, 0, 1).reshape(x_a.shape[0], n * chunk)
    return out[:, :p] + k


class LinearParams(nn.Module):
    """Declares a torch-initialised linear layer's parameters and returns them (kernel, bias).

    For layers that are used through an algebraically equivalent form rather than applied directly;
    the parameter tree keeps the reference layer's name and layout ({'kernel': (in, out), 'bias'}).
    """

    fan_in: int
    features: int

    @nn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array]:
        init = torch_uniform_init(self.fan_in)
        return (
            self.param("kernel", init, (self.fan_in, self.features)),
            self.param("bias", init, (self.features,)),
        )


class ElementWiseParams(nn.Module):
    """The reference's ``Element_Wise_Layer(rows, dim)`` parameters: kernel (rows, dim), bias (rows,),
    both U(+-1/sqrt(dim)); returned, not applied (see `LinearParams`)."""

    rows: int
    dim: int

    @nn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array]:
        init = torch_uniform_init(self.dim)
        return (
            self.param("kernel", init, (self.rows, self.dim)),
            self.param("bias", init, (self.rows,)),
        )


class ISTHead(nn.Module):
    """The IST co-occurrence head (module docstring). Parameter names follow the reference layers.

    Attributes:
      hidden_dim: H, output of fc1 (reference 512).
      pair_dim: O, width of fc2/fc3 (reference 1024).
      chunk: pairs per rematerialised chunk.
    """

    hidden_dim: int = 512
    pair_dim: int = 1024
    chunk: int = 1024

    @nn.compact
    def __call__(self, v: jax.Array) -> jax.Array:
        """Category features v (B, C, D) -> pair logits (B, P), P = C(C-1)/2 in triu order."""
        _, c, d = v.shape
        h, o = self.hidden_dim, self.pair_dim
        u = torch_dense(h, d, name="fc1")(v)  # (B, C, H)
        k2, b2 = LinearParams(2 * h, o, name="fc2")()
        k3, b3 = LinearParams(o, o, name="fc3")()
        w_pair, b_pair = ElementWiseParams(num_pairs(c), o, name="classifier")()  # (P, O), (P,)
        x_a, x_b = u @ k2[:h], u @ k2[h:]  # the two per-class halves of fc2
        v_pair = w_pair @ k3.T  # (P, O): fc3 then the pair classifier, collapsed
        k_pair = w_pair @ b3 + b_pair
        return pair_logits(x_a, x_b, b2, v_pair, k_pair, self.chunk)
