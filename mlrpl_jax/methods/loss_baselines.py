"""The loss-level baselines of the papers' tables on the `plain` network (backbone + global pooling
+ linear head): methods that differ from `plain` only in their loss, plus ROLE's learned label
table and LargeLoss's permanent corrections.

One `Method` per baseline, all sharing `loss_fn`; `config.method_config.loss` names the loss
(`mlrpl_jax.losses`, whose docstrings give formulas, reductions and where focusing weights stop
the gradient):

  partial_bce   known labels only; `reduction` 'batch' (the HCP-MLR-PL code: mean over the batch's
                known entries, = `plain`) or 'durand' (Durand et al.'s g(p_y) normalisation).
  asl           ASL, sum; `unknown` 'ignore' (HST's ASL baseline) or 'negative' (paper 002's).
  focal         focal loss, unknown entries negative, sum (paper 002's baseline).
  bce_ls        BCE with label smoothing on the known entries.
  an, an_ls,    Cole et al.: assume negative, with label smoothing, weak assume negative,
  wan, epr      expected positive regularisation (`expected_positives` must be set: Cole et al.
                use VOC 1.5, COCO 2.9, NUS-WIDE 1.9, CUB 31.4).
  role          EPR's regulariser + a learned (N, C) label-estimate table in logit space at
                ``params['method']['label_logits']``, initialised from the observed labels
                (positives logit(0.995), negatives logit(0.005), unknown uniform in
                (-logit(0.6), logit(0.6)) from `config.seed`), trained with lr x `table_lr_mult`
                (10) and no weight decay, sharded over the data axis with its Adam moments.
  ll_r, ll_ct   LargeLoss rejection / temporary correction of the k largest unobserved losses of
                the batch, k = ceil(B C epoch delta_rel) (none in epoch 0).
  ll_cp         LargeLoss permanent correction. Default (`ll_cp_rule='paper'`): from epoch 1, the
                ceil(B C delta_rel) largest unobserved losses of the batch are corrected and
                stay positive for the rest of training (a uint8 (N, C) table of corrections in
                `method_state`, sharded); `ll_cp_rule='released_code'` runs what the released
                code does (its string identity test fails, so LL-Cp behaves as LL-Ct with the
                clean-rate budget and writes nothing).
  splc, hill    SPLC (corrections from `change_epoch`) and Hill, sum.

`head_lr_mult` multiplies the linear head's learning rate (LargeLoss's code: 10).

Diagnostics (`common.pseudo_label_diagnostics`, against the hidden full labels, never trained on):
the entries each mechanism treats as positive among the unknown ones: 'll_corrected' (LL-Ct,
LL-Cp: this batch's corrections, and LL-Cp's stored ones), 'll_rejected' (LL-R: the entries it
drops, which it takes for missed positives), 'splc' (SPLC's turned entries) and 'role_estimates'
(ROLE's label estimates above 0.5).

LargeLoss's clean-rate decrease `delta_rel` defaults per scheme to the LargeLoss first author's
follow-up code (`youngwk/BridgeGapExplanationPAMC:config.py`, `_LOOKUP['delta_rel']`, in % per
epoch, divided by 100 there): LL-R 0.5 %, LL-Ct 0.2 %, LL-Cp 0.1 %. LargeLoss's own README gives
only the range {0.1, ..., 0.5} %, no value per scheme.

Cole et al.'s `train_mode='linear_init'` (ROLE and AN-LS: `linear_init_epochs` > 0;
`elijahcole/single-positive-multi-label:train.py`, the `linear_init_params` lookup): a first phase
of `linear_init_epochs` (25) epochs trains only the linear head (and ROLE's label table) on the
frozen backbone, then the whole network is fine-tuned. Here one run does both: during the first
phase the backbone runs in inference mode (BatchNorm running statistics, nothing updated) with its
parameters behind a stop-gradient, and its optimiser group is delayed
(`ParamGroup(('backbone',), delayed=True)`: no update and no Adam step before its first non-zero
gradient, the first step of the fine-tuning phase); the first phase's learning rate is the
optimiser's constant warm-up (`optim.warmup_lr` for `optim.warmup_epochs` = `linear_init_epochs`,
which `validate` checks; `configs/recipes.cole_linear_init` sets them). Deviations from Cole et
al.'s two runs: one batch size for both phases (theirs: a per-loss, per-dataset batch for the
linear phase), the linear phase sees the augmented images rather than pre-extracted features of
the plain ones, the head's Adam moments carry over into fine-tuning (theirs: a new optimiser), and
fine-tuning starts from the last linear-phase epoch rather than its best on validation.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mlrpl_jax import losses, models
from mlrpl_jax.methods import base, common
from mlrpl_jax.models.classifier import GlobalPoolClassifier
from mlrpl_jax.ops import example_table
from mlrpl_jax.ops import pseudo_labels as pl

TABLE = "label_logits"  # ROLE's learned table at params['method']
CORRECTIONS = "corrections"  # LL-Cp's table at method_state
BACKBONE = ("backbone",)  # the model's backbone scope (GlobalPoolClassifier)

# LargeLoss's clean-rate decrease per epoch, per scheme (BridgeGapExplanationPAMC config.py:22-26,
# percent / 100): LL-R 0.5 %, LL-Ct 0.2 %, LL-Cp 0.1 %.
DELTA_REL = {"ll_r": 0.005, "ll_ct": 0.002, "ll_cp": 0.001}

# The losses Cole et al.'s code runs in train_mode 'linear_init' (its lookup table's entries).
LINEAR_INIT_LOSSES = ("role", "an_ls")


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def default_config(loss: str):
    """The keys of the baseline using `loss` (a closure per method, so each has its defaults)."""

    def make() -> ml_collections.ConfigDict:
        c = ml_collections.ConfigDict()
        c.loss = loss
        c.head_lr_mult = 10.0 if loss.startswith("ll_") else 1.0  # classifier lr x (LargeLoss 10)
        if loss == "partial_bce":
            c.reduction = "batch"  # 'batch' (reference code) | 'durand' (g(p_y), CVPR 2019)
            c.durand_alpha, c.durand_beta, c.durand_gamma = -4.45, 5.45, 1.0
        elif loss == "asl":
            c.gamma_pos, c.gamma_neg, c.clip, c.eps = 0.0, 4.0, 0.05, 1e-8  # ASL's train script
            c.unknown = "ignore"  # 'ignore' (HST baseline) | 'negative' (paper 002 baseline)
        elif loss == "focal":
            c.gamma = 2.0
            c.unknown = "negative"  # as paper 002 runs it
        elif loss in ("bce_ls", "an_ls"):
            c.ls_coef = 0.1
        elif loss in ("epr", "role"):
            c.expected_positives = ml_collections.FieldReference(None, field_type=float)
            if loss == "role":
                c.table_lr_mult = 10.0  # Cole et al.'s lr_mult of the label estimator
        if loss in LINEAR_INIT_LOSSES:
            # Cole et al.'s linear_init: epochs of head-only training on the frozen backbone
            # before fine-tuning (their 25); 0 = their 'end_to_end' mode.
            c.linear_init_epochs = 0
        elif loss == "splc":
            c.tau, c.margin, c.gamma, c.change_epoch = 0.6, 1.0, 2.0, 1
        elif loss == "hill":
            c.lamb, c.margin, c.gamma = 1.5, 1.0, 2.0
        elif loss.startswith("ll_"):
            c.delta_rel = DELTA_REL[loss]  # clean-rate decrease per epoch (0.5 / 0.2 / 0.1 %)
            if loss == "ll_cp":
                c.ll_cp_rule = "paper"  # 'paper' | 'released_code' (= LL-Ct, nothing stored)
        return c

    return make


def validate(config: base.Config) -> None:
    mc = config.method_config
    choices = {"loss": LOSSES}
    if mc.loss == "partial_bce":
        choices["reduction"] = ("batch", "durand")
    if mc.loss in ("asl", "focal"):
        choices["unknown"] = losses.asymmetric.UNKNOWN_MODES
    if mc.loss == "ll_cp":
        choices["ll_cp_rule"] = ("paper", "released_code")
    common.check_choices(mc, choices)
    if mc.loss in ("epr", "role") and mc.expected_positives is None:
        raise ValueError(
            f"config.method_config.expected_positives is None: {mc.loss} needs the expected "
            "number of positives per image (Cole et al.: VOC 1.5, COCO 2.9, NUS-WIDE 1.9, "
            "CUB 31.4); set --config.method_config.expected_positives=..."
        )
    if mc.loss.startswith("ll_") and not 0.0 <= mc.delta_rel <= 1.0:
        raise ValueError(f"config.method_config.delta_rel={mc.delta_rel}: must be in [0, 1].")
    if mc.loss in LINEAR_INIT_LOSSES:
        _validate_linear_init(config)


def _validate_linear_init(config: base.Config) -> None:
    """The linear-init phase fits in the run and its learning rate is the optimiser's warm-up."""
    n, optim = config.method_config.linear_init_epochs, config.optim
    if n < 0:
        raise ValueError(f"config.method_config.linear_init_epochs={n}: must be >= 0.")
    if n == 0:
        return
    if config.train.num_epochs <= n:
        raise ValueError(
            f"config.method_config.linear_init_epochs={n} leaves no fine-tuning epoch in "
            f"config.train.num_epochs={config.train.num_epochs}; it must be larger."
        )
    if optim.warmup_epochs != n or not optim.warmup_lr > 0:
        raise ValueError(
            f"config.method_config.linear_init_epochs={n}: the linear phase trains at the "
            f"optimiser's constant warm-up, so config.optim.warmup_epochs (now "
            f"{optim.warmup_epochs}) must equal it and config.optim.warmup_lr (now "
            f"{optim.warmup_lr}) be > 0 (configs/recipes.cole_linear_init sets both)."
        )


