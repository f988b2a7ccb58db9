"""`hst`: Heterogeneous Semantic Transfer (IJCV 2024) on the SSGRL core.

As the authors' code runs it (``shared/reference/hcp_mlr_pl_notes.md`` §9, script values):

* model: SSGRL + IST pair head; two learnable margins theta_intra, theta_inter (init 1.0, DTL,
  paper §3.4) are the method's own parameters ``params['method']['{intra,inter}_margin']``; their
  optimiser starts at their first gradient (epoch 5), as PyTorch's Adam skips them before (a
  delayed `ParamGroup`);
* CST prototypes: K = 10 K-means centres per class of the category features of the known positives
  of one pass over the (augmented) training set in inference mode, at the start of epochs 5, 10, 15
  (`refresh`; one batched K-means for all classes, `ops.kmeans`), held in `method_state`;
* soft scores y^_intra = clamp(score_intra - theta_intra, 0, 1) (score: mean co-occurrence with the
  known positives, eq. 4 as coded) and y^_inter = clamp(mean_k cos(v, prototype_k) - theta_inter,
  0, 1) (eq. 7-8); the labels used by the classifier are t + [t = 0][y^ > 0] (eq. 14-15 as coded);
* loss (notes §9.4) L = BCE(s, t) + [e >= 5] (BCE(s, y_intra) + BCE(s, y_inter))
  + [e >= 5] 0.1 BCE(logits = y^_intra, t) + [e >= 5] 0.1 BCE(logits = y^_inter, t)   (DTL)
  + w(e) 10 L_ist(l, t) + w(e) 0.05 L_instance(v, t) + [e >= 5] 0.05 L_prototype(v, t, P),
  with the epoch-0 ramp w and L_prototype = mean(1 + t d) as coded (``prototype_loss_sign``
  'reference'; 'paper' flips the sign to pull known positives towards their prototypes).

Ablations: ``use_intra`` / ``use_inter`` (IST only, CST only), ``learn_margins=False`` (fixed
thresholds ``intra_margin`` / ``inter_margin``, HST Table 7), ``cooccurrence_source='statistics'``
(dataset co-occurrence instead of the learned one, Table 4), ``cooccurrence_weight=0`` (without
L_ist, Table 4), ``cross_image_source='instances'`` (Table 5 "CST w/ IL": the cross-image scores
are the mean cosine to SST's per-class FIFO bank of recent known-positive features instead of the
K-means prototypes; there are then no prototypes, no refresh and no prototype loss),
``instance_weight=0, prototype_weight=0`` (Table 5 "CST w/o L_cst").
`hst_fb` (HST paper §4.4, Table 8, "HST w/ FB") is HST plus SARB's blended branches; see the end of
this module.
Deviation: the features collected for K-means are capped at ``prototype_max_per_class`` per class
(the first ones of the shuffled pass, i.e. a uniform sample); the reference clusters all of them.
"""

import jax
import jax.numpy as jnp
import ml_collections

from mlrpl_jax import losses
from mlrpl_jax.losses import contrastive, cooccurrence
from mlrpl_jax.methods import base, blending, common, prototypes, sst
from mlrpl_jax.methods import ssgrl as ssgrl_method
from mlrpl_jax.models import ist, ssgrl
from mlrpl_jax.ops import pseudo_labels as pl


