"""TrainState (every piece of training state) and the generic, method-agnostic train and eval steps.

Both steps are pure functions; `trainer.py` binds the static arguments (model, config, method, optimiser)
with `functools.partial` and jit-compiles them once with explicit shardings and a donated state.
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from mlrpl_jax import optim
from mlrpl_jax.data import pipeline
from mlrpl_jax.methods.base import Batch, Method, ParamGroup, make_clock
from mlrpl_jax.ops import resample


@flax.struct.dataclass
class TrainState:
    """All state of a run; checkpointed as a whole.

    Attributes:
      step: () int32, number of optimiser steps done.
      params: model parameters (trainable and frozen), and the method's own at params['method'].
      opt_state: optimiser state of the trainable parameters only.
      batch_stats: BatchNorm running statistics.
      method_state: the method's explicit state pytree ({} if none).
      rng: () PRNG key; the step's key is `fold_in(rng, step)`.
      ema: {} without weight EMA (`config.train.ema_decay` = 0), else {'params', 'batch_stats'}:
        the exponential moving averages of both, updated after every step.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    batch_stats: Any
    method_state: Any
    rng: jax.Array
    ema: Any = flax.struct.field(default_factory=dict)


def is_frozen(path: tuple[str, ...], groups: tuple[ParamGroup, ...]) -> bool:
    """Whether the parameter at `path` is in a frozen group (longest matching prefix)."""
    i = optim.group_of(path, groups)
    return i >= 0 and groups[i].frozen


def split_params(params: Any, groups: tuple[ParamGroup, ...]) -> tuple[dict, dict]:
    """Splits a parameter tree into (trainable, frozen) nested dicts holding disjoint leaves."""
    flat = traverse_util.flatten_dict(flax.core.unfreeze(params))
    frozen = {k: is_frozen(k, groups) for k in flat}
    trainable = {k: v for k, v in flat.items() if not frozen[k]}
    fixed = {k: v for k, v in flat.items() if frozen[k]}
    return traverse_util.unflatten_dict(trainable), traverse_util.unflatten_dict(fixed)


def merge_params(trainable: dict, fixed: dict) -> dict:
    """Inverse of `split_params`."""
    return traverse_util.unflatten_dict(
        {**traverse_util.flatten_dict(trainable), **traverse_util.flatten_dict(fixed)}
    )


def ema_update(ema: Any, params: Any, batch_stats: Any, decay: float) -> Any:
    """ema <- decay * ema + (1 - decay) * value for params and batch_stats (timm's ModelEma)."""
    if not ema:
        return ema
    new = {"params": params, "batch_stats": batch_stats}
    return jax.tree.map(lambda e, v: decay * e + (1.0 - decay) * v, ema, new)


def train_step(
    state: TrainState,
    batch: Batch,
    *,
    model: Any,
    config: Any,
    method: Method,
    tx: optax.GradientTransformation,
    groups: tuple[ParamGroup, ...],
    learning_rate_fn: optax.Schedule,
    steps_per_epoch: int,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser step: method loss, gradients of the trainable parameters, update, projection,
    method state, weight EMA.

    Args:
      state: the current TrainState (donated by the trainer).
      batch: {'image': (B, H, W, 3) uint8, 'labels': (B, C) int8, 'example_id': (B,) int32,
        'full_labels': (B, C) uint8}, and with the augmentation's geometry on device 'view'
        (B, 6) float32, 'image' the canvas (B, K, K, 3) (`model_input`). 'full_labels' is
        removed before `method.loss_fn` and only reaches `method.diagnostics`.
      model, config, method, tx, groups, learning_rate_fn, steps_per_epoch: static, bound by the
        trainer.

    Returns:
      (new_state, metrics): metrics are scalars: 'loss', the method's terms and diagnostics,
      'grad_norm', 'param_norm', 'update_norm' and 'learning_rate'.
    """
    rng = jax.random.fold_in(state.rng, state.step)
    clock = make_clock(state.step, steps_per_epoch)
    full_labels = batch.get("full_labels")
    seen = {
        "image": model_input(config, method, batch["image"], batch.get("view")),
        "labels": batch["labels"],
        "example_id": batch["example_id"],
    }
    trainable, fixed = split_params(state.params, groups)

    def loss_of(trainable_params):
        params = merge_params(trainable_params, fixed)
        return method.loss_fn(
            model, config, params, state.batch_stats, state.method_state, seen, rng, clock
        )

    (loss, out), grads = jax.value_and_grad(loss_of, has_aux=True)(trainable)
    updates, opt_state = tx.update(grads, state.opt_state, trainable)
    trainable = optax.apply_updates(trainable, updates)
    metrics = {
        "loss": loss,
        **out.metrics,
        "grad_norm": optax.tree_utils.tree_norm(grads),
        "update_norm": optax.tree_utils.tree_norm(updates),
        "param_norm": optax.tree_utils.tree_norm(trainable),
        "learning_rate": learning_rate_fn(state.step),
    }
    if method.diagnostics is not None and full_labels is not None:
        metrics.update(method.diagnostics(config, out.diagnostics, batch["labels"], full_labels))
    params = optim.project(merge_params(trainable, fixed), groups)
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        opt_state=opt_state,
        batch_stats=out.batch_stats,
        method_state=jax.lax.stop_gradient(out.method_state),
        ema=ema_update(state.ema, params, out.batch_stats, config.train.ema_decay),
    )
    return new_state, metrics


def model_input(config: Any, method: Method, images: jax.Array,
                view: jax.Array | None = None) -> jax.Array:  # fmt: skip
    """The method's model input of a batch's uint8 images: with `view` (the train loader's with
    `data.resize_on='device'`) the images are canvases (B, K, K, 3) and each view is rendered first
    (`ops.resample.render_views`, to the config's image size); then `method.normalize_images`."""
    if view is not None:
        scale, size = pipeline.scale_size(config.data), pipeline.image_size(config.data)
        images = resample.render_views(images, view, scale, size)
    return method.normalize_images(config, images)


def eval_step(
    state: TrainState,
    images: jax.Array,
    *,
    model: Any,
    config: Any,
    method: Method,
    use_ema: bool = False,
) -> jax.Array:
    """Logits (B, C) float32 of uint8 images (B, H, W, 3), in inference mode, with the raw or
    (`use_ema`) the EMA weights."""
    weights = state.ema if use_ema else {"params": state.params, "batch_stats": state.batch_stats}
    logits = method.predict_fn(
        model,
        config,
        weights["params"],
        weights["batch_stats"],
        state.method_state,
        method.normalize_images(config, images),
    )
    return logits.astype(jnp.float32)