def make_model(config: base.Config, data_info: base.DataInfo) -> GlobalPoolClassifier:
    return GlobalPoolClassifier(
        backbone=models.make_backbone(config.model), num_classes=data_info.num_classes
    )


def init_params(config: base.Config, data_info: base.DataInfo) -> dict:
    """ROLE's label-estimate table (logits), from the observed labels (module docstring)."""
    if config.method_config.loss != "role":
        return {}
    labels = data_info.train_partial_labels()
    rng = np.random.default_rng([config.seed, 0x201E])
    bound = _logit(0.6)

    def values(rows):
        noise = rng.uniform(-bound, bound, size=rows.shape).astype(np.float32)
        return np.where(rows == 1, _logit(0.995), np.where(rows == -1, _logit(0.005), noise))

    return {TABLE: example_table.build(labels, values, "float32")}


def init_state(config: base.Config, data_info: base.DataInfo, rng: jax.Array) -> dict:
    """LL-Cp (paper rule): the uint8 table of permanent corrections, all zero."""
    del rng
    mc = config.method_config
    if mc.loss != "ll_cp" or mc.ll_cp_rule != "paper":
        return {}
    n, c = data_info.num_train_examples, data_info.num_classes
    return {CORRECTIONS: example_table.full(n, c, 0.0, "uint8")}


