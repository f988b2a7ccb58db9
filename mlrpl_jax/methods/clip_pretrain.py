"""`clip_pretrain`: contrastive pretraining of a small CLIP on scenes with generated captions.

No CLIP weights can be downloaded here, and prompt tuning on random towers tests wiring, not the
method; this method trains a CLIP (`models.clip.CLIP`, e.g. the `'synthetic_rn'` preset) from
scratch as OpenAI did, at CPU scale: image-caption pairs, the symmetric InfoNCE loss
(Radford et al. 2021, eq. of their Fig. 3):

    logits_ij = exp(t) <u_i, v_j>,  u, v the L2-normalised image / caption embeddings,
    loss = (CE(logits, diag) + CE(logits^T, diag)) / 2,

the log temperature t learned (init ln(1/0.07)) and clipped at ln(`logit_scale_max`) = ln(100),
as CLIP clips it. The negatives are the other captions of the global batch.

Captions are generated inside the jitted step from each image's known positive labels (with
setting 'fal', every class present): "a photo of a <name 1> and a <name 2> ... ." naming up to
`max_objects` classes in a random order (uniform scores from the step's rng, the top
`max_objects` positives; an image with more positives has the rest unnamed, one without any is
"a photo of."). Class names are the data's (for the synthetic scenes "red striped disc", see
`synthetic_scenes.class_names`), tokenised by the architecture's tokenizer (`clip.make_tokenizer`).

Prediction (evaluation, model selection): zero-shot logits exp(t) <u, v_c> against the prompts
"a photo of a <name>." of the C classes, so the trainer's test mAP is the zero-shot mAP.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mlrpl_jax.methods import base, dualcoop
from mlrpl_jax.models import clip

PREFIX = "a photo of"


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.clip_arch = "synthetic_rn"
    c.max_objects = 5
    c.logit_scale_max = 100.0
    c.vocab_path = ml_collections.FieldReference(None, field_type=str)  # BPE vocabularies
    return c


def validate(config: base.Config) -> None:
    mc = config.method_config
    dualcoop.check_clip_arch(mc)
    if mc.max_objects < 1 or mc.logit_scale_max <= 1:
        raise ValueError(
            f"config.method_config max_objects={mc.max_objects}, logit_scale_max="
            f"{mc.logit_scale_max}: need max_objects >= 1 and logit_scale_max > 1."
        )


class CaptionTokens:
    """The token pieces of the generated captions (numpy, built once on the host).

    Attributes:
      prefix: (P,) ids of start-of-text + "a photo of".
      segments: (C, S) per class: "a" + the name's tokens + "and", left-aligned, padded with 0.
      lengths: (C,) the segments' lengths.
      period, eot: the ids of "." and end-of-text.
      context_length: L of the architecture; `max_objects` segments must fit (checked).
    """

    def __init__(self, tokenizer, class_names, max_objects: int, context_length: int):
        self.prefix = np.asarray([tokenizer.sot_id, *tokenizer.encode(PREFIX)], np.int32)
        article, conj = tokenizer.encode("a"), tokenizer.encode("and")
        pieces = [[*article, *tokenizer.encode(n.replace("_", " ")), *conj] for n in class_names]
        width = max(len(p) for p in pieces)
        self.segments = np.zeros((len(pieces), width), np.int32)
        for c, p in enumerate(pieces):
            self.segments[c, : len(p)] = p
        self.lengths = np.asarray([len(p) for p in pieces], np.int32)
        (self.period,) = tokenizer.encode(".")
        self.eot = tokenizer.eot_id
        longest = len(self.prefix) + int(np.sort(self.lengths)[-max_objects:].sum()) + 1
        if longest > context_length:
            raise ValueError(
                f"Captions naming {max_objects} classes need up to {longest} tokens, more than "
                f"the context length {context_length}; lower config.method_config.max_objects."
            )
        self.context_length = context_length
        self.max_objects = max_objects


def make_captions(tokens: CaptionTokens, labels: jax.Array, rng: jax.Array) -> jax.Array:
    """(B, L) int32 caption ids of the known positives of `labels` (B, C) (module docstring)."""
    b, c = labels.shape
    k = min(tokens.max_objects, c)
    scores = jnp.where(labels == 1, jax.random.uniform(rng, (b, c)), -1.0)
    top, chosen = jax.lax.top_k(scores, k)  # (B, K) in random order among the positives
    valid = top >= 0
    seg = jnp.asarray(tokens.segments)[chosen]  # (B, K, S)
    seg_len = jnp.where(valid, jnp.asarray(tokens.lengths)[chosen], 0)  # (B, K)
    p = len(tokens.prefix)
    starts = p + jnp.cumsum(seg_len, axis=1) - seg_len  # (B, K)
    t = jnp.arange(seg.shape[-1])
    positions = starts[..., None] + t  # (B, K, S)
    keep = t < seg_len[..., None]
    length = tokens.context_length
    positions = jnp.where(keep, positions, length)  # out of range: dropped by the scatter
    rows = jnp.broadcast_to(jnp.arange(b)[:, None, None], positions.shape)
    ids = jnp.zeros((b, length), jnp.int32).at[:, :p].set(jnp.asarray(tokens.prefix))
    ids = ids.at[rows, positions].set(seg, mode="drop")
    end = p + jnp.sum(seg_len, axis=1)  # one past the last segment (its trailing "and")
    named = jnp.any(valid, axis=1)
    period_at = jnp.where(named, end - 1, p)  # the last "and" becomes "."; none named: "."
    ids = ids.at[jnp.arange(b), period_at].set(tokens.period)
    return ids.at[jnp.arange(b), period_at + 1].set(tokens.eot)


class ClipPretrainModel(nn.Module):
    """A CLIP (scope 'clip'), the zero-shot prompts of the data's classes and the caption pieces."""

    clip_config: clip.ClipConfig
    class_prompt_ids: object  # (C, L) numpy int32
    captions: CaptionTokens

    def setup(self):
        self.clip = clip.CLIP(self.clip_config)

    def contrastive(self, images, caption_ids, train: bool = False):
        """(B, E) image and caption embeddings and the log temperature."""
        image = self.clip.encode_image(images, train)
        text = self.clip.encode_text(caption_ids)
        return image, text, self.clip.logit_scale

    def __call__(self, images, train: bool = False):
        """Zero-shot logits (B, C) against "a photo of a <name>."."""
        image = _l2_normalize(self.clip.encode_image(images, train))
        text = _l2_normalize(self.clip.encode_text(jnp.asarray(self.class_prompt_ids)))
        return jnp.exp(self.clip.logit_scale) * image @ text.T, {}


