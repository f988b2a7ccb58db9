"""The method contract: a NamedTuple of pure functions (after optax's GradientTransformation).

A method is everything that differs between SSGRL, SST, HST, SARB, ... : its model, its losses, its explicit
state and how that state evolves. The trainer, data pipeline, checkpointing and evaluation are shared and
never branch on the method.

Shapes: B batch, C classes, H/W spatial, D feature dim.

Batches seen by a method (produced by `mlrpl_jax.data.pipeline`, images already normalised on device):
  train: {'image': (B, H, W, 3) float32, 'labels': (B, C) int8 in {-1, 0, 1}, 'example_id': (B,) int32,
          'full_labels': (B, C) uint8 in {0, 1}: the hidden ground truth, for diagnostics only
          (e.g. pseudo-label precision/recall); never train on it}
  eval:  {'image': (B, H, W, 3) float32, ...}; only 'image' is passed to `predict_fn`.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections


class DataInfo(NamedTuple):
    """What a method may know about the training data when it builds its model and state.

    Attributes:
      num_classes: C.
      class_names: the C class names, in label order.
      label_semantics: () -> `mlrpl_jax.data.label_semantics.LabelSemantics` (category embeddings
        (C, E) and the adjacency matrix (C, C) of the known train labels); computed on first call
        (one pass over the train labels, cached on disk), so methods that do not need it pay nothing.
    """

    num_classes: int
    class_names: tuple[str, ...]
    label_semantics: Callable[[], Any]


class Clock(NamedTuple):
    """Where a train step is in the schedule; computed inside the jitted step from TrainState.step.

    Attributes:
      step: () int32, optimiser steps done before this one (0 for the first step).
      epoch: () int32, 0-based epoch of this step.
      epoch_fraction: () float32, (step within the epoch) / steps_per_epoch: the reference's
        ``batchIndex / len(train_loader)`` (the epoch-0 loss ramp, notes §2.4).
    """

    step: jax.Array
    epoch: jax.Array
    epoch_fraction: jax.Array


def make_clock(step: jax.Array, steps_per_epoch: int) -> Clock:
    """The `Clock` of the step that follows `step` completed steps."""
    step = jnp.asarray(step, jnp.int32)
    return Clock(
        step=step,
        epoch=step // steps_per_epoch,
        epoch_fraction=(step % steps_per_epoch).astype(jnp.float32) / steps_per_epoch,
    )


Batch = dict[str, jax.Array]
MethodState = Any  # a pytree of arrays; {} when the method keeps no state
Aux = dict[
    str, Any
]  # {'metrics': {name: scalar}, 'batch_stats': new BN statistics, ... method extras}
Config = ml_collections.ConfigDict


class Method(NamedTuple):
    """Pure functions that define a method. `config` is the whole (locked) experiment config.

    Attributes:
      name: the key of the method in `mlrpl_jax.methods.METHODS`.
      default_config: () -> ConfigDict of the method's own keys (placed at `config.method_config`).
      make_model: (config, data_info: DataInfo) -> flax.linen.Module whose
        `apply({'params', 'batch_stats'}, images, train=...)` returns (logits (B, C), aux dict).
      init_state: (config, data_info: DataInfo, rng) -> MethodState.
      loss_fn: (model, config, params, batch_stats, method_state, batch, rng, clock: Clock) ->
        (loss, aux), where aux['metrics'] holds scalars to log and aux['batch_stats'] the updated BN
        statistics.
      update_state: (config, method_state, aux, clock: Clock) -> MethodState, run after the gradient
        update in the same compiled step, without gradient.
      predict_fn: (model, config, params, batch_stats, method_state, images) -> logits (B, C).
      frozen_params: (config) -> tuple of parameter path prefixes (tuples of names) that are frozen: they
        get no gradient and no optimiser state.
      refresh: optional (config, model, state: TrainState, epoch, batches) -> TrainState, called by
        the trainer before the first step of every epoch (also after a resume), for work over the
        whole train set (e.g. K-means prototypes). `batches()` yields one pass of augmented,
        shuffled global train batches (uint8 images), seeded by (config.seed, epoch). The method
        decides whether `epoch` is due and returns `state` unchanged otherwise; its result must be a
        deterministic function of its inputs so that resumed runs match. None: no refresh.
      delayed_params: optional (config) -> parameter path prefixes whose optimiser starts at their
        first non-zero gradient (`optim.start_on_first_gradient`): parameters that the reference
        leaves out of the graph until an activation epoch (HST margins, SARB alpha/beta).
      project_params: optional (config, params) -> params applied after every optimiser update in
        the same compiled step: a projection onto the parameters' feasible set (SARB/DSRB clamp
        alpha and beta to [0, 1], which the reference does in place before each blended forward).
    """

    name: str
    default_config: Callable[[], Config]
    make_model: Callable[[Config, DataInfo], nn.Module]
    init_state: Callable[[Config, DataInfo, jax.Array], MethodState]
    loss_fn: Callable[..., tuple[jax.Array, Aux]]
    update_state: Callable[[Config, MethodState, Aux, Clock], MethodState]
    predict_fn: Callable[..., jax.Array]
    frozen_params: Callable[[Config], tuple[tuple[str, ...], ...]]
    refresh: Callable[..., Any] | None = None
    delayed_params: Callable[[Config], tuple[tuple[str, ...], ...]] | None = None
    project_params: Callable[[Config, Any], Any] | None = None


def no_state(config: Config, data_info: DataInfo, rng: jax.Array) -> MethodState:
    """`init_state` for methods without state."""
    del config, data_info, rng
    return {}


def keep_state(config: Config, method_state: MethodState, aux: Aux, clock: Clock) -> MethodState:
    """`update_state` for methods without state."""
    del config, aux, clock
    return method_state


def apply_train(
    model: nn.Module, params: Any, batch_stats: Any, *args, **kwargs
) -> tuple[Any, Any]:
    """``model.apply`` in training mode: returns (outputs, updated BatchNorm statistics)."""
    outputs, new_vars = model.apply(
        {"params": params, "batch_stats": batch_stats},
        *args,
        train=True,
        mutable=["batch_stats"],
        **kwargs,
    )
    return outputs, new_vars["batch_stats"]


def predict_logits(model, config, params, batch_stats, method_state, images) -> jax.Array:
    """`predict_fn` for models whose ``apply(..., images, train=False)`` returns (logits, aux)."""
    del config, method_state
    logits, _ = model.apply({"params": params, "batch_stats": batch_stats}, images, train=False)
    return logits
