"""Optimiser and learning-rate schedule from `config.optim` (optax).

Default = the papers' recipe as the reference code runs it: `torch.optim.Adam(lr=1e-5, weight_decay=5e-4)`
(L2 added to the gradient *before* the Adam moments, i.e. coupled decay) with StepLR x0.1 every 10 epochs.
The optimiser only ever sees the trainable parameters (frozen ones are split off in the train step);
a method's `base.ParamGroup`s give per-group learning-rate multipliers, delayed starts and weight-decay
masks through one `optax.multi_transform`.
"""

import functools
from collections.abc import Sequence
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
    'onecycle': PyTorch's OneCycleLR with cosine annealing (as ASL and SPLC use it): from lr / 25
    up to lr over the first `onecycle_pct` of the schedule, then down to lr / 25 / 1e4. (PyTorch
    also cycles Adam's beta1 between 0.85 and 0.95 by default; here b1 stays `optim.b1`.)
    `schedule_epochs` > 0 sets the cosine / onecycle length in epochs when training stops before
    its end (ASL: an 80-epoch schedule stopped after 41 epochs; SPLC after 31).
    'constant': lr. All of them after an optional warm-up of `warmup_epochs`: linear from 0, or
    constant at `warmup_lr` when that is > 0 (Dassl's ConstantWarmupScheduler, DualCoOp's 1e-5).
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
        schedule = optax.cosine_decay_schedule(
            lr, decay_steps=max(1, _length(optim, steps_per_epoch))
        )
    elif optim.schedule == "onecycle":
        schedule = onecycle(lr, max(2, _length(optim, steps_per_epoch)), optim.onecycle_pct)
    else:
        raise ValueError(
            f"config.optim.schedule={optim.schedule!r}: use 'step', 'cosine', 'onecycle' or "
            "'constant'."
        )
    warmup = int(optim.warmup_epochs * steps_per_epoch)
    if warmup > 0:
        first = (
            optax.constant_schedule(optim.warmup_lr)
            if optim.warmup_lr > 0
            else optax.linear_schedule(0.0, lr, warmup)
        )
        schedule = optax.join_schedules([first, schedule], boundaries=[warmup])
    return schedule


def onecycle(
    peak: float, total_steps: int, pct_start: float, div: float = 25.0, final_div: float = 1e4
) -> optax.Schedule:
    """PyTorch's OneCycleLR (two phases, cosine annealing) as a function of the step: from
    peak / div at step 0 up to peak at step pct_start * T - 1, then down to peak / div / final_div
    at step T - 1 (PyTorch's phase boundaries, which optax's `cosine_onecycle_schedule` places
    one step later)."""
    initial, minimum = peak / div, peak / div / final_div
    up_end, down_end = pct_start * total_steps - 1.0, total_steps - 1.0

    def cos(start, end, frac):
        return end + (start - end) / 2.0 * (jnp.cos(jnp.pi * jnp.clip(frac, 0.0, 1.0)) + 1.0)

    def schedule(step):
        s = jnp.asarray(step, jnp.float32)
        up = cos(initial, peak, s / max(up_end, 1e-9))
        down = cos(peak, minimum, (s - up_end) / (down_end - up_end))
        return jnp.where(s <= up_end, up, down)

    return schedule


def _length(optim: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
    """Steps of a cosine / onecycle schedule: `schedule_epochs` if set, else the whole run."""
    if optim.get("schedule_epochs", 0) > 0:
        return int(optim.schedule_epochs * steps_per_epoch)
    return int(optim.total_steps)


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


def _direction(optim: ml_collections.ConfigDict, decay_mask: Any = None) -> list:
    """The optimiser without its learning rate (the schedule is applied after, to every group).

    `decay_mask`: None (decay every leaf) or a pytree/callable of bools (optax's mask).
    """
    decay = optax.add_decayed_weights(optim.weight_decay, mask=decay_mask)
    if optim.name == "adam":  # torch.optim.Adam(weight_decay=wd): coupled L2.
        return [decay, optax.scale_by_adam(b1=optim.b1, b2=optim.b2, eps=optim.eps)]
    if optim.name == "adamw":  # decoupled decay, scaled by the learning rate (optax.adamw)
        return [optax.scale_by_adam(b1=optim.b1, b2=optim.b2, eps=optim.eps), decay]
    if optim.name == "sgd":  # torch.optim.SGD(momentum, weight_decay): coupled L2.
        return [decay, optax.trace(decay=optim.b1)]
    raise ValueError(f"config.optim.name={optim.name!r}: use 'adam', 'adamw' or 'sgd'.")


def _matrices(params: Any) -> Any:
    """Decay mask of ParamGroup.weight_decay='matrices': leaves of >= 2 dimensions."""
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def _nothing(params: Any) -> Any:
    """Decay mask of ParamGroup.weight_decay='none'."""
    return jax.tree.map(lambda _: False, params)


# ParamGroup.weight_decay -> optax.add_decayed_weights mask (None: every leaf).
_DECAY_MASKS = {"all": None, "none": _nothing, "matrices": _matrices}


def group_of(path: tuple[str, ...], groups: Sequence[Any]) -> int:
    """Index in `groups` of the longest prefix of `path`, or -1 (the default group)."""
    best, best_len = -1, -1
    for i, g in enumerate(groups):
        n = len(g.prefix)
        if n > best_len and tuple(path[:n]) == tuple(g.prefix):
            best, best_len = i, n
    return best


def _labels(params: Any, groups: Sequence[Any]) -> Any:
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({k: str(group_of(k, groups)) for k in flat})


def check_groups(groups: Sequence[Any]) -> None:
    """Raises a ValueError for a `ParamGroup` with a bad value (names the group and the rule)."""
    for g in groups:
        if g.weight_decay not in _DECAY_MASKS:
            raise ValueError(
                f"ParamGroup {g.prefix}: weight_decay={g.weight_decay!r} must be 'all', 'none' "
                "or 'matrices'."
            )
        if not g.lr_mult > 0:
            raise ValueError(f"ParamGroup {g.prefix}: lr_mult={g.lr_mult} must be > 0.")


def make_optimizer(
    optim: ml_collections.ConfigDict,
    steps_per_epoch: int,
    total_steps: int,
    groups: Sequence[Any] = (),
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Returns (tx, schedule) for `config.optim` and a method's parameter groups.

    Args:
      optim: `config.optim`.
      steps_per_epoch, total_steps: for the schedule.
      groups: the method's `base.ParamGroup`s. Frozen groups never reach the optimiser (the train
        step splits them off); the others are each given their own chain in one
        `optax.multi_transform`: weight-decay mask, the optimiser, `start_on_first_gradient` when
        delayed, and the learning-rate multiplier. The schedule follows the global step for all.
        Without non-default groups the optimiser is the plain chain.
    """
    check_groups(groups)
    optim = ml_collections.ConfigDict(optim.to_dict())
    optim.total_steps = total_steps
    schedule = make_schedule(optim, steps_per_epoch)
    lr = optax.scale_by_learning_rate(schedule)
    default_mask = _DECAY_MASKS[optim.get("decay_on", "all")]
    if all(_is_default_rule(g) for g in groups if not g.frozen):
        return optax.chain(*_direction(optim, default_mask), lr), schedule

    def chain_of(g) -> optax.GradientTransformation:
        mask = default_mask if g.weight_decay == "all" else _DECAY_MASKS[g.weight_decay]
        inner = optax.chain(*_direction(optim, mask))
        if g.delayed:
            inner = start_on_first_gradient(inner)
        if g.lr_mult != 1.0:
            inner = optax.chain(inner, optax.scale(g.lr_mult))
        return inner

    transforms = {str(i): chain_of(g) for i, g in enumerate(groups) if not g.frozen}
    transforms["-1"] = optax.chain(*_direction(optim, default_mask))
    grouped = optax.multi_transform(transforms, functools.partial(_labels, groups=groups))
    return optax.chain(grouped, lr), schedule


def _is_default_rule(g) -> bool:
    return (g.lr_mult, g.delayed, g.weight_decay) == (1.0, False, "all")


def project(params: Any, groups: Sequence[Any]) -> Any:
    """Applies each group's `project` to its leaves (after an optimiser update)."""
    if not any(g.project is not None for g in groups):
        return params
    flat = traverse_util.flatten_dict(params)
    out = {}
    for path, leaf in flat.items():
        i = group_of(path, groups)
        fn = groups[i].project if i >= 0 else None
        out[path] = leaf if fn is None else fn(leaf)
    return traverse_util.unflatten_dict(out)
