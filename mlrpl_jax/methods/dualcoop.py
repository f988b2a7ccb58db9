"""`dualcoop`: DualCoOp (Sun, Hu, Saenko, NeurIPS 2022) on frozen CLIP towers.

The model is `models.prompting.DualCoOp` (its docstring has the equations); only the prompt
contexts (and, in the author's variant, the two log scales) train: the CLIP towers are a frozen
parameter group (no gradient, no optimiser state). Two variants (`variant`):

* 'official' (sunxm2357/DualCoOp): mean token + resized positional embedding in the dense
  tokens, fixed scales 20 / 5, the softmax-pair ASL over [neg, pos] with unknown entries removed,
  summed (`losses.softmax_pair_asl`, eps 1e-6), times `loss_w` (the official train loop's weight;
  published only for COCO at 50 % known labels, 0.03; `configs/recipes.dualcoop_official_scale`
  sets 0.03 x 0.5 / p for every proportion p; default 1);
* 'author' (the TRM-ML author's DualCoOp framework, on which TRM-ML is built): value-path tokens,
  learned scales, the ASL of sigmoid(pos - neg) with -sum / B (`losses.sigmoid_difference_asl`,
  eps 1e-8).

ASL constants (both): gamma+ 1, gamma- 2, probability margin 0.05, focusing weights without
gradient. `loss` overrides the variant's loss ('softmax_pair' | 'sigmoid_difference').

CLIP: `clip_arch` names the architecture (`models.clip.PRESETS`: 'RN50', 'RN101', or the small
CLIPs trained here); `clip_weights` a checkpoint `models.clip_convert.load` reads (OpenAI .pt,
open_clip state dict, or the converted .npz), loaded strictly at the start of a new run and
checked against `clip_arch`. None leaves random towers: that tests wiring, not the method, and is
meant for tests only. The prompts are tokenised with the architecture's tokenizer
(`clip.make_tokenizer`: CLIP's BPE vocabulary from `vocab_path` or an installed package, or the
word list of a small CLIP trained here). Images are normalised with CLIP's mean and std.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mlrpl_jax import losses, models
from mlrpl_jax.methods import base
from mlrpl_jax.models import clip, prompting

LOSSES = ("softmax_pair", "sigmoid_difference")
CLIP_SCOPE = ("prompts", "clip")  # where the frozen CLIP lives in the model's variables


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.variant = "author"  # 'author' | 'official'
    c.loss = ml_collections.FieldReference(None, field_type=str)  # None: the variant's loss
    c.loss_w = 1.0  # weight of the ASL (official: 0.03 at COCO 50 %, the recipe's 0.015 / p)
    c.gamma_pos = 1.0  # ASL focusing exponent of positives
    c.gamma_neg = 2.0  # ASL focusing exponent of negatives
    c.asl_clip = 0.05  # ASL probability margin of negatives
    c.n_ctx = 16  # learned context tokens per prompt (positive and negative each)
    c.class_specific = True  # one context per class (--csc) | shared by all classes
    c.clip_arch = "RN101"  # models.clip.PRESETS key
    c.clip_weights = ml_collections.FieldReference(None, field_type=str)  # CLIP checkpoint
    c.vocab_path = ml_collections.FieldReference(None, field_type=str)  # None: found
    c.remat_text = "dots"  # clip.REMAT_MODES; "dots": 2/3 of the memory of "none", same speed
    return c


def _fail(key: str, value, rule: str):
    raise ValueError(f"config.method_config.{key}={value!r}: {rule}")


def validate(config: base.Config) -> None:
    mc = config.method_config
    check_clip_arch(mc)
    if mc.variant not in prompting.VARIANTS:
        _fail("variant", mc.variant, f"must be one of {prompting.VARIANTS}.")
    if mc.loss is not None and mc.loss not in LOSSES:
        _fail("loss", mc.loss, f"must be None (the variant's) or one of {LOSSES}.")
    if mc.n_ctx < 1:
        _fail("n_ctx", mc.n_ctx, "must be >= 1.")
    if mc.loss_w <= 0:
        _fail("loss_w", mc.loss_w, "must be > 0.")


def check_clip_arch(mc: ml_collections.ConfigDict) -> None:
    """The CLIP methods' common checks: `clip_arch` names a `clip.PRESETS` architecture, and
    `remat_text` (where the method has one) one of `clip.REMAT_MODES`."""
    if mc.clip_arch not in clip.PRESETS:
        _fail("clip_arch", mc.clip_arch, f"must be one of {sorted(clip.PRESETS)}.")
    if "remat_text" in mc and mc.remat_text not in clip.REMAT_MODES:
        _fail("remat_text", mc.remat_text, f"must be one of {clip.REMAT_MODES}.")


def loss_name(config: base.Config) -> str:
    mc = config.method_config
    if mc.loss is not None:
        return mc.loss
    return "softmax_pair" if mc.variant == "official" else "sigmoid_difference"


def prompt_ids(config: base.Config, class_names) -> np.ndarray:
    """(C, L) token ids of DualCoOp's templates; raises if a template does not fit."""
    mc = config.method_config
    clip_config = clip.PRESETS[mc.clip_arch]
    ids = clip.make_tokenizer(clip_config, mc.vocab_path).tokenize(
        prompting.prompt_templates(class_names, mc.n_ctx), clip_config.context_length
    )
    full = np.flatnonzero(ids[:, -1] != 0)
    if len(full):
        raise ValueError(
            f"The prompt of class {class_names[full[0]]!r} fills all {clip_config.context_length} "
            f"tokens (n_ctx={mc.n_ctx} placeholders + its name) and would be truncated; use a "
            "shorter config.method_config.n_ctx or class name."
        )
    return ids