def param_groups(config: base.Config) -> tuple[base.ParamGroup, ...]:
    mc = config.method_config
    groups = base.backbone_groups(config)
    if mc.head_lr_mult != 1.0:
        groups += (base.ParamGroup(("head",), lr_mult=mc.head_lr_mult),)
    if mc.loss == "role":
        groups += (
            base.ParamGroup((base.METHOD_PARAMS, TABLE), lr_mult=mc.table_lr_mult,
                            weight_decay="none"),
        )  # fmt: skip
    if _linear_init_epochs(config):  # the backbone's optimiser starts with fine-tuning
        groups += (base.ParamGroup(BACKBONE, delayed=True),)
    return groups


def _linear_init_epochs(config: base.Config) -> int:
    mc = config.method_config
    return mc.linear_init_epochs if mc.loss in LINEAR_INIT_LOSSES else 0


def state_sharding(config: base.Config) -> tuple:
    del config
    return (
        example_table.sharding_rule(rf"{TABLE}$"),
        example_table.sharding_rule(rf"method_state/{CORRECTIONS}$"),
    )


def _logits(model, config, params, batch_stats, images, clock):
    """(logits (B, C), new batch_stats). In Cole et al.'s linear-init phase (epoch <
    `linear_init_epochs`) the backbone is a fixed feature extractor: inference mode, parameters
    behind a stop-gradient (their gradient is exactly 0), statistics unchanged."""

    def end_to_end():
        (logits, _), stats = base.apply_train(model, params, batch_stats, images)
        return logits, stats

    epochs = _linear_init_epochs(config)
    if not epochs:
        return end_to_end()

    def linear_head():
        fixed = {**params, BACKBONE[0]: jax.lax.stop_gradient(params[BACKBONE[0]])}
        logits, _ = base.apply_eval(model, fixed, batch_stats, images)
        return logits, batch_stats

    return jax.lax.cond(clock.epoch < epochs, linear_head, end_to_end)