def default_config() -> ml_collections.ConfigDict:
    """The method's keys (defaults: the authors' HST script)."""
    c = ssgrl_method.default_config()
    c.generate_label_epoch = 5  # Pseudo labels, DTL and prototype losses from this epoch on.
    c.learn_margins = (
        True  # DTL: learnable thresholds (init 1.0) | False: fixed at the values below.
    )
    c.intra_margin = 1.0  # theta_intra: initial value (learnable) or fixed value.
    c.inter_margin = 1.0  # theta_inter: initial value (learnable) or fixed value.
    c.intra_dtl_weight = 0.1  # Weight of BCE(logits=y^_intra, t) (script "intraBCEWeight").
    c.inter_dtl_weight = 0.1  # Weight of BCE(logits=y^_inter, t) (script "interBCEWeight").
    c.cooccurrence_weight = 10.0  # Weight of the IST asymmetric loss (ramped in epoch 0).
    c.instance_weight = 0.05  # Weight of the instance contrastive loss (ramped in epoch 0).
    c.prototype_weight = 0.05  # Weight of the prototype contrastive loss.
    c.prototype_loss_sign = "reference"  # 'reference': mean(1 + t d) as coded | 'paper': 1 - t d.
    c.use_intra = True  # Ablation: False drops the intra-image pseudo labels and their DTL term.
    c.use_inter = True  # Ablation: False drops the cross-image pseudo labels and their DTL term.
    c.cooccurrence_source = (
        "learned"  # 'learned' (IST head) | 'statistics' (ablation "IST w/ stat").
    )
    c.cross_image_source = (
        "prototypes"  # 'prototypes' (K-means, HST) | 'instances' (SST's bank, "CST w/ IL").
    )
    c.bank_size = 100  # 'instances': known-positive features kept per class (SST script 100).
    c.num_prototypes = 10  # K: K-means centres per class.
    c.prototype_every_epochs = 5  # Prototypes at epochs e >= generate_label_epoch, e % this == 0.
    c.recompute_prototypes = True  # False: only at generate_label_epoch.
    c.prototype_max_per_class = 2048  # Known-positive features kept per class for K-means.
    c.kmeans_n_init = 10  # K-means restarts (the reference's sklearn default of its era).
    c.kmeans_max_iters = 300  # K-means Lloyd iterations at most (tol 1e-4, as sklearn).
    c.ist_hidden_dim = 512  # IST fc1 output (reference 512).
    c.ist_pair_dim = 1024  # IST fc2/fc3 width (reference 1024).
    c.ist_chunk = 1024  # IST: class pairs per rematerialised chunk.
    return c


def validate(config: base.Config) -> None:
    """Choice keys and the prototype schedule."""
    mc = config.method_config
    common.check_choices(mc, {
        "prototype_loss_sign": ("reference", "paper"),
        "cooccurrence_source": ("learned", "statistics"),
        "cross_image_source": ("prototypes", "instances"),
    })  # fmt: skip
    if mc.generate_label_epoch % mc.prototype_every_epochs:
        raise ValueError(
            f"config.method_config.generate_label_epoch={mc.generate_label_epoch} must be a "
            f"multiple of prototype_every_epochs={mc.prototype_every_epochs} (the reference's "
            "schedule: otherwise there are no prototypes when pseudo labels start)."
        )


def make_model(config: base.Config, data_info: base.DataInfo) -> ssgrl.SSGRL:
    """SSGRL + IST head."""
    mc = config.method_config
    head = ist.ISTHead(mc.ist_hidden_dim, mc.ist_pair_dim, mc.ist_chunk)
    return ssgrl_method.make_model(config, data_info, ist=head)


def init_params(config: base.Config, data_info: base.DataInfo) -> dict:
    """The learnable margins theta_intra, theta_inter (when `learn_margins`)."""
    del data_info
    mc = config.method_config
    if not mc.learn_margins:
        return {}
    return {name: jnp.float32(mc[name]) for name in ("intra_margin", "inter_margin")}


def param_groups(config: base.Config) -> tuple[base.ParamGroup, ...]:
    """SSGRL's groups + the method's own parameters (margins; alpha and beta for `hst_fb`),
    out of the graph (no Adam step, no L2) until epoch 5 as in the reference; alpha and beta are
    clamped to [0, 1] after each update."""
    own = base.METHOD_PARAMS
    return ssgrl_method.param_groups(config) + (
        base.ParamGroup((own,), delayed=True),
        *(
            base.ParamGroup((own, name), delayed=True, project=common.clip_unit)
            for name in blending.COEFFICIENTS
        ),
    )