def _l2_normalize(x):
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))


def make_model(config: base.Config, data_info: base.DataInfo) -> ClipPretrainModel:
    mc = config.method_config
    arch = clip.PRESETS[mc.clip_arch]
    tokenizer = clip.make_tokenizer(arch, mc.vocab_path)
    prompts = [f"{PREFIX} a {n.replace('_', ' ')}." for n in data_info.class_names]
    captions = CaptionTokens(tokenizer, data_info.class_names, mc.max_objects,
                             arch.context_length)  # fmt: skip
    return ClipPretrainModel(arch, tokenizer.tokenize(prompts, arch.context_length), captions)


def contrastive_loss(image, text, logit_scale, scale_max):
    """CLIP's symmetric InfoNCE (module docstring); returns (loss, metrics)."""
    scale = jnp.exp(jnp.minimum(logit_scale, jnp.log(scale_max)))
    logits = scale * _l2_normalize(image) @ _l2_normalize(text).T
    target = jnp.arange(logits.shape[0])
    i2t = optax.softmax_cross_entropy_with_integer_labels(logits, target).mean()
    t2i = optax.softmax_cross_entropy_with_integer_labels(logits.T, target).mean()
    accuracy = jnp.mean(jnp.argmax(logits, axis=1) == target)
    return (i2t + t2i) / 2, {"logit_scale": scale, "retrieval_top1": accuracy}


def loss_fn(model, config, params, batch_stats, method_state, batch, rng, clock):
    del clock
    captions = make_captions(model.captions, batch["labels"], rng)
    (image, text, logit_scale), batch_stats = base.apply_train(
        model, params, batch_stats, batch["image"], captions, method=ClipPretrainModel.contrastive
    )
    loss, metrics = contrastive_loss(image, text, logit_scale, config.method_config.logit_scale_max)
    return loss, base.StepOutput({"contrastive": loss, **metrics}, batch_stats, method_state)


METHOD = base.Method(
    name="clip_pretrain",
    default_config=default_config,
    make_model=make_model,
    loss_fn=loss_fn,
    predict_fn=base.predict_logits,
    validate=validate,
    param_groups=lambda config: (),
    normalize_images=dualcoop.clip_normalize,
    load_pretrained=lambda config, params, batch_stats: (params, batch_stats),
)
