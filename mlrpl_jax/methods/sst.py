"""`sst`: Structured Semantic Transfer (AAAI 2022; the conference version of HST) on the SSGRL core.

As the authors' code runs it (``shared/reference/hcp_mlr_pl_notes.md`` §7, script values):

* model: SSGRL + the IST pair head on the category features v (`models.ist.ISTHead`);
* cross-image memory: a per-class FIFO bank (C, N, D) of the most recent known-positive category
  features, updated every step *before* the pseudo labels are computed (held in `method_state`,
  so unlike the reference it is checkpointed);
* pseudo labels from epoch ``generate_label_epoch`` (5): intra-image y_intra from the learned
  co-occurrence of each unknown class with the known positives, cross-image y_inter from the mean
  cosine to the bank; each turns unknown entries into positives only (the labels stay {-1, 0, 1});
* thresholds theta_intra, theta_inter start at 0.95 and decay by 0.025 per epoch after epoch 5 down
  to 0.75 (``threshold_schedule='decay'``), or stay fixed (``'fixed'``);
* ``threshold_rule='reference'`` applies the code's two-step in-place rule (theta >= 1 gives no
  pseudo labels at all), ``'paper'`` the indicator [score >= theta] of eq. 4 and 8;
* loss (notes §7.5) L = BCE(s, t) + [e >= 5] BCE(s, y_intra) + w(e) 10 L_ist(l, t)
  + [e >= 5] BCE(s, y_inter) + w(e) 0.05 L_contrastive(v, t), with w(0) = the fraction of epoch 0
  done and w(e >= 1) = 1 (the epoch-0 ramp, notes §2.4).

Pseudo-label precision and recall against the hidden full labels are logged as
'pseudo_{intra,inter}_{precision,recall}' through `Method.diagnostics` (`common`), which alone
sees the full labels; they are never used for training.
"""

import jax
import jax.numpy as jnp
import ml_collections

from mlrpl_jax import losses
from mlrpl_jax.losses import contrastive, cooccurrence
from mlrpl_jax.methods import base, common
from mlrpl_jax.methods import ssgrl as ssgrl_method
from mlrpl_jax.models import ist
from mlrpl_jax.ops import pseudo_labels as pl


def default_config() -> ml_collections.ConfigDict:
    """The method's keys (defaults: the authors' SST script)."""
    c = ssgrl_method.default_config()
    c.generate_label_epoch = 5  # Pseudo labels (and their losses) from this epoch on.
    c.intra_threshold = 0.95  # theta_intra at generate_label_epoch (script; code default 1.0).
    c.inter_threshold = 0.95  # theta_inter at generate_label_epoch.
    c.threshold_schedule = "decay"  # 'decay': -threshold_decay per epoch after e >= 5 | 'fixed'.
    c.threshold_decay = 0.025  # Per-epoch decrease of both thresholds ('decay').
    c.threshold_floor = 0.75  # Lowest threshold ('decay').
    c.threshold_rule = "reference"  # 'reference': the code's two-step rule | 'paper': [s >= theta].
    c.intra_bce_weight = 1.0  # Weight of BCE(s, y_intra).
    c.inter_bce_weight = 1.0  # Weight of BCE(s, y_inter).
    c.cooccurrence_weight = 10.0  # Weight of the IST asymmetric loss (ramped in epoch 0).
    c.contrastive_weight = 0.05  # Weight of the instance contrastive loss (ramped in epoch 0).
    c.bank_size = 100  # N: known-positive features kept per class (script 100).
    c.use_intra = True  # Ablation: False drops the intra-image pseudo labels (IST transfer).
    c.use_inter = True  # Ablation: False drops the cross-image pseudo labels (CST transfer).
    c.cooccurrence_source = (
        "learned"  # 'learned' (IST head) | 'statistics' (ablation "IST w/ stat").
    )
    c.ist_hidden_dim = 512  # IST fc1 output (reference 512).
    c.ist_pair_dim = 1024  # IST fc2/fc3 width (reference 1024).
    c.ist_chunk = 1024  # IST: class pairs per rematerialised chunk.
    return c


def validate(config: base.Config) -> None:
    """The choice keys (`common.check_choices`)."""
    common.check_choices(config.method_config, {
        "threshold_schedule": ("decay", "fixed"),
        "threshold_rule": ("reference", "paper"),
        "cooccurrence_source": ("learned", "statistics"),
    })  # fmt: skip