def make_model(config: base.Config, data_info: base.DataInfo) -> prompting.DualCoOp:
    mc = config.method_config
    return prompting.DualCoOp(
        clip_config=clip.PRESETS[mc.clip_arch],
        prompt_ids=prompt_ids(config, data_info.class_names),
        n_ctx=mc.n_ctx,
        variant=mc.variant,
        class_specific=mc.class_specific,
        remat_text=mc.remat_text,
        dtype=models.compute_dtype(config.model),
    )


def asl_loss(config: base.Config, aux: dict, labels: jax.Array):
    """The configured ASL on the model's (pos, neg) logits, times `loss_w`."""
    mc = config.method_config
    kwargs = {"gamma_pos": mc.gamma_pos, "gamma_neg": mc.gamma_neg, "clip": mc.asl_clip}
    if loss_name(config) == "softmax_pair":
        loss, metrics = losses.softmax_pair_asl(
            aux["neg_logits"], aux["pos_logits"], labels, eps=1e-6, **kwargs
        )
    else:
        loss, metrics = losses.sigmoid_difference_asl(
            aux["neg_logits"], aux["pos_logits"], labels.astype(jnp.float32), eps=1e-8, **kwargs
        )
    return mc.loss_w * loss, metrics


def loss_fn(model, config, params, batch_stats, method_state, batch, rng, clock):
    del rng, clock
    (_, aux), batch_stats = base.apply_train(model, params, batch_stats, batch["image"])
    loss, metrics = asl_loss(config, aux, batch["labels"])
    return loss, base.StepOutput({"asl": loss, **metrics}, batch_stats, method_state)


def clip_normalize(config: base.Config, images: jax.Array) -> jax.Array:
    del config
    return clip.normalize(images.astype(jnp.float32) / 255.0)


def frozen_towers(config: base.Config) -> tuple[base.ParamGroup, ...]:
    del config
    return (base.ParamGroup(CLIP_SCOPE, frozen=True),)


def load_clip(config: base.Config, params, batch_stats):
    """`clip_weights` into the CLIP scope (strict; must be the `clip_arch` architecture)."""
    from mlrpl_jax.models import clip_convert

    mc = config.method_config
    if mc.clip_weights is None:
        return params, batch_stats
    expected = clip.PRESETS[mc.clip_arch]
    state = clip_convert.read_checkpoint(mc.clip_weights)
    try:
        _, variables = clip_convert.convert_state_dict(state, expected)
    except ValueError as e:
        raise ValueError(
            f"config.method_config.clip_weights={mc.clip_weights} does not hold the "
            f"clip_arch={mc.clip_arch!r} architecture {expected}:\n{e}"
        ) from e
    for name, tree in (("params", params), ("batch_stats", batch_stats)):
        current = _get(tree, CLIP_SCOPE)
        if jax.tree_util.tree_structure(current) != jax.tree_util.tree_structure(variables[name]):
            raise ValueError(  # a model bug, not a user error: the model must create every variable
                f"The model's CLIP {name} do not have the checkpoint's layout; cannot load "
                f"{mc.clip_weights}."
            )
    return _put(params, CLIP_SCOPE, variables["params"]), _put(
        batch_stats, CLIP_SCOPE, variables["batch_stats"]
    )


def _get(tree, path: tuple[str, ...]):
    for name in path:
        tree = tree[name]
    return tree


def _put(tree, path: tuple[str, ...], value):
    """A copy of the nested dict `tree` with `value` at `path`."""
    head, *rest = path
    return {**tree, head: _put(tree[head], tuple(rest), value) if rest else value}


METHOD = base.Method(
    name="dualcoop",
    default_config=default_config,
    make_model=make_model,
    loss_fn=loss_fn,
    predict_fn=base.predict_logits,
    validate=validate,
    param_groups=frozen_towers,
    normalize_images=clip_normalize,
    load_pretrained=load_clip,
)
