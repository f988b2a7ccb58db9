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

from mlrpl_jax.methods.base import Batch, Method, make_clock

# ImageNet statistics (the reference's torchvision Normalize), applied on device to uint8 images.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@flax.struct.dataclass
class TrainState:
    """All state of a run; checkpointed as a whole.

    Attributes:
      step: () int32, number of optimiser steps done.
      params: model parameters (trainable and frozen).
      opt_state: optimiser state of the trainable parameters only.
      batch_stats: BatchNorm running statistics.
      method_state: the method's explicit state pytree ({} if none).
      rng: () PRNG key; the step's key is `fold_in(rng, step)`.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    batch_stats: Any
    method_state: Any
    rng: jax.Array


def normalize_images(images: jax.Array) -> jax.Array:
    """uint8 (B, H, W, 3) in [0, 255] -> float32, ImageNet-normalised (torchvision ToTensor+Normalize)."""
    x = images.astype(jnp.float32) / 255.0
    return (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


def split_params(params: Any, frozen: tuple[tuple[str, ...], ...]) -> tuple[dict, dict]:
    """Splits a parameter tree into (trainable, frozen) nested dicts holding disjoint leaves.

    A parameter is frozen when its path starts with one of the `frozen` prefixes.
    """
    flat = traverse_util.flatten_dict(flax.core.unfreeze(params))
    is_frozen = {k: any(k[: len(p)] == p for p in frozen) for k in flat}
    trainable = {k: v for k, v in flat.items() if not is_frozen[k]}
    fixed = {k: v for k, v in flat.items() if is_frozen[k]}
    return traverse_util.unflatten_dict(trainable), traverse_util.unflatten_dict(fixed)


def merge_params(trainable: dict, fixed: dict) -> dict:
    """Inverse of `split_params`."""
    return traverse_util.unflatten_dict(
        {**traverse_util.flatten_dict(trainable), **traverse_util.flatten_dict(fixed)}
    )


def train_step(
    state: TrainState,
    batch: Batch,
    *,
    model: Any,
    config: Any,
    method: Method,
    tx: optax.GradientTransformation,
    frozen: tuple[tuple[str, ...], ...],
    learning_rate_fn: optax.Schedule,
    steps_per_epoch: int,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser step: method loss, gradients of the trainable parameters, update, method state.

    Args:
      state: the current TrainState (donated by the trainer).
      batch: {'image': (B, H, W, 3) uint8, 'labels': (B, C) int8, 'example_id': (B,) int32}.
      model, config, method, tx, frozen, learning_rate_fn, steps_per_epoch: static, bound by the
        trainer.

    Returns:
      (new_state, metrics): metrics are scalars: 'loss', the method's terms, 'grad_norm', 'param_norm',
      'update_norm' and 'learning_rate'.
    """
    rng = jax.random.fold_in(state.rng, state.step)
    clock = make_clock(state.step, steps_per_epoch)
    batch = dict(batch, image=normalize_images(batch["image"]))
    trainable, fixed = split_params(state.params, frozen)

    def loss_of(trainable_params):
        params = merge_params(trainable_params, fixed)
        return method.loss_fn(
            model, config, params, state.batch_stats, state.method_state, batch, rng, clock
        )

    (loss, aux), grads = jax.value_and_grad(loss_of, has_aux=True)(trainable)
    updates, opt_state = tx.update(grads, state.opt_state, trainable)
    trainable = optax.apply_updates(trainable, updates)
    method_state = method.update_state(config, state.method_state, aux, clock)
    metrics = {
        "loss": loss,
        **aux["metrics"],
        "grad_norm": optax.tree_utils.tree_norm(grads),
        "update_norm": optax.tree_utils.tree_norm(updates),
        "param_norm": optax.tree_utils.tree_norm(trainable),
        "learning_rate": learning_rate_fn(state.step),
    }
    params = merge_params(trainable, fixed)
    if method.project_params is not None:
        params = method.project_params(config, params)
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        opt_state=opt_state,
        batch_stats=aux["batch_stats"],
        method_state=method_state,
    )
    return new_state, metrics


def eval_step(
    state: TrainState, images: jax.Array, *, model: Any, config: Any, method: Method
) -> jax.Array:
    """Logits (B, C) float32 of uint8 images (B, H, W, 3), in inference mode."""
    logits = method.predict_fn(
        model,
        config,
        state.params,
        state.batch_stats,
        state.method_state,
        normalize_images(images),
    )
    return logits.astype(jnp.float32)