def make_model(config: base.Config, data_info: base.DataInfo):
    """SSGRL + IST head."""
    mc = config.method_config
    head = ist.ISTHead(mc.ist_hidden_dim, mc.ist_pair_dim, mc.ist_chunk)
    return ssgrl_method.make_model(config, data_info, ist=head)


def init_state(config: base.Config, data_info: base.DataInfo, rng: jax.Array) -> dict:
    """The zero-initialised FIFO bank (C, N, D) (the reference's lazily zero-initialised bank)."""
    del rng
    shape = (data_info.num_classes, config.method_config.bank_size, config.model.feature_dim)
    return {"bank": jnp.zeros(shape, jnp.float32)}


def thresholds(mc: ml_collections.ConfigDict, epoch: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(theta_intra, theta_inter) used in `epoch` (notes §7.4)."""
    if mc.threshold_schedule == "fixed":
        return jnp.float32(mc.intra_threshold), jnp.float32(mc.inter_threshold)
    steps = jnp.maximum(epoch - mc.generate_label_epoch, 0).astype(jnp.float32)
    decayed = [
        jnp.maximum(mc.threshold_floor, theta - mc.threshold_decay * steps)
        for theta in (mc.intra_threshold, mc.inter_threshold)
    ]
    return decayed[0], decayed[1]


def _threshold(mc, scores, theta):
    if mc.threshold_rule == "reference":
        return pl.sst_threshold(scores, theta)
    return pl.indicator(scores, theta)


def loss_fn(model, config, params, batch_stats, method_state, batch, rng, clock):
    """The SST loss (module docstring). See `base.Method.loss_fn`."""
    mc = config.method_config
    (logits, aux), batch_stats = base.apply_train(model, params, batch_stats, batch["image"])
    t = batch["labels"]
    v, pair_logits = aux["category_features"], aux["pair_logits"]
    active = common.active_from(clock, mc.generate_label_epoch)
    ramp = common.epoch0_ramp(clock)
    theta_intra, theta_inter = thresholds(mc, clock.epoch)

    bank = pl.update_bank(method_state["bank"], v, t)  # before the pseudo labels, as coded
    s = common.cooccurrence_for_labels(
        mc.cooccurrence_source, params, jax.lax.stop_gradient(pair_logits)
    )
    intra = _threshold(mc, pl.intra_scores(s, t), theta_intra)
    y_intra = pl.complete_labels(t, intra)
    inter = _threshold(mc, pl.mean_cosine_to_set(jax.lax.stop_gradient(v), bank), theta_inter)
    y_inter = pl.complete_labels(t, inter)

    loss, metrics = ssgrl_method.supervised_loss(config, logits, aux, t)
    l_intra, _ = losses.partial_bce(logits, y_intra, margin=theta_intra)
    l_inter, _ = losses.partial_bce(logits, y_inter, margin=theta_inter)
    l_ist, _ = cooccurrence.intra_asymmetric_loss(pair_logits, t)
    l_con, _ = contrastive.instance_contrastive_loss(v, t, rng)
    on = active.astype(jnp.float32)
    loss = (
        loss
        + on * mc.use_intra * mc.intra_bce_weight * l_intra
        + on * mc.use_inter * mc.inter_bce_weight * l_inter
        + ramp * mc.cooccurrence_weight * l_ist
        + ramp * mc.contrastive_weight * l_con
    )
    metrics.update(
        intra_bce=l_intra, inter_bce=l_inter, ist_asl=l_ist, contrastive=l_con,
        theta_intra=theta_intra, theta_inter=theta_inter,
    )  # fmt: skip
    diagnostics = {
        "pseudo_intra": (y_intra, active & mc.use_intra),
        "pseudo_inter": (y_inter, active & mc.use_inter),
    }
    return loss, base.StepOutput(metrics, batch_stats, {"bank": bank}, diagnostics)


METHOD = base.Method(
    name="sst",
    default_config=default_config,
    make_model=make_model,
    loss_fn=loss_fn,
    predict_fn=base.predict_logits,
    validate=validate,
    init_state=init_state,
    param_groups=ssgrl_method.param_groups,
    diagnostics=common.pseudo_label_diagnostics,
)
