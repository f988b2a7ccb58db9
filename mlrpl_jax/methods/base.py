"""The method contract (v2): a NamedTuple of pure functions, after optax's GradientTransformation.

A method is everything that differs between SSGRL, SST, HST, SARB, ...: its model, its input
normalisation and pretrained weights, its losses, its explicit state and how that state evolves,
which parameters train and how. The trainer, data pipeline, checkpointing and evaluation are shared
and never branch on the method.

Shapes: N train examples, B batch, C classes, H/W spatial, D feature dim.

What a method sees:
  `loss_fn` batch: {'image': (B, H, W, 3) float32 from `Method.normalize_images`,
                    'labels': (B, C) int8 in {-1, 0, 1} (1 known positive, -1 known negative,
                    0 unknown), 'example_id': (B,) int32 in [0, DataInfo.num_train_examples)}.
  The hidden full labels never reach `loss_fn` (nor `refresh`): a method that reports diagnostics
  against them (e.g. pseudo-label precision/recall) returns the arrays to score in
  `StepOutput.diagnostics`, and the trainer passes them, with the full labels, to
  `Method.diagnostics` after the loss, outside its gradient.
  `predict_fn` images: (B, H, W, 3) float32 from `normalize_images`.

Parameters: the model's variables ('params', 'batch_stats') plus, when `init_params` returns any,
the method's own trainable parameters under ``params['method']`` (HST's margins, SARB's alpha and
beta, ROLE's label table). `model_params(params)` is what the Flax model is applied to.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

# The params subtree of a method's own parameters (outside the Flax model).
METHOD_PARAMS = "method"

# ImageNet statistics (torchvision Normalize), applied on device to uint8 images.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DataInfo(NamedTuple):
    """What a method may know about the training data when it builds its model, state and params.

    Attributes:
      num_classes: C.
      class_names: the C class names, in label order.
      num_train_examples: N; every train `example_id` lies in [0, N) (rows of per-example tables).
      train_partial_labels: () -> (N, C) int8 in {-1, 0, 1}, the partial labels of the train
        split exactly as the batches carry them (row i = example_id i); computed on first call.
      label_semantics: () -> `mlrpl_jax.data.label_semantics.LabelSemantics` (category embeddings
        (C, E) and the adjacency (C, C) of the known train labels); computed on first call (cached
        on disk), so methods that do not need it pay nothing.
    """

    num_classes: int
    class_names: tuple[str, ...]
    num_train_examples: int
    train_partial_labels: Callable[[], np.ndarray]
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


class StepOutput(NamedTuple):
    """Everything `loss_fn` returns besides the loss (the `has_aux` output of the gradient).

    Attributes:
      metrics: {name: () scalar} to log. Ratios that must aggregate exactly over a log window or
        an epoch are reported as two counts '<name>/num' and '<name>/den'.
      batch_stats: the updated BatchNorm statistics (the input ones if the model has none).
      method_state: the new method state (e.g. SST's feature bank after this batch). The trainer
        stops its gradient; it is the state of the next step.
      diagnostics: arrays for `Method.diagnostics` (e.g. pseudo labels (B, C)); never trained on.
    """

    metrics: dict[str, jax.Array]
    batch_stats: Any
    method_state: Any
    diagnostics: dict[str, Any] = {}  # noqa: RUF012 - never mutated


class ParamGroup(NamedTuple):
    """How the parameters under one path prefix train. The longest matching prefix wins; the
    empty prefix () is the default group (everything trains as `config.optim` says).

    Attributes:
      prefix: path of names, e.g. ('backbone', 'stem') or ('method', 'alpha').
      frozen: no gradient, no optimiser state (frozen backbone stages, data constants).
      lr_mult: learning-rate multiplier (ROLE's label table x10, LargeLoss's classifier x10).
      delayed: the optimiser starts at the group's first non-zero gradient
        (`optim.start_on_first_gradient`; HST's margins, SARB's alpha/beta, which the reference
        leaves out of the graph until an activation epoch).
      weight_decay: 'all' (config.optim.weight_decay on the leaves `config.optim.decay_on`
        names: every leaf by default), 'none', or 'matrices' (only
        leaves of >= 2 dimensions: no decay on biases and BatchNorm scales, as ASL's recipe).
      project: optional (leaf) -> leaf applied after every update (SARB's clamp of alpha and beta to
        [0, 1]); must be a module-level function (it is part of the compiled step).
    """

    prefix: tuple[str, ...]
    frozen: bool = False
    lr_mult: float = 1.0
    delayed: bool = False
    weight_decay: str = "all"
    project: Callable[[jax.Array], jax.Array] | None = None


Batch = dict[str, jax.Array]
MethodState = Any  # a pytree of arrays; {} when the method keeps no state
Config = ml_collections.ConfigDict


def imagenet_normalize(config: Config, images: jax.Array) -> jax.Array:
    """uint8 (B, H, W, 3) in [0, 255] -> float32, ImageNet-normalised (torchvision ToTensor +
    Normalize). The default `Method.normalize_images`."""
    del config
    x = images.astype(jnp.float32) / 255.0
    return (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


def default_normalize(config: Config, images: jax.Array) -> jax.Array:
    """The default `Method.normalize_images`: `config.model.input_normalization` 'imagenet'
    (`imagenet_normalize`) or 'unit' (uint8 / 255 only, as ASL's and SPLC's code feed images)."""
    if config.model.input_normalization == "unit":
        return images.astype(jnp.float32) / 255.0
    return imagenet_normalize(config, images)


def load_backbone_weights(config: Config, params: Any, batch_stats: Any) -> tuple[Any, Any]:
    """The default `Method.load_pretrained`: torchvision ResNet weights from
    `config.model.backbone_weights` into the model's 'backbone' scope (nothing when None)."""
    if config.model.backbone_weights is None:
        return params, batch_stats
    from mlrpl_jax.models import pretrained

    return pretrained.load_backbone_weights(config.model.backbone_weights, params, batch_stats)


def backbone_groups(config: Config) -> tuple[ParamGroup, ...]:
    """The default `Method.param_groups`: the frozen backbone stages (`config.model.frozen_stages`)."""
    from mlrpl_jax import models

    return tuple(ParamGroup(p, frozen=True) for p in models.backbone_frozen_params(config.model))


def no_validation(config: Config) -> None:
    """The default `Method.validate`: no checks beyond the shared ones."""
    del config


class Method(NamedTuple):
    """Pure functions that define a method. `config` is the whole (locked) experiment config.

    Attributes:
      name: the key of the method in `mlrpl_jax.methods.METHODS`.
      default_config: () -> ConfigDict of the method's own keys (placed at `config.method_config`).
      make_model: (config, data_info: DataInfo) -> flax.linen.Module whose
        ``apply({'params', 'batch_stats'}, images, train=...)`` returns (logits (B, C), aux dict).
      loss_fn: (model, config, params, batch_stats, method_state, batch, rng, clock: Clock) ->
        (loss, StepOutput). `params` holds the method's own parameters at ``params['method']``.
      predict_fn: (model, config, params, batch_stats, method_state, images) -> logits (B, C).
      validate: (config) -> None; raises ValueError naming key, value and rule for a bad
        `config.method_config` value. Called before any data is opened.
      init_state: (config, data_info, rng) -> MethodState (default: {}).
      init_params: (config, data_info) -> {name: initial array} of the method's own trainable
        parameters, placed at ``params['method']`` (default: none).
      param_groups: (config) -> tuple of `ParamGroup` (default: the frozen backbone stages).
      normalize_images: (config, images uint8 (B, H, W, 3)) -> float32 model input, applied on
        device to every batch before `loss_fn`, `predict_fn` and `refresh` (default:
        `config.model.input_normalization`, ImageNet mean/std unless set to 'unit').
      load_pretrained: (config, params, batch_stats) -> (params, batch_stats) filled with
        pretrained weights at the start of a new run; never called when a checkpoint is restored
        (default: `config.model.backbone_weights` into the ResNet backbone).
      refresh: optional (config, model, params, batch_stats, method_state, epoch, batches) ->
        method_state, called by the trainer before the first step of every epoch (also after a
        resume) for work over the whole train set (e.g. K-means prototypes). `batches()` yields
        one pass of augmented, shuffled global train batches {'image' normalised, 'labels',
        'example_id'}, seeded by (config.seed, epoch). The method decides whether `epoch` is due
        and returns `method_state` unchanged otherwise; its result must be a deterministic
        function of its inputs so that resumed runs match.
      state_sharding: (config) -> ((regex, PartitionSpec), ...): leaves of the TrainState whose
        path ('/'-joined names, e.g. 'method_state/pseudo_labels', 'params/method/table',
        'opt_state/.../table') matches a regex (`re.search`, first rule wins) are sharded with its
        spec over the mesh axis `sharding.DATA_AXIS`; everything else is replicated. Per-example
        tables (`ops.example_table`) use ``PartitionSpec('data', None)``.
      diagnostics: optional (config, diagnostics, labels (B, C) int8, full_labels (B, C) uint8)
        -> {name: scalar}, the only function that sees the hidden full labels; its metrics are
        logged with the loss's.
    """

    name: str
    default_config: Callable[[], Config]
    make_model: Callable[[Config, DataInfo], nn.Module]
    loss_fn: Callable[..., tuple[jax.Array, StepOutput]]
    predict_fn: Callable[..., jax.Array]
    validate: Callable[[Config], None] = no_validation
    init_state: Callable[[Config, DataInfo, jax.Array], MethodState] = (
        lambda config, data_info, rng: {}
    )
    init_params: Callable[[Config, DataInfo], dict] = lambda config, data_info: {}
    param_groups: Callable[[Config], tuple[ParamGroup, ...]] = backbone_groups
    normalize_images: Callable[[Config, jax.Array], jax.Array] = default_normalize
    load_pretrained: Callable[[Config, Any, Any], tuple[Any, Any]] = load_backbone_weights
    refresh: Callable[..., MethodState] | None = None
    state_sharding: Callable[[Config], tuple] = lambda config: ()
    diagnostics: Callable[..., dict[str, jax.Array]] | None = None


def model_params(params: Any) -> Any:
    """The Flax model's parameters: `params` without the method's own ``params['method']``."""
    if METHOD_PARAMS not in params:
        return params
    return {k: v for k, v in params.items() if k != METHOD_PARAMS}


def method_params(params: Any) -> dict:
    """The method's own parameters ``params['method']`` ({} if none)."""
    return params.get(METHOD_PARAMS, {})


def apply_train(
    model: nn.Module, params: Any, batch_stats: Any, *args, **kwargs
) -> tuple[Any, Any]:
    """``model.apply`` in training mode: returns (outputs, updated BatchNorm statistics)."""
    outputs, new_vars = model.apply(
        {"params": model_params(params), "batch_stats": batch_stats},
        *args,
        train=True,
        mutable=["batch_stats"],
        **kwargs,
    )
    return outputs, new_vars["batch_stats"]


def apply_eval(model: nn.Module, params: Any, batch_stats: Any, *args, **kwargs) -> Any:
    """``model.apply`` in inference mode (BatchNorm running statistics, nothing mutated)."""
    return model.apply(
        {"params": model_params(params), "batch_stats": batch_stats}, *args, train=False, **kwargs
    )


def predict_logits(model, config, params, batch_stats, method_state, images) -> jax.Array:
    """`predict_fn` for models whose ``apply(..., images, train=False)`` returns (logits, aux)."""
    del config, method_state
    logits, _ = apply_eval(model, params, batch_stats, images)
    return logits
