"""`trm_ml`: TRM-ML (Ma et al., ACM MM 2024; paper 003) on frozen CLIP towers.

The network (`models.trm_ml.TRMML`: dual prompts, category-aware region learning, query- and
region-level matching) is documented there; this module adds the losses, the prototypes and the
pseudo labels. Tags [P] (the paper), [I] (``shared/reference/trm_ml_notes.md`` §12's proposal,
or a choice of ours; each a config key) as in the notes.

Loss (eq. 15) [P]: L = L_cls^q + alpha L_cls^r + beta L_KD + gamma L_NCE, alpha 1, beta 0.05,
gamma 0.01.

* L_cls (eq. 14): ASL, gamma+ 1, gamma- 2, margin 0.05, on sigmoid(pos - neg) of each branch, the
  author framework's reduction -sum / B (`losses.sigmoid_difference_asl`). Targets: the partial
  labels, and on unknown entries the pseudo labels, each pseudo-labelled entry weighted by
  `pseudo_weight` in both branches [I: the paper never says how pseudo labels enter the loss].
  ASL is a sum over entries, so L_cls = ASL(known labels) + pseudo_weight ASL(pseudo labels).
  `pseudo_weight` 1 (default) is hard replacement at full weight; 0 gives exactly the loss and
  gradients of `use_mmcp=False` while the thresholds, prototypes and bank still update (the
  pseudo labels are still computed and diagnosed). At CPU scale full weight makes most positive
  targets pseudo and about half of them wrong at 10 % known (``trm_ml_readings.md`` §1), so
  `recipes.synthetic_clip` sets a value chosen on the validation split
  (``docs/results/clip_validation.md``).
* L_KD (eq. 6): KL(p^r || p^q) with p = softmax over the C classes of each branch's logits, the
  region-level teacher under stop-gradient, summed over classes, mean over the batch [I].
* Visual memory bank (eq. 7) [P]: C FIFO queues of length `bank_length` (l) in `method_state`;
  every step, for each known positive (i, c), the dense features f at the `top_k` highest energies
  of region c go into queue c (L2-normalised, stop-gradient) [I: l 64, k 4 = 2 % of the paper's
  14 x 14 tokens; `top_k_for_tokens` keeps that share on other grids].
* Text prototypes [P: "the text representation trained in the first stage"]: g^+ computed with
  the parameters at the start of epoch `stage2_epoch` (`refresh`) and frozen in `method_state`;
  stage 2 (from `stage2_epoch`) turns on the pseudo labels and L_NCE [I].
* Pseudo labels (eq. 8-12): per class c, the batch means of s (mean cosine of f^r_{i,c} with the
  bank's queue c, eq. 8) over the known positives (s^p) and negatives (s^n) update EMA thresholds
  theta+_c, theta-_c (eq. 11, eta `ema`; initialised by the first batch holding such an entry,
  not updated by a batch without one) [P, I]; an unknown entry votes +1 if s >= theta+, -1 if
  s <= theta-, 0 if both or neither hold (eq. 10) [P, I]; the text prototype votes the same way
  with its own thresholds; the pseudo label is +1 (-1) when both votes are +1 (-1), else unknown
  (eq. 12) [P]. `use_text_prototype` / `use_visual_prototype` off: the other vote alone
  (Table 6). Optional stricter positive vote [I] (`positive_margin` m >= 0; 0, the default, is
  eq. 10-11's mean rule): +1 only if s >= theta+ + m max(theta+ - theta-, 0), i.e. a margin in
  units of the class's positive-negative gap (theta- unset: no margin); the negative vote is
  unchanged.
* L_NCE (eq. 13) [P; I for the unspecified parts]: anchor = g^+_c (L2-normalised); positives =
  the projected region features of the batch's known positives of c and the projected bank
  entries of c; negatives = the projected region features of the batch's known positives of the
  other classes; projection = the MLP E -> E -> E then L2 normalisation, fed L2-normalised
  inputs on both sides (bank entries are unit-norm tokens, region features f^r un-normalised
  sums of tokens: the MLP sees both at one scale) [I]; tau `nce_temperature` 0.07; the mean over
  the positives, then over the anchors with a positive.

Ablation switches (paper Table 3 and 6): `use_carl` (False: the DualCoOp baseline, the other
components need it), `use_kd`, `use_mmcp` (prototypes and pseudo labels), `use_mmcl`,
`use_text_prototype`, `use_visual_prototype`. Inference: the region-level logits [P].

Diagnostics (`diagnostics`, the contract's path that alone sees the hidden full labels, stage 2
only), logged per step and per epoch as exact ratios: 'pseudo_precision' / 'pseudo_recall' (pseudo
positives among the unknown entries), 'pseudo_negative_precision' / 'pseudo_negative_recall'
(pseudo negatives against the unknown true negatives), 'positive_targets_pseudo' (the share of
the positive ASL targets that are pseudo labels, counted per entry, unweighted) and
'positive_targets_wrong' (the share of the positive targets whose full label is 0). The
evaluation contract scores `predict_fn` (the region path) only; the query-path logits p^q are
`predict_query_logits`, which ``scripts/calibrate_clip.py`` scores beside the region path.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mlrpl_jax import losses, models
from mlrpl_jax.methods import base, common, dualcoop
from mlrpl_jax.models import clip, trm_ml
from mlrpl_jax.models.prompting import l2_normalize

BANK, BANK_PTR, BANK_COUNT = "bank", "bank_ptr", "bank_count"
THETA, THETA_SET = "thresholds", "thresholds_set"  # (4, C): visual +, visual -, text +, text -
TEXT_PROTO, HAS_TEXT_PROTO = "text_prototypes", "has_text_prototypes"
# k / T of the notes' k = 4 on the paper's 14 x 14 token grid (448 px, stride 32) [I].
TOP_K_FRACTION = 4 / 196


def top_k_for_tokens(num_tokens: int) -> int:
    """The bank's top-k for a grid of `num_tokens` tokens: the share of the paper-scale k = 4 of
    196 tokens (about 2 %), rounded, at least 1 [I]."""
    return max(1, round(num_tokens * TOP_K_FRACTION))


def default_config() -> ml_collections.ConfigDict:
    c = dualcoop.default_config()
    del c.variant, c.loss, c.loss_w
    c.alpha, c.beta, c.gamma = 1.0, 0.05, 0.01
    c.ffn_dim = 2048
    c.mlp_dim = 2048
    c.dropout = 0.1
    c.bank_length = 64
    c.top_k = 4
    c.ema = 0.9
    c.stage2_epoch = 10
    c.nce_temperature = 0.07
    c.pseudo_weight = 1.0  # weight of pseudo-labelled entries in both ASL terms [I]; 1: full
    c.positive_margin = 0.0  # >0: stricter positive vote [I]; 0: eq. 10-11's mean rule
    for switch in ("carl", "kd", "mmcp", "mmcl", "text_prototype", "visual_prototype"):
        c[f"use_{switch}"] = True
    return c


def validate(config: base.Config) -> None:
    mc = config.method_config
    dualcoop.check_clip_arch(mc)
    for key, ok, rule in (
        ("n_ctx", mc.n_ctx >= 1, ">= 1"), ("bank_length", mc.bank_length >= 1, ">= 1"),
        ("top_k", mc.top_k >= 1, ">= 1"), ("ema", 0.0 <= mc.ema < 1.0, "in [0, 1)"),
        ("stage2_epoch", mc.stage2_epoch >= 0, ">= 0"),
        ("nce_temperature", mc.nce_temperature > 0, "> 0"),
        ("pseudo_weight", mc.pseudo_weight >= 0, ">= 0"),
        ("positive_margin", mc.positive_margin >= 0, ">= 0"),
        ("dropout", 0.0 <= mc.dropout < 1.0, "in [0, 1)"),
    ):  # fmt: skip
        if not ok:
            raise ValueError(f"config.method_config.{key}={mc[key]!r}: must be {rule}.")
    if not mc.use_carl and (mc.use_kd or mc.use_mmcp or mc.use_mmcl):
        raise ValueError(
            "config.method_config.use_carl=False (the DualCoOp baseline) has no regions: set "
            "use_kd, use_mmcp and use_mmcl to False too."
        )
    if mc.use_mmcp and not (mc.use_text_prototype or mc.use_visual_prototype):
        raise ValueError(
            "config.method_config.use_mmcp=True needs use_text_prototype or use_visual_prototype."
        )


def make_model(config: base.Config, data_info: base.DataInfo) -> trm_ml.TRMML:
    mc = config.method_config
    return trm_ml.TRMML(
        clip_config=clip.PRESETS[mc.clip_arch],
        prompt_ids=dualcoop.prompt_ids(config, data_info.class_names),
        n_ctx=mc.n_ctx, class_specific=mc.class_specific, ffn_dim=mc.ffn_dim,
        mlp_dim=mc.mlp_dim, dropout=mc.dropout, use_carl=mc.use_carl, remat_text=mc.remat_text,
        dtype=models.compute_dtype(config.model),
    )  # fmt: skip


def init_state(config: base.Config, data_info: base.DataInfo, rng: jax.Array) -> dict:
    del rng
    mc = config.method_config
    c, e = data_info.num_classes, clip.PRESETS[mc.clip_arch].embed_dim
    return {
        BANK: np.zeros((c, mc.bank_length, e), np.float32),
        BANK_PTR: np.zeros((c,), np.int32),
        BANK_COUNT: np.zeros((c,), np.int32),
        THETA: np.zeros((4, c), np.float32),
        THETA_SET: np.zeros((4, c), bool),
        TEXT_PROTO: np.zeros((c, e), np.float32),
        HAS_TEXT_PROTO: np.zeros((), bool),
    }


def push_bank(state: dict, features: jax.Array, energies: jax.Array, labels: jax.Array, k: int):
    """FIFO update of the visual memory bank (eq. 7): for each known positive (i, c), the tokens
    of the k highest energies of region c (features (B, T, E) L2-normalised, energies (B, C, T));
    entries in batch order, the oldest overwritten; a class with more than l new entries keeps
    the last l. Returns the new (bank, ptr, count)."""
    bank, ptr, count = state[BANK], state[BANK_PTR], state[BANK_COUNT]
    c, length, _ = bank.shape
    k = min(k, energies.shape[-1])
    _, top = jax.lax.top_k(energies, k)  # (B, C, k)
    new = jnp.take_along_axis(features[:, None], top[..., None], axis=2)  # (B, C, k, E)
    positive = (labels == 1).astype(jnp.int32)  # (B, C)
    rank = jnp.cumsum(positive, axis=0) - positive  # positives of c before image i
    total = k * jnp.sum(positive, axis=0)  # (C,) new entries per class
    position = rank[..., None] * k + jnp.arange(k)  # (B, C, k) order within the class
    keep = (positive[..., None] == 1) & (position >= total[None, :, None] - length)
    slot = (ptr[None, :, None] + position) % length
    slot = jnp.where(keep, slot, length)  # dropped
    cls = jnp.broadcast_to(jnp.arange(c)[None, :, None], slot.shape)
    bank = bank.at[cls, slot].set(new.astype(bank.dtype), mode="drop")
    return bank, (ptr + total) % length, jnp.minimum(count + total, length)


def _ema_thresholds(theta, theta_set, scores, labels, ema, ready):
    """Eq. 11 for one prototype: (theta (2, C), set (2, C)) updated with the batch means of
    `scores` (B, C) over the known positives (row 0) and negatives (row 1), for the classes whose
    prototype exists (`ready`, (C,) or ())."""
    masks = jnp.stack([labels == 1, labels == -1]).astype(jnp.float32)  # (2, B, C)
    n = masks.sum(axis=1)
    mean = jnp.sum(masks * scores[None], axis=1) / jnp.maximum(n, 1.0)
    seen = (n > 0) & ready
    updated = jnp.where(theta_set, ema * theta + (1.0 - ema) * mean, mean)
    return jnp.where(seen, updated, theta), theta_set | seen


def _vote(scores, theta, theta_set, margin=0.0):
    """Eq. 10: +1 above theta+, -1 below theta-, 0 if both, neither, or thresholds unset. With
    `margin` m > 0 [I] the positive vote needs s >= theta+ + m max(theta+ - theta-, 0) (no margin
    while theta- is unset)."""
    gap = jnp.where(theta_set[1], jnp.maximum(theta[0] - theta[1], 0.0), 0.0)
    up = (scores >= theta[0] + margin * gap) & theta_set[0]
    down = (scores <= theta[1]) & theta_set[1]
    return jnp.where(up & ~down, 1, jnp.where(down & ~up, -1, 0)).astype(jnp.int8)


def pseudo_labels(mc, state: dict, region: jax.Array, labels: jax.Array):
    """Eq. 8-12: (pseudo labels (B, C) in {-1, 0, 1} for the unknown entries, new thresholds,
    new set flags). `region`: f^r (B, C, E), L2-normalised, stop-gradient."""
    theta, theta_set = state[THETA], state[THETA_SET]
    valid = jnp.arange(state[BANK].shape[1])[None, :] < state[BANK_COUNT][:, None]  # (C, l)
    sims = jnp.einsum("bce,cle->bcl", region, state[BANK])
    visual = jnp.sum(sims * valid, axis=-1) / jnp.maximum(valid.sum(-1), 1)  # eq. 8-9, (B, C)
    text = jnp.einsum("bce,ce->bc", region, state[TEXT_PROTO])
    tv, sv = _ema_thresholds(theta[:2], theta_set[:2], visual, labels, mc.ema,
                             state[BANK_COUNT] > 0)  # fmt: skip
    tt, st = _ema_thresholds(theta[2:], theta_set[2:], text, labels, mc.ema,
                             state[HAS_TEXT_PROTO])  # fmt: skip
    margin = mc.positive_margin
    vote_v, vote_t = _vote(visual, tv, sv, margin), _vote(text, tt, st, margin)
    if mc.use_visual_prototype and mc.use_text_prototype:
        pseudo = jnp.where(vote_v == vote_t, vote_v, 0)  # eq. 12
    elif mc.use_visual_prototype:
        pseudo = vote_v
    else:
        pseudo = vote_t
    pseudo = jnp.where(labels == 0, pseudo, 0).astype(jnp.int8)
    return pseudo, jnp.concatenate([tv, tt]), jnp.concatenate([sv, st])


def kd_loss(logits_r: jax.Array, logits_q: jax.Array) -> jax.Array:
    """Eq. 6: KL(softmax(r) || softmax(q)) over the classes, teacher stop-gradient, batch mean."""
    log_r = jax.nn.log_softmax(jax.lax.stop_gradient(logits_r).astype(jnp.float32), axis=-1)
    log_q = jax.nn.log_softmax(logits_q.astype(jnp.float32), axis=-1)
    return jnp.mean(jnp.sum(jnp.exp(log_r) * (log_r - log_q), axis=-1))


def nce_loss(anchors, projected, bank_projected, bank_valid, labels, tau):
    """Eq. 13 (module docstring). anchors (C, E), projected (B, C, E), bank_projected (C, l, E),
    all L2-normalised; bank_valid (C, l); labels (B, C). Returns a scalar."""
    positive = labels == 1  # (B, C)
    # a_c . z_{b,c'} / tau for every anchor c and batch region (b, c'): (C, B, C')
    logits = jnp.einsum("ae,bce->abc", anchors, projected) / tau
    c = anchors.shape[0]
    other = ~jnp.eye(c, dtype=bool)[:, None, :]  # c' != c
    neg_mask = positive[None] & other
    lse_neg = jax.nn.logsumexp(jnp.where(neg_mask, logits, -jnp.inf), axis=(1, 2))  # (C,)
    pos_batch = jnp.einsum("bce,ce->cb", projected, anchors) / tau  # (C, B)
    pos_bank = jnp.einsum("cle,ce->cl", bank_projected, anchors) / tau  # (C, l)

    def terms(pos_logits):
        return jnp.logaddexp(pos_logits, lse_neg[:, None]) - pos_logits  # -log(e^p / (e^p + N))

    mask_batch, mask_bank = positive.T, bank_valid
    total = jnp.sum(jnp.where(mask_batch, terms(pos_batch), 0.0), axis=1) + jnp.sum(
        jnp.where(mask_bank, terms(pos_bank), 0.0), axis=1
    )
    count = mask_batch.sum(axis=1) + mask_bank.sum(axis=1)
    has = count > 0
    per_anchor = total / jnp.maximum(count, 1)
    return jnp.sum(jnp.where(has, per_anchor, 0.0)) / jnp.maximum(has.sum(), 1)


def _asl(mc, pos, neg, targets):
    return losses.sigmoid_difference_asl(
        neg, pos, targets.astype(jnp.float32), gamma_pos=mc.gamma_pos, gamma_neg=mc.gamma_neg,
        clip=mc.asl_clip, eps=1e-8,
    )[0]  # fmt: skip


def cls_loss(mc, pos, neg, labels, pseudo):
    """L_cls of one branch (eq. 14) with weighted pseudo labels (module docstring): ASL(labels) +
    `pseudo_weight` ASL(pseudo), `pseudo` (B, C) in {-1, 0, 1}, non-zero on unknown entries only
    (disjoint from the known ones). ASL's terms are finite (log clamped at eps), so a weight 0
    adds exactly 0 to the loss and its gradient."""
    return _asl(mc, pos, neg, labels) + mc.pseudo_weight * _asl(mc, pos, neg, pseudo)


def loss_fn(model, config, params, batch_stats, method_state, batch, rng, clock):
    mc = config.method_config
    labels = batch["labels"]
    (_, aux), batch_stats = base.apply_train(
        model, params, batch_stats, batch["image"], rngs={"dropout": rng}
    )
    stage2 = common.active_from(clock, mc.stage2_epoch)
    state = dict(method_state)
    metrics = {}
    pseudo = jnp.zeros_like(labels)
    region = jax.lax.stop_gradient(l2_normalize(aux["region_features"]))
    if mc.use_mmcp:
        pseudo, theta, theta_set = pseudo_labels(mc, state, region, labels)
        on = stage2 & state[HAS_TEXT_PROTO] if mc.use_text_prototype else stage2
        pseudo = jnp.where(on, pseudo, 0).astype(jnp.int8)
        state[THETA], state[THETA_SET] = theta, theta_set
        metrics["pseudo_positive"] = jnp.sum(pseudo == 1)
        metrics["pseudo_negative"] = jnp.sum(pseudo == -1)

    def l_cls(pos, neg):
        if mc.use_mmcp:
            return cls_loss(mc, pos, neg, labels, pseudo)
        return _asl(mc, pos, neg, labels)

    loss_r = l_cls(aux["pos_logits"], aux["neg_logits"])
    loss = loss_r
    if mc.use_carl:
        loss_q = l_cls(aux["q_pos_logits"], aux["q_neg_logits"])
        loss = loss_q + mc.alpha * loss_r
        metrics["asl_q"] = loss_q
    metrics["asl_r"] = loss_r
    if mc.use_kd:
        kd = kd_loss(aux["pos_logits"] - aux["neg_logits"], aux["logits_q"])
        loss = loss + mc.beta * kd
        metrics["kd"] = kd
    valid = jnp.arange(mc.bank_length)[None, :] < state[BANK_COUNT][:, None]
    if mc.use_mmcl:
        project = lambda x: model.apply(
            {"params": base.model_params(params)}, x, method=trm_ml.TRMML.project
        )
        nce = nce_loss(aux["text_pos"], aux["projected"], project(state[BANK]), valid, labels,
                       mc.nce_temperature)  # fmt: skip
        loss = loss + mc.gamma * jnp.where(stage2, nce, 0.0)
        metrics["nce"] = nce
    if mc.use_carl and (mc.use_mmcp or mc.use_mmcl):
        tokens = jax.lax.stop_gradient(l2_normalize(aux["tokens"]))
        energies = jax.lax.stop_gradient(aux["energies"])
        state[BANK], state[BANK_PTR], state[BANK_COUNT] = push_bank(
            state, tokens, energies, labels, mc.top_k
        )
    diagnostics = {"pseudo": (jnp.where(labels == 0, pseudo, labels), stage2)}
    return loss, base.StepOutput({"asl": loss_r, **metrics}, batch_stats, state, diagnostics)


def refresh(config, model, params, batch_stats, method_state, epoch, batches):
    """At `stage2_epoch`: freeze the current g^+ as the text prototypes (once)."""
    del batches
    mc = config.method_config
    if not (mc.use_mmcp and mc.use_text_prototype) or epoch < mc.stage2_epoch:
        return method_state
    if bool(method_state[HAS_TEXT_PROTO]):
        return method_state
    variables = {"params": base.model_params(params), "batch_stats": batch_stats}
    g_pos, _ = model.apply(variables, method=lambda m: m.prompts.text_features())
    return {**method_state, TEXT_PROTO: g_pos.astype(jnp.float32),
            HAS_TEXT_PROTO: jnp.ones((), bool)}  # fmt: skip


def diagnostics(config, arrays: dict, labels: jax.Array, full_labels: jax.Array) -> dict:
    """`Method.diagnostics` (module docstring): `common.pseudo_label_diagnostics`
    ('pseudo_precision', 'pseudo_recall') and, as '<name>/num' and '<name>/den' counts over the
    stage-2 steps,

      pseudo_negative_precision = #(unknown, pseudo -1, full 0) / #(unknown, pseudo -1)
      pseudo_negative_recall    = #(unknown, pseudo -1, full 0) / #(unknown, full 0)
      positive_targets_pseudo   = #(unknown, pseudo +1) / #(target +1)
      positive_targets_wrong    = #(target +1, full 0) / #(target +1)

    where the targets are the partial labels completed with the pseudo labels.

    Args:
      arrays: {'pseudo': (targets (B, C) in {-1, 0, 1}, stage 2 () bool)}, `loss_fn`'s
        `StepOutput.diagnostics`.
      labels: (B, C) int8 partial labels; full_labels: (B, C) {0, 1} hidden ground truth.
    """
    out = common.pseudo_label_diagnostics(config, arrays, labels, full_labels)
    targets, active = arrays["pseudo"]
    unknown, truth = labels == 0, full_labels > 0
    positive = targets == 1
    on = jnp.asarray(active).astype(jnp.float32)

    def count(mask):
        return jnp.sum(mask, dtype=jnp.int32).astype(jnp.float32) * on

    neg_correct = count(unknown & (targets == -1) & ~truth)
    out.update({
        "pseudo_negative_precision/num": neg_correct,
        "pseudo_negative_precision/den": count(unknown & (targets == -1)),
        "pseudo_negative_recall/num": neg_correct,
        "pseudo_negative_recall/den": count(unknown & ~truth),
        "positive_targets_pseudo/num": count(unknown & positive),
        "positive_targets_pseudo/den": count(positive),
        "positive_targets_wrong/num": count(positive & ~truth),
        "positive_targets_wrong/den": count(positive),
    })  # fmt: skip
    return out


def predict_query_logits(model, config, params, batch_stats, method_state, images) -> jax.Array:
    """The query-path logits p^q (B, C) (eq. 5, f^q), a diagnostic read-out beside `predict_fn`'s
    region path (the method's inference [P]); same signature as `predict_fn`. Needs
    `use_carl` (the baseline has no query path)."""
    del method_state
    if not config.method_config.use_carl:
        raise ValueError("predict_query_logits: config.method_config.use_carl=False has no "
                         "query path.")  # fmt: skip
    _, aux = base.apply_eval(model, params, batch_stats, images)
    return aux["logits_q"]


METHOD = base.Method(
    name="trm_ml",
    default_config=default_config,
    make_model=make_model,
    loss_fn=loss_fn,
    predict_fn=base.predict_logits,
    validate=validate,
    init_state=init_state,
    param_groups=dualcoop.frozen_towers,
    normalize_images=dualcoop.clip_normalize,
    load_pretrained=dualcoop.load_clip,
    refresh=refresh,
    diagnostics=diagnostics,
)
