"""Optimiser and learning-rate schedule from `config.optim` (optax).

Default = the papers' recipe as the reference code runs it: `torch.optim.Adam(lr=1e-5, weight_decay=5e-4)`
(L2 added to the gradient *before* the Adam moments, i.e. coupled decay) with StepLR x0.1 every 10 epochs.
The optimiser only ever sees the trainable parameters (frozen ones are split off in the train step).
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import traverse_util


def make_schedule(optim: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
    """Learning rate as a function of the optimiser step.

    'step': lr * decay_factor ** floor(epoch / decay_every_epochs) (PyTorch StepLR stepped per epoch).
    'cosine': cosine decay to 0 over `total_steps` (set by the trainer through `num_epochs`).
    'constant': lr. All of them after an optional linear warm-up of `warmup_epochs`.
    """
    lr = optim.learning_rate
    if optim.schedule == "step":
        schedule = optax.exponential_decay(
            lr,
            transition_steps=max(1, int(optim.decay_every_epochs * steps_per_epoch)),
            decay_rate=optim.decay_factor,
            staircase=True,
        )
    elif optim.schedule == "constant":
        schedule = optax.constant_schedule(lr)
    elif optim.schedule == "cosine":
        schedule = optax.cosine_decay_schedule(lr, decay_steps=max(1, optim.total_steps))
    else:
        raise ValueError(
            f"config.optim.schedule={optim.schedule!r}: use 'step', 'cosine' or 'constant'."
        )
    warmup = int(optim.warmup_epochs * steps_per_epoch)
    if warmup > 0:
        schedule = optax.join_schedules(
            [optax.linear_schedule(0.0, lr, warmup), schedule], boundaries=[warmup]
        )
    return schedule


class _StartState(NamedTuple):
    started: jax.Array  # () bool
    inner: Any


def start_on_first_gradient(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """Runs `inner` only from the first step at which some gradient of its parameters is non-zero.

    Before that, updates are zero and `inner`'s state (Adam moments and step count, hence its bias
    correction) is not advanced; from then on `inner` runs every step, as PyTorch's optimisers do
    for a parameter once it has a ``.grad`` (notes §3: HST's margins and SARB's alpha/beta enter the
    graph only at the activation epoch and get no update, no weight decay and no Adam step before).
    """

    def init_fn(params):
        return _StartState(jnp.zeros((), bool), inner.init(params))

    def update_fn(updates, state, params=None):
        nonzero = jnp.any(
            jnp.stack([jnp.any(g != 0) for g in jax.tree.leaves(updates)] or [jnp.array(False)])
        )
        started = state.started | nonzero
        new_updates, new_inner = inner.update(updates, state.inner, params)
        keep = functools.partial(jnp.where, started)
        new_updates = jax.tree.map(lambda u: keep(u, jnp.zeros_like(u)), new_updates)
        new_inner = jax.tree.map(keep, new_inner, state.inner)
        return new_updates, _StartState(started, new_inner)

    return optax.GradientTransformation(init_fn, update_fn)


def _direction(optim: ml_collections.ConfigDict) -> list[optax.GradientTransformation]:
    """The optimiser without its learning rate (the schedule is applied after, to every group)."""
    if optim.name == "adam":  # torch.optim.Adam(weight_decay=wd): coupled L2.
        return [
            optax.add_decayed_weights(optim.weight_decay),
            optax.scale_by_adam(b1=optim.b1, b2=optim.b2, eps=optim.eps),
        ]
    if optim.name == "adamw":  # decoupled decay, scaled by the learning rate (optax.adamw)
        return [
            optax.scale_by_adam(b1=optim.b1, b2=optim.b2, eps=optim.eps),
            optax.add_decayed_weights(optim.weight_decay),
        ]
    if optim.name == "sgd":  # torch.optim.SGD(momentum, weight_decay): coupled L2.
        return [optax.add_decayed_weights(optim.weight_decay), optax.trace(decay=optim.b1)]
    raise ValueError(f"config.optim.name={optim.name!r}: use 'adam', 'adamw' or 'sgd'.")


def make_optimizer(
    optim: ml_collections.ConfigDict,
    steps_per_epoch: int,
    total_steps: int,
    delayed: tuple[tuple[str, ...], ...] = (),
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Returns (tx, schedule) for `config.optim`.

    Args:
      optim: `config.optim`.
      steps_per_epoch, total_steps: for the schedule.
      delayed: parameter path prefixes (of the trainable tree) whose optimiser starts at their first
        non-zero gradient (`start_on_first_gradient`); the learning-rate schedule still follows the
        global step.
    """
    optim = ml_collections.ConfigDict(optim.to_dict())
    optim.total_steps = total_steps
    schedule = make_schedule(optim, steps_per_epoch)
    lr = optax.scale_by_learning_rate(schedule)
    if not delayed:
        return optax.chain(*_direction(optim), lr), schedule

    def labels(params):
        flat = traverse_util.flatten_dict(params)
        return traverse_util.unflatten_dict(
            {
                k: "delayed" if any(k[: len(p)] == tuple(p) for p in delayed) else "default"
                for k in flat
            }
        )

    grouped = optax.multi_transform(
        {
            "default": optax.chain(*_direction(optim)),
            "delayed": start_on_first_gradient(optax.chain(*_direction(optim))),
        },
        labels,
    )
    return optax.chain(grouped, lr), schedule
