"""TRM-ML's network (Ma et al., ACM MM 2024, paper 003 §3.1-3.3; the unspecified parts as
``shared/reference/trm_ml_notes.md`` §12 proposes them, each an attribute here / a config key).

On top of `prompting.DualPrompts` (frozen CLIP, learned positive / negative class prompts; the
TRM-ML author's value-path dense tokens f in R^{T x E}, T = h w, not normalised):

* **Category-aware region learning** (§3.2): a transformer-decoder layer in the joint space
  (width E, one head, no self-attention, post-norm, FFN `ffn_dim` with ReLU, dropout), whose
  queries are learned category embeddings Q (C, E), N(0, 0.02) (DETR-style random init), keys
  f + a 2-D sine positional embedding (DETR's normalised form), values f. The single head's
  pre-softmax logits are the region energies e_c in R^T; the soft region is sigmoid(e_c)
  (eq. 2). A = the decoder output (after its FFN and a final LayerNorm); F^q = A + MLP(A)
  (eq. 3, MLP E -> `mlp_dim` -> E). Region representations f^r_c = sum_t sigmoid(e_{c,t}) f_t
  (eq. 4): raw CLIP features, so they stay in CLIP's joint space.
* **Matching** (eq. 1, 5) with the dual prompts as the author's framework combines them:
  logit_c(v) = s cos(v, g^+_c) - s cos(v, g^-_c), s = exp(t) learned (init 3.91); the query-level
  logits use v = f^q_c, the region-level ones v = f^r_c. Inference: the region-level logits.
* The projection MLP of the multimodal contrastive loss (§3.5, E -> E -> E, ReLU), fed the
  L2-normalised region features ('projected' below), the scale of the unit-norm bank tokens it
  also projects [I].

``use_carl=False`` is the ablation baseline (paper Table 3: "modified DualCoOp"): the DualCoOp
author variant's spatial-softmax aggregation (`prompting.DualCoOp`), no decoder.

``__call__`` returns (logits (B, C), aux) with aux: 'pos_logits', 'neg_logits' (region level, the
parts of the ASL), 'q_pos_logits', 'q_neg_logits', 'logits_q' (query level), 'region_features'
f^r (B, C, E), 'energies' e (B, C, T), 'tokens' f (B, T, E), 'text_pos' g^+ (C, E), 'projected'
(B, C, E) the contrastive projection of f^r / |f^r|.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mlrpl_jax.models import clip, prompting


def sine_positional_embedding(h: int, w: int, dim: int, temperature: float = 10000.0):
    """(h*w, dim) DETR's normalised 2-D sine embedding (dim/2 channels per axis: y then x, each
    sin / cos interleaved), positions 1..h and 1..w scaled to (0, 2 pi]."""
    half = dim // 2
    y = np.arange(1, h + 1, dtype=np.float32)[:, None].repeat(w, 1) / (h + 1e-6) * 2 * np.pi
    x = np.arange(1, w + 1, dtype=np.float32)[None, :].repeat(h, 0) / (w + 1e-6) * 2 * np.pi
    dim_t = temperature ** (2 * (np.arange(half) // 2) / half)

    def embed(pos):
        p = pos[..., None] / dim_t
        return np.stack([np.sin(p[..., 0::2]), np.cos(p[..., 1::2])], axis=-1).reshape(h, w, -1)

    return np.concatenate([embed(y), embed(x)], axis=-1).reshape(h * w, 2 * half)


class Mlp(nn.Module):
    hidden: int
    out: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.out, name="fc2")(nn.relu(nn.Dense(self.hidden, name="fc1")(x)))


class RegionDecoderLayer(nn.Module):
    """One post-norm decoder layer with a single-head cross-attention and no self-attention;
    returns (the decoded queries (B, C, E), the attention logits (B, C, T))."""

    ffn_dim: int
    dropout: float = 0.1

    @nn.compact
    def __call__(self, queries, memory, pos, train: bool):
        dim = memory.shape[-1]
        init = nn.initializers.xavier_uniform()
        q = nn.Dense(dim, kernel_init=init, name="q_proj")(queries)  # (C, E): tgt = 0 + Q
        k = nn.Dense(dim, kernel_init=init, name="k_proj")(memory + pos)  # (B, T, E)
        v = nn.Dense(dim, kernel_init=init, name="v_proj")(memory)
        energies = jnp.einsum("ce,bte->bct", q, k) / np.sqrt(dim)
        attn = jax.nn.softmax(energies, axis=-1)
        attn = nn.Dropout(self.dropout)(attn, deterministic=not train)
        out = nn.Dense(dim, kernel_init=init, name="out_proj")(jnp.einsum("bct,bte->bce", attn, v))
        x = nn.LayerNorm(name="norm1")(nn.Dropout(self.dropout)(out, deterministic=not train))
        h = nn.Dense(self.ffn_dim, kernel_init=init, name="ffn1")(x)
        h = nn.Dropout(self.dropout)(nn.relu(h), deterministic=not train)
        h = nn.Dense(dim, kernel_init=init, name="ffn2")(h)
        x = nn.LayerNorm(name="norm2")(x + nn.Dropout(self.dropout)(h, deterministic=not train))
        return nn.LayerNorm(name="final_norm")(x), energies


class TRMML(nn.Module):
    """TRM-ML's network (module docstring).

    Attributes:
      clip_config, prompt_ids, n_ctx, class_specific, remat_text, dtype: as `DualPrompts`.
      ffn_dim: the decoder's FFN width (2048); mlp_dim: the hidden width of eq. 3's MLP (2048);
      dropout: the decoder's dropout (0.1); use_carl: False for the DualCoOp baseline.
    """

    clip_config: clip.ClipConfig
    prompt_ids: Any
    n_ctx: int = 16
    class_specific: bool = True
    ffn_dim: int = 2048
    mlp_dim: int = 2048
    dropout: float = 0.1
    use_carl: bool = True
    remat_text: str = "none"
    dtype: Any = jnp.float32

    def setup(self):
        self.prompts = prompting.DualPrompts(
            self.clip_config, self.prompt_ids, self.n_ctx, self.class_specific, "value",
            self.remat_text, self.dtype,
        )  # fmt: skip
        dim = self.clip_config.embed_dim
        num_classes = np.asarray(self.prompt_ids).shape[0]
        self.scale_t = self.param(
            "scale_t", nn.initializers.constant(prompting.AUTHOR_SCALE_INIT), ()
        )
        if self.use_carl:
            self.queries = self.param("queries", nn.initializers.normal(0.02), (num_classes, dim))
            self.decoder = RegionDecoderLayer(self.ffn_dim, self.dropout)
            self.query_mlp = Mlp(self.mlp_dim, dim)
        else:
            self.spatial_t = self.param(
                "spatial_t", nn.initializers.constant(prompting.AUTHOR_SPATIAL_INIT), ()
            )
        self.nce_mlp = Mlp(dim, dim)

    def match(self, v, g_pos, g_neg):
        """(pos, neg) logits (B, C): s cos(v_c, g^+_c), s cos(v_c, g^-_c) for v (B, C, E)."""
        v = prompting.l2_normalize(v)
        s = jnp.exp(self.scale_t)
        return s * jnp.sum(v * g_pos, axis=-1), s * jnp.sum(v * g_neg, axis=-1)

    def project(self, x):
        """The contrastive projection (eq. 13's MLP), L2-normalised."""
        return prompting.l2_normalize(self.nce_mlp(x))

    def __call__(self, images: jax.Array, train: bool = False):
        f, (h, w) = self.prompts.image_tokens(images)
        f = f.astype(jnp.float32)
        g_pos, g_neg = self.prompts.text_features()
        aux = {"tokens": f, "text_pos": g_pos}
        if not self.use_carl:
            cos_pos = jnp.einsum("bte,ce->bct", prompting.l2_normalize(f), g_pos)
            cos_neg = jnp.einsum("bte,ce->bct", prompting.l2_normalize(f), g_neg)
            weights = jax.nn.softmax(jnp.exp(self.spatial_t) * cos_pos, axis=-1)
            s = jnp.exp(self.scale_t)
            pos, neg = s * jnp.sum(weights * cos_pos, -1), s * jnp.sum(weights * cos_neg, -1)
            aux.update(pos_logits=pos, neg_logits=neg, energies=jnp.log(weights))
            aux["region_features"] = jnp.einsum("bct,bte->bce", weights, f)
            # keep the projection's parameters in the tree (unused by this ablation's losses)
            aux["projected"] = self.project(prompting.l2_normalize(aux["region_features"]))
            return pos - neg, aux
        pos_emb = jnp.asarray(sine_positional_embedding(h, w, f.shape[-1]))
        decoded, energies = self.decoder(self.queries, f, pos_emb, train)
        f_q = decoded + self.query_mlp(decoded)  # eq. 3
        f_r = jnp.einsum("bct,bte->bce", jax.nn.sigmoid(energies), f)  # eq. 4
        q_pos, q_neg = self.match(f_q, g_pos, g_neg)
        pos, neg = self.match(f_r, g_pos, g_neg)
        aux.update(
            pos_logits=pos, neg_logits=neg, q_pos_logits=q_pos, q_neg_logits=q_neg,
            logits_q=q_pos - q_neg, region_features=f_r, energies=energies,
            projected=self.project(prompting.l2_normalize(f_r)),
        )  # fmt: skip
        return pos - neg, aux
