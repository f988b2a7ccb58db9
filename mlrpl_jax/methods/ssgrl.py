"""`ssgrl`: the SSGRL core (category features + gated GNN) trained with the partial BCE.

The "SSGRL" baseline of the HST and DSRB papers (HST Table 1, DSRB Table 1): ResNet-101 with only
layer4 trained -> channel reduction -> semantic decoupling (or semantic attention,
``config.model.category_features='sa'``) -> 3-step gated GNN over the co-occurrence graph of the
known training labels -> tanh output layer -> element-wise classifier, trained with the partial BCE
on the known labels (``shared/reference/hcp_mlr_pl_notes.md`` §1, §2.1, §6). No loss ramp applies:
the reference ramps only the contrastive and co-occurrence terms, which SSGRL does not have.

With 'sa', the class activation maps also give image-level logits (ADD-GCN's s_m); they are trained
with the same partial BCE, weighted by ``method_config.cam_loss_weight`` (ADD-GCN sums both losses),
and the prediction is the GNN classifier's logits alone.
"""

import ml_collections

from mlrpl_jax import losses, models
from mlrpl_jax.methods import base
from mlrpl_jax.models import ssgrl


def default_config() -> ml_collections.ConfigDict:
    """The method's keys."""
    c = ml_collections.ConfigDict()
    c.bce_margin = (
        0.0  # Partial BCE ignores targets with |y| <= margin (reference BCELoss(margin)).
    )
    c.cam_loss_weight = 1.0  # 'sa' only: weight of the partial BCE on the CAM logits (max over P).
    return c


def make_model(config: base.Config, data_info: base.DataInfo, ist=None) -> ssgrl.SSGRL:
    """Backbone from `config.model` + SSGRL head with the data's embeddings and adjacency.

    `ist` is the optional IST pair head (`ssgrl.SSGRL.ist`) of SST and HST.
    """
    semantics = data_info.label_semantics()
    m = config.model
    head = ssgrl.SSGRLHead(
        num_classes=data_info.num_classes,
        label_embeddings=semantics.embeddings,
        adjacency=semantics.adjacency,
        category_features=m.category_features,
        feature_dim=m.feature_dim,
        attention_dim=m.attention_dim,
        gnn_steps=m.gnn_steps,
        sd_chunk=m.sd_chunk,
    )
    return ssgrl.SSGRL(backbone=models.make_backbone(m), head=head, ist=ist)


def supervised_loss(config, logits, aux, labels):
    """Partial BCE on the logits (+ the weighted CAM term for 'sa'). Returns (loss, metrics)."""
    margin = config.method_config.bce_margin
    loss, metrics = losses.partial_bce(logits, labels, margin=margin)
    metrics = {"bce": loss, **metrics}
    if "cam_logits" in aux:
        cam, _ = losses.partial_bce(aux["cam_logits"], labels, margin=margin)
        loss = loss + config.method_config.cam_loss_weight * cam
        metrics["cam_bce"] = cam
    return loss, metrics


def loss_fn(model, config, params, batch_stats, method_state, batch, rng, clock):
    """Partial BCE of the logits against the partial labels. See `base.Method.loss_fn`."""
    del rng, clock
    (logits, aux), batch_stats = base.apply_train(model, params, batch_stats, batch["image"])
    loss, metrics = supervised_loss(config, logits, aux, batch["labels"])
    return loss, base.StepOutput(metrics, batch_stats, method_state)


def param_groups(config: base.Config) -> tuple[base.ParamGroup, ...]:
    """The frozen backbone stages and the data-derived constants (embeddings, adjacency)."""
    constants = tuple(base.ParamGroup(p, frozen=True) for p in ssgrl.CONSTANT_PARAMS)
    return base.backbone_groups(config) + constants


METHOD = base.Method(
    name="ssgrl",
    default_config=default_config,
    make_model=make_model,
    loss_fn=loss_fn,
    predict_fn=base.predict_logits,
    param_groups=param_groups,
)
