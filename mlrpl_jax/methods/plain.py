"""`plain`: backbone + global pooling + linear head trained with the partial BCE.

The simplest MLR-PL baseline ("Partial BCE" in the HST and DSRB papers' tables): unknown labels are
ignored and the known ones are scored with binary cross-entropy.
"""

import ml_collections

from mlrpl_jax import losses, models
from mlrpl_jax.methods import base
from mlrpl_jax.models.classifier import GlobalPoolClassifier


def default_config() -> ml_collections.ConfigDict:
    """The method's keys."""
    c = ml_collections.ConfigDict()
    c.bce_margin = (
        0.0  # Partial BCE ignores targets with |y| <= margin (reference BCELoss(margin)).
    )
    return c


def make_model(config: base.Config, data_info: base.DataInfo) -> GlobalPoolClassifier:
    """Backbone from `config.model` + linear head with C outputs."""
    return GlobalPoolClassifier(
        backbone=models.make_backbone(config.model), num_classes=data_info.num_classes
    )


def loss_fn(model, config, params, batch_stats, method_state, batch, rng, clock):
    """Partial BCE of the logits against the partial labels. See `base.Method.loss_fn`."""
    del rng, clock
    (logits, _), batch_stats = base.apply_train(model, params, batch_stats, batch["image"])
    loss, metrics = losses.partial_bce(
        logits, batch["labels"], margin=config.method_config.bce_margin
    )
    return loss, base.StepOutput({"bce": loss, **metrics}, batch_stats, method_state)


METHOD = base.Method(
    name="plain",
    default_config=default_config,
    make_model=make_model,
    loss_fn=loss_fn,
    predict_fn=base.predict_logits,
)
