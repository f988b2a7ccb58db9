"""Optimiser and learning-rate schedule from `config.optim` (optax).

Default = the papers' recipe as the reference code runs it: `torch.optim.Adam(lr=1e-5, weight_decay=5e-4)`
(L2 added to the gradient *before* the Adam moments, i.e. coupled decay) with StepLR x0.1 every 10 epochs.
The optimiser only ever sees the trainable parameters (frozen ones are split off in the train step).
"""

import ml_collections
import optax


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


def make_optimizer(
    optim: ml_collections.ConfigDict, steps_per_epoch: int, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Returns (tx, schedule) for `config.optim`."""
    optim = ml_collections.ConfigDict(optim.to_dict())
    optim.total_steps = total_steps
    schedule = make_schedule(optim, steps_per_epoch)
    if optim.name == "adam":  # torch.optim.Adam(weight_decay=wd): coupled L2.
        tx = optax.chain(
            optax.add_decayed_weights(optim.weight_decay),
            optax.scale_by_adam(b1=optim.b1, b2=optim.b2, eps=optim.eps),
            optax.scale_by_learning_rate(schedule),
        )
    elif optim.name == "adamw":
        tx = optax.adamw(
            schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps, weight_decay=optim.weight_decay
        )
    elif optim.name == "sgd":  # torch.optim.SGD(momentum, weight_decay): coupled L2.
        tx = optax.chain(
            optax.add_decayed_weights(optim.weight_decay),
            optax.sgd(schedule, momentum=optim.b1),
        )
    else:
        raise ValueError(f"config.optim.name={optim.name!r}: use 'adam', 'adamw' or 'sgd'.")
    return tx, schedule