def init_state(config: base.Config, data_info: base.DataInfo, rng: jax.Array) -> dict:
    """Zero prototypes (C, K, D) until the first refresh; `prototype_points` (C,) counts. With
    ``cross_image_source='instances'``: SST's zero-initialised FIFO bank (C, N, D) instead."""
    mc = config.method_config
    if mc.cross_image_source == "instances":
        return sst.init_state(config, data_info, rng)
    c, k, d = data_info.num_classes, mc.num_prototypes, config.model.feature_dim
    return {
        "prototypes": jnp.zeros((c, k, d), jnp.float32),
        "prototype_points": jnp.zeros((c,), jnp.int32),
    }


def refresh(config, model, params, batch_stats, method_state, epoch, batches):
    """K-means prototypes from one pass over the training set at epochs 5, 10, 15 (notes §9.2;
    never for ``cross_image_source='instances'``)."""
    mc = config.method_config
    due = common.prototypes_due(
        epoch, mc.generate_label_epoch, mc.prototype_every_epochs, mc.recompute_prototypes
    )
    if mc.cross_image_source != "prototypes" or not due:
        return method_state
    return prototypes.kmeans_refresh(
        config, model, params, batch_stats, method_state, epoch, batches
    )


def margins(mc, params) -> tuple[jax.Array, jax.Array]:
    """(theta_intra, theta_inter): learned parameters, or the fixed config values."""
    if mc.learn_margins:
        own = base.method_params(params)
        return own["intra_margin"], own["inter_margin"]
    return jnp.float32(mc.intra_margin), jnp.float32(mc.inter_margin)


def hst_loss(config, params, method_state, batch, rng, clock, logits, aux):
    """The HST loss of one forward's (logits, aux). Returns (loss, metrics, new method state,
    diagnostics)."""
    mc = config.method_config
    t = batch["labels"]
    v, pair_logits = aux["category_features"], aux["pair_logits"]
    active = common.active_from(clock, mc.generate_label_epoch)
    on = active.astype(jnp.float32)
    ramp = common.epoch0_ramp(clock)
    theta_intra, theta_inter = margins(mc, params)

    s = common.cooccurrence_for_labels(mc.cooccurrence_source, params, pair_logits)
    soft_intra = pl.hst_soft_scores(pl.intra_scores(s, t), theta_intra)
    instances = mc.cross_image_source == "instances"
    if instances:  # "CST w/ IL": SST's bank, updated before the scores, as SST codes it
        new_state = dict(method_state, bank=pl.update_bank(method_state["bank"], v, t))
        references = new_state["bank"]
    else:
        new_state, references = method_state, method_state["prototypes"]
    soft_inter = pl.hst_soft_scores(pl.mean_cosine_to_set(v, references), theta_inter)
    y_intra = pl.complete_labels(t, pl.indicator(soft_intra, 0.0, strict=True))
    y_inter = pl.complete_labels(t, pl.indicator(soft_inter, 0.0, strict=True))

    loss, metrics = ssgrl_method.supervised_loss(config, logits, aux, t)
    l_intra, _ = losses.partial_bce(logits, y_intra)
    l_inter, _ = losses.partial_bce(logits, y_inter)
    dtl_intra, _ = losses.partial_bce(soft_intra, t)  # soft scores as logits (DTL, as coded)
    dtl_inter, _ = losses.partial_bce(soft_inter, t)
    l_ist, _ = cooccurrence.intra_asymmetric_loss(pair_logits, t)
    l_ins, _ = contrastive.instance_contrastive_loss(v, t, rng)
    if instances:
        l_pro = jnp.float32(0.0)
    else:
        l_pro, _ = contrastive.prototype_contrastive_loss(
            v, t, method_state["prototypes"], paper_sign=mc.prototype_loss_sign == "paper"
        )
    intra_on, inter_on = on * mc.use_intra, on * mc.use_inter
    loss = (
        loss
        + intra_on * (l_intra + mc.intra_dtl_weight * dtl_intra)
        + inter_on * (l_inter + mc.inter_dtl_weight * dtl_inter)
        + ramp * mc.cooccurrence_weight * l_ist
        + ramp * mc.instance_weight * l_ins
        + on * mc.prototype_weight * l_pro
    )
    metrics.update(
        intra_bce=l_intra, inter_bce=l_inter, intra_dtl=dtl_intra, inter_dtl=dtl_inter,
        ist_asl=l_ist, instance_contrastive=l_ins, prototype_contrastive=l_pro,
        theta_intra=theta_intra, theta_inter=theta_inter,
    )  # fmt: skip
    diagnostics = {
        "pseudo_intra": (y_intra, active & mc.use_intra),
        "pseudo_inter": (y_inter, active & mc.use_inter),
    }
    return loss, metrics, new_state, diagnostics


