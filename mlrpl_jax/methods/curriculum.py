"""`cl`: Curriculum Labeling (Durand, Mehrasa, Mori, CVPR 2019), the CL baseline of the HST and
DSRB papers' tables, on the `plain` network.

Durand et al. train with the partial BCE, then let the model label some unknown entries for which
it shows strong evidence, add them to the known labels and continue; they compare several
selection strategies (score threshold, score proportion, positive only, ensembles, Bayesian
uncertainty). This implements the **score-threshold** strategy, the one that streams (a
proportion rule needs a global sort of all N x C unknown scores, which does not scale to Open
Images): in each labelling round, an unknown entry whose predicted probability is at least
`threshold` [0.95] becomes a positive, one at most 1 - `threshold` a negative
(`positive_only=True`: positives only). Rounds run before the first step of epochs `first_round`
[5], `first_round + round_every` [every 5], ... (`refresh`, one pass over the training set in
inference mode, on the augmented refresh batches the trainer provides); labels, once given,
stay (the model is not reinitialised between rounds, unlike the original's retraining from
scratch, which would multiply the training cost by the number of rounds).

State: the labels given so far, an (N, C) uint8 table in `method_state['curriculum']` storing
(y + 1) / 2 (0 negative, 128/255 none, 1 positive), sharded over the data axis. The loss is the
partial BCE (mean over the batch's known entries) on the partial labels completed by the table.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections

from mlrpl_jax import losses, models
from mlrpl_jax.methods import base, common
from mlrpl_jax.models.classifier import GlobalPoolClassifier
from mlrpl_jax.ops import example_table
from mlrpl_jax.ops import pseudo_labels as pl

TABLE = "curriculum"


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.threshold = 0.95  # label an unknown entry when p >= threshold (positive) / p <= 1 - threshold
    c.positive_only = False  # only positives (Durand et al.'s "positive only" variant)
    c.first_round = 5  # epoch (0-based) before which the first labelling round runs
    c.round_every = 5  # epochs between rounds
    return c


def validate(config: base.Config) -> None:
    mc = config.method_config
    if not 0.5 < mc.threshold <= 1.0:
        raise ValueError(f"config.method_config.threshold={mc.threshold}: must be in (0.5, 1].")
    if mc.first_round < 1 or mc.round_every < 1:
        raise ValueError(
            f"config.method_config first_round={mc.first_round}, round_every={mc.round_every}: "
            "both must be >= 1 (the model labels nothing before it has trained)."
        )


def make_model(config: base.Config, data_info: base.DataInfo) -> GlobalPoolClassifier:
    return GlobalPoolClassifier(
        backbone=models.make_backbone(config.model), num_classes=data_info.num_classes
    )


def _decode(values: jax.Array) -> jax.Array:
    """Stored (y + 1) / 2 -> int8 y in {-1, 0, 1}."""
    return jnp.round(2.0 * values - 1.0).astype(jnp.int8)


def init_state(config: base.Config, data_info: base.DataInfo, rng: jax.Array) -> dict:
    del rng
    n, c = data_info.num_train_examples, data_info.num_classes
    return {TABLE: example_table.full(n, c, 0.5, "uint8")}


def state_sharding(config: base.Config) -> tuple:
    del config
    return (example_table.sharding_rule(rf"method_state/{TABLE}$"),)


def completed_labels(labels: jax.Array, given: jax.Array) -> jax.Array:
    """The partial labels with the curriculum's labels on their unknown entries."""
    return jnp.where(labels == 0, given, labels)


def loss_fn(model, config, params, batch_stats, method_state, batch, rng, clock):
    del rng, clock, config
    (logits, _), batch_stats = base.apply_train(model, params, batch_stats, batch["image"])
    given = _decode(example_table.gather(method_state[TABLE], batch["example_id"]))
    targets = completed_labels(batch["labels"], given)
    loss, metrics = losses.partial_bce(logits, targets)
    metrics["curriculum_labels"] = jnp.sum((batch["labels"] == 0) & (given != 0))
    diagnostics = {"curriculum": (pl.complete_labels(batch["labels"], given > 0), jnp.bool_(True))}
    return loss, base.StepOutput({"bce": loss, **metrics}, batch_stats, method_state, diagnostics)


def round_due(epoch: int, first_round: int, round_every: int) -> bool:
    return epoch >= first_round and (epoch - first_round) % round_every == 0


def refresh(config, model, params, batch_stats, method_state, epoch, batches):
    """A labelling round at the epochs `round_due` names (module docstring)."""
    mc = config.method_config
    if not round_due(epoch, mc.first_round, mc.round_every):
        return method_state

    @functools.partial(jax.jit, donate_argnums=(0,))
    def label(table, params, batch_stats, images, labels, ids):
        logits, _ = base.apply_eval(model, params, batch_stats, images)
        p = jax.nn.sigmoid(logits.astype(jnp.float32))
        given = _decode(example_table.gather(table, ids))
        new = jnp.where(p >= mc.threshold, 1, 0)
        if not mc.positive_only:
            new = jnp.where(p <= 1.0 - mc.threshold, -1, new)
        new = jnp.where((labels == 0) & (given == 0), new, given).astype(jnp.float32)
        return example_table.scatter(table, ids, (new + 1.0) / 2.0)

    table = method_state[TABLE]
    for batch in batches():
        table = label(table, params, batch_stats, batch["image"], batch["labels"],
                      batch["example_id"])  # fmt: skip
    return dict(method_state, **{TABLE: table})


METHOD = base.Method(
    name="cl",
    default_config=default_config,
    make_model=make_model,
    loss_fn=loss_fn,
    predict_fn=base.predict_logits,
    validate=validate,
    init_state=init_state,
    refresh=refresh,
    state_sharding=state_sharding,
    diagnostics=common.pseudo_label_diagnostics,
)