def loss_fn(model, config, params, batch_stats, method_state, batch, rng, clock):
    """The baseline's loss of the linear head's logits. See `base.Method.loss_fn`."""
    del rng
    mc = config.method_config
    logits, batch_stats = _logits(model, config, params, batch_stats, batch["image"], clock)
    labels = batch["labels"]
    name = mc.loss
    diagnostics = {}
    if name == "partial_bce":
        if mc.reduction == "batch":
            loss, metrics = losses.partial_bce(logits, labels)
        else:
            loss, metrics = losses.normalized_partial_bce(
                logits, labels, alpha=mc.durand_alpha, beta=mc.durand_beta, gamma=mc.durand_gamma
            )
    elif name == "asl":
        loss, metrics = losses.asymmetric_loss(
            logits, labels, gamma_pos=mc.gamma_pos, gamma_neg=mc.gamma_neg, clip=mc.clip,
            eps=mc.eps, unknown=mc.unknown,
        )  # fmt: skip
    elif name == "focal":
        loss, metrics = losses.focal_loss(logits, labels, gamma=mc.gamma, unknown=mc.unknown)
    elif name in ("bce_ls", "an_ls"):
        loss, metrics = getattr(losses, name)(logits, labels, coef=mc.ls_coef)
    elif name in ("an", "wan"):
        loss, metrics = getattr(losses, name)(logits, labels)
    elif name == "epr":
        loss, metrics = losses.epr(logits, labels, expected_positives=mc.expected_positives)
    elif name == "role":
        estimates = base.method_params(params)[TABLE][batch["example_id"]]
        loss, metrics = losses.role(
            logits, labels, estimates, expected_positives=mc.expected_positives
        )
        diagnostics["role_estimates"] = (
            pl.complete_labels(labels, jax.lax.stop_gradient(estimates) > 0.0),
            jnp.bool_(True),
        )  # the table holds logits: estimate > 0.5
    elif name == "splc":
        active = clock.epoch >= mc.change_epoch
        loss, metrics, turned = losses.splc(
            logits, labels, active=active, tau=mc.tau, margin=mc.margin, gamma=mc.gamma
        )
        diagnostics["splc"] = (pl.complete_labels(labels, turned), active)
    elif name == "hill":
        loss, metrics = losses.hill(logits, labels, lamb=mc.lamb, margin=mc.margin, gamma=mc.gamma)
    else:  # ll_r, ll_ct, ll_cp
        permanent = name == "ll_cp" and mc.ll_cp_rule == "paper"
        n = labels.size
        if permanent:
            ids = batch["example_id"]
            stored = example_table.gather(method_state[CORRECTIONS], ids) > 0.5
            labels = jnp.where(stored, jnp.int8(1), labels)
            k = jnp.where(clock.epoch >= 1, math.ceil(n * mc.delta_rel - 1e-6), 0)
        else:
            k = losses.large_loss_budget(n, clock.epoch, mc.delta_rel)
        loss, metrics, masks = losses.large_loss(logits, labels, k, correct=name != "ll_r")
        treated = masks["hit"]
        if permanent:
            now = (stored | masks["above_threshold"]).astype(jnp.float32)
            method_state = {CORRECTIONS: example_table.scatter(method_state[CORRECTIONS], ids, now)}
            metrics["permanent_corrections"] = jnp.sum(now)
            treated = treated | stored
        key = "ll_rejected" if name == "ll_r" else "ll_corrected"
        diagnostics[key] = (pl.complete_labels(batch["labels"], treated), k > 0)
    metrics = {name: loss, **metrics}
    return loss, base.StepOutput(metrics, batch_stats, method_state, diagnostics)


LOSSES = (
    "partial_bce", "asl", "focal", "bce_ls", "an", "an_ls", "wan", "epr", "role", "splc", "hill",
    "ll_r", "ll_ct", "ll_cp",
)  # fmt: skip


def _method(loss: str) -> base.Method:
    return base.Method(
        name=loss,
        default_config=default_config(loss),
        make_model=make_model,
        loss_fn=loss_fn,
        predict_fn=base.predict_logits,
        validate=validate,
        init_state=init_state,
        init_params=init_params,
        param_groups=param_groups,
        state_sharding=state_sharding,
        diagnostics=common.pseudo_label_diagnostics,
    )


METHODS = {loss: _method(loss) for loss in LOSSES}