def loss_fn(model, config, params, batch_stats, method_state, batch, rng, clock):
    """The HST loss (module docstring). See `base.Method.loss_fn`."""
    (logits, aux), batch_stats = base.apply_train(model, params, batch_stats, batch["image"])
    loss, metrics, new_state, diagnostics = hst_loss(
        config, params, method_state, batch, rng, clock, logits, aux
    )
    return loss, base.StepOutput(metrics, batch_stats, new_state, diagnostics)


METHOD = base.Method(
    name="hst",
    default_config=default_config,
    make_model=make_model,
    loss_fn=loss_fn,
    predict_fn=base.predict_logits,
    validate=validate,
    init_state=init_state,
    init_params=init_params,
    param_groups=param_groups,
    refresh=refresh,
    diagnostics=common.pseudo_label_diagnostics,
)


# ---------------------------------------------------------------------------------------------
# `hst_fb`: HST with feature blending (HST paper §4.4, Table 8, "HST w/ FB").
#
# The paper gives no details beyond "integrating the feature blending strategy [SARB] into HST"
# and there is no released code. Built here as: the HST loss + from epoch `generate_label_epoch`
# SARB's two blended branches (`blending.blend_loss`: IPRB with the reversed batch, PLRB with one
# of HST's K-means prototypes, the same ones CST uses), with learnable per-class alpha and beta
# (clamped to [0, 1], optimiser from their first gradient, like the margins). The branches blend
# with the partial labels t (as SARB does), not with HST's pseudo-label-completed targets.


def fb_default_config() -> ml_collections.ConfigDict:
    """`hst_fb` keys: HST's plus the blending keys of `blending.blend_keys`."""
    return blending.blend_keys(default_config())


def fb_validate(config: base.Config) -> None:
    """HST's checks, the blending checks, and PPRB's need of HST's prototypes."""
    validate(config)
    mc = config.method_config
    blending.check(mc)
    if mc.use_pprb and mc.cross_image_source != "prototypes":
        raise ValueError(
            "config.method_config.use_pprb=True: hst_fb blends with HST's K-means prototypes, "
            "which cross_image_source='instances' does not compute; set use_pprb=False or "
            "cross_image_source='prototypes'."
        )


def fb_init_params(config: base.Config, data_info: base.DataInfo) -> dict:
    """The margins + alpha and beta of the enabled branches (when learnable)."""
    return {
        **init_params(config, data_info),
        **blending.init_coefficients(config.method_config, data_info.num_classes),
    }


def fb_loss_fn(model, config, params, batch_stats, method_state, batch, rng, clock):
    """HST loss + [e >= generate_label_epoch] (IPRB + PLRB branch losses)."""
    mc = config.method_config
    k_hst, k_blend = jax.random.split(rng)
    (logits, aux), batch_stats = base.apply_train(model, params, batch_stats, batch["image"])
    loss, metrics, new_state, diagnostics = hst_loss(
        config, params, method_state, batch, k_hst, clock, logits, aux
    )
    active = common.active_from(clock, mc.generate_label_epoch)
    blend, blend_metrics = blending.blend_loss(
        model, mc, params, aux, batch["labels"], method_state, k_blend, "kmeans", active
    )
    metrics.update(blend_metrics)
    return loss + blend, base.StepOutput(metrics, batch_stats, new_state, diagnostics)


METHOD_FB = METHOD._replace(
    name="hst_fb",
    default_config=fb_default_config,
    validate=fb_validate,
    init_params=fb_init_params,
    loss_fn=fb_loss_fn,
)
