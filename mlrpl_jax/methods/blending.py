"""`sarb` and `dsrb`: semantic-aware representation blending on the SSGRL core.

SARB (AAAI 2022) and its journal version DSRB (ESWA 2024; paper ``shared/papers/001_*``, reference
behaviour ``shared/reference/hcp_mlr_pl_notes.md`` §8, §10). Both train the SSGRL core with the
partial BCE, the instance contrastive loss on the category features v, and, from epoch
``blend_epoch`` (5), two extra classification branches on blended category features that go
through the same GNN, output layer and classifier (`ops.blending`; vector level, exact, see there):

* IPRB (SARB's ILRB, eq. 6-9): each unknown class of an image that is a known positive of its
  partner (the batch reversed) is blended with the partner's feature, v^ = alpha v + (1 - alpha)
  v_partner, with target 1 - alpha;
* PPRB (eq. 10-13): ``top_k`` unknown classes per image (SARB: 1) are blended with a prototype,
  v~ = beta v + (1 - beta) p, with target 1 - beta. Prototypes (``prototypes``):
  - 'location' (DSRB): the pooled location-sensitive prototype of the class in one of the three
    quadrants other than that of the class's attention peak in this image (notes §10.3-10.4);
  - 'kmeans' (SARB's PLRB, DSRB's "PPRB w/ RV" ablation): K = 10 K-means centres per class, one
    centre index k drawn per step for all classes and images (notes §8.3-8.4).
  Prototypes are recomputed at the start of epochs 5, 10, 15 (`refresh`, one inference pass over
  the training set) and held in `method_state` (so, unlike the reference, checkpointed).

Loss (notes §8.5, §10.5):
  L = BCE(s, t) + w(e) 0.05 L_contrastive(v, t)
      + [e >= 5] (iprb_weight BCE(s^, y^) + pprb_weight BCE(s~, y~)),
with the epoch-0 ramp w and soft-target partial BCE (targets 1 - alpha > 0 count as positives).

alpha and beta (``learn_coefficients``): learnable, per class (the vectors A and B of DSRB eq. 8 and
12; ``per_class_coefficients=False`` gives the single scalars of the released SARB/DSRB code),
initialised at 0.5, with gradients through the blended features and the targets; their optimiser
starts at their first gradient (epoch 5, a delayed `ParamGroup`, as PyTorch's Adam skips them before)
and they are clamped to [0, 1] after every update (the group's `project`; the reference clamps in place
before each blended forward, the same sequence of values). Only the enabled branches' coefficients
exist. Caveat of the per-class form: with Adam and coupled L2 (the recipe), the coefficient of a
class that is rarely blended mostly sees the weight-decay gradient, which Adam normalises to steps
of about the learning rate towards 0; the logged alpha/beta min, mean and max show this.

Ablations (DSRB Table 2): ``use_pprb=False`` (IPRB only), ``use_iprb=False`` (PPRB only),
``learn_coefficients=False`` (fixed alpha / beta), ``use_iprb=False, prototypes='kmeans'`` on
`dsrb` ("PPRB w/ RV": PPRB at the representation-vector level; with IPRB kept it is "Ours w/
RV-Mixup", i.e. SARB), and
the mixup baselines ``use_iprb=use_pprb=False, contrastive_weight=0, mixup='image'|'feature_map'``
(SSGRL w/ IP-Mixup / FM-Mixup: the batch mixed with its reverse, lam ~ Beta(mixup_alpha,
mixup_alpha), in pixel space or in backbone feature-map space before the head, trained from
``blend_epoch`` with the soft partial BCE on the mixed probabilities of the entries known in both
images (`ops.blending.mixup`) as an extra branch; the paper gives neither the mixing distribution
nor the label rule).

Released-code notes: DSRB's release does not run; its intended reading (notes §10.1) is
implemented, with both branch weights 1.0 (undefined in the release). Deviation: K-means clusters
at most ``prototype_max_per_class`` known-positive features per class (the first ones of the
shuffled pass, i.e. a uniform sample); the reference clusters all of them.
"""

import jax
import jax.numpy as jnp
import ml_collections

from mlrpl_jax import losses
from mlrpl_jax.losses import contrastive
from mlrpl_jax.methods import base, common, prototypes
from mlrpl_jax.methods import ssgrl as ssgrl_method
from mlrpl_jax.models import ssgrl
from mlrpl_jax.ops import blending

COEFFICIENTS = ("alpha", "beta")


def blend_keys(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The blending keys shared by `sarb`, `dsrb` and `hst_fb`."""
    c.use_iprb = True  # Instance-perspective blending (SARB's ILRB).
    c.use_pprb = True  # Prototype-perspective blending (SARB's PLRB).
    c.iprb_weight = 1.0  # Weight of BCE(s^, y^) (reference: 1, implicit).
    c.pprb_weight = 1.0  # Weight of BCE(s~, y~) (reference: 1, implicit).
    c.learn_coefficients = True  # alpha, beta learnable (init below) | False: fixed at the values.
    c.alpha = 0.5  # IPRB coefficient alpha (initial or fixed value).
    c.beta = 0.5  # PPRB coefficient beta (initial or fixed value).
    c.per_class_coefficients = True  # alpha, beta per class (DSRB eq. 8, 12) | one scalar (code).
    c.top_k = 1  # PPRB: unknown classes blended per image (DSRB topK; SARB 1).
    return c


def kmeans_keys(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """K-means prototype keys (the reference's sklearn KMeans defaults; SARB script K = 10)."""
    c.num_prototypes = 10  # K: K-means centres per class.
    c.prototype_max_per_class = 2048  # Known-positive features kept per class for K-means.
    c.kmeans_n_init = 10  # K-means restarts (the reference's sklearn default of its era).
    c.kmeans_max_iters = 300  # K-means Lloyd iterations at most (tol 1e-4, as sklearn).
    return c


def _config(prototype_kind: str, top_k: int) -> ml_collections.ConfigDict:
    c = blend_keys(kmeans_keys(ssgrl_method.default_config()))
    c.prototypes = prototype_kind  # 'location' (DSRB PPRB) | 'kmeans' (SARB PLRB, "PPRB w/ RV").
    c.top_k = top_k
    c.blend_epoch = 5  # mixupEpoch: blended branches and prototypes from this epoch on.
    c.prototype_every_epochs = 5  # recomputePrototypeInterval: epochs 5, 10, 15.
    c.recompute_prototypes = True  # False: prototypes only at blend_epoch.
    c.location_cap = 100  # DSRB: maps kept per (class, quadrant) bucket (first met, as coded).
    c.contrastive_weight = 0.05  # Weight of the instance contrastive loss (ramped in epoch 0).
    c.mixup = "none"  # Baselines: 'image' (IP-Mixup) | 'feature_map' (FM-Mixup) | 'none'.
    c.mixup_alpha = 1.0  # lam ~ Beta(mixup_alpha, mixup_alpha) (not given by the paper).
    c.mixup_weight = 1.0  # Weight of the mixup branch.
    return c


def sarb_config() -> ml_collections.ConfigDict:
    """`sarb` keys (defaults: the authors' SARB script)."""
    return _config("kmeans", 1)


def dsrb_config() -> ml_collections.ConfigDict:
    """`dsrb` keys (defaults: the authors' DSRB script, notes §10)."""
    return _config("location", 1)


def check(mc) -> None:
    """Errors that name a bad key and its allowed values."""
    common.check_choices(
        mc, {"prototypes": ("location", "kmeans"), "mixup": ("none", "image", "feature_map")}
    )
    for key in ("alpha", "beta"):
        if not 0.0 <= mc[key] <= 1.0:
            raise ValueError(f"config.method_config.{key}={mc[key]}: must lie in [0, 1].")


def validate(config: base.Config) -> None:
    """`Method.validate`: `check` of the method's keys."""
    check(config.method_config)


def init_coefficients(mc, num_classes: int) -> dict:
    """The method's own parameters alpha (IPRB) and beta (PPRB) of the enabled branches, when
    learnable (none when fixed, so an unused coefficient is not moved by weight decay)."""
    if not mc.learn_coefficients:
        return {}
    shape = (num_classes,) if mc.per_class_coefficients else ()
    used = (("alpha", mc.use_iprb), ("beta", mc.use_pprb))
    return {name: jnp.full(shape, mc[name], jnp.float32) for name, on in used if on}


def coefficients(mc, params) -> tuple[jax.Array, jax.Array]:
    """(alpha, beta): the learned parameters, or the fixed config values."""
    learned = base.method_params(params) if mc.learn_coefficients else {}
    alpha = learned.get("alpha", jnp.float32(mc.alpha))
    return alpha, learned.get("beta", jnp.float32(mc.beta))


def init_params(config: base.Config, data_info: base.DataInfo) -> dict:
    """alpha, beta (`init_coefficients`)."""
    return init_coefficients(config.method_config, data_info.num_classes)


def param_groups(config: base.Config) -> tuple[base.ParamGroup, ...]:
    """SSGRL's groups + alpha and beta: out of the graph (no Adam step, no L2) until blending
    starts, as in PyTorch, and clamped to [0, 1] after every update (the reference's in-place clamp
    before each blended forward)."""
    own = base.METHOD_PARAMS
    return ssgrl_method.param_groups(config) + tuple(
        base.ParamGroup((own, name), delayed=True, project=common.clip_unit)
        for name in COEFFICIENTS
    )


def init_state(config: base.Config, data_info: base.DataInfo, rng: jax.Array) -> dict:
    """Zero prototypes until the first refresh: (C, K, D) K-means centres or (C, 4, D) pooled
    location-sensitive prototypes, with their point counts."""
    del rng
    mc, c, d = config.method_config, data_info.num_classes, config.model.feature_dim
    if mc.prototypes == "kmeans":
        shape, counts = (c, mc.num_prototypes, d), (c,)
    else:
        shape, counts = (c, blending.NUM_QUADRANTS, d), (c, blending.NUM_QUADRANTS)
    return {
        "prototypes": jnp.zeros(shape, jnp.float32),  # K-means centres | pooled pi[c, q]
        "prototype_points": jnp.zeros(counts, jnp.int32),
    }


def refresh(config, model, params, batch_stats, method_state, epoch, batches):
    """Prototypes from one pass over the training set at epochs 5, 10, 15 (notes §8.4)."""
    mc = config.method_config
    due = common.prototypes_due(
        epoch, mc.blend_epoch, mc.prototype_every_epochs, mc.recompute_prototypes
    )
    if not mc.use_pprb or not due:
        return method_state
    if mc.prototypes == "kmeans":
        return prototypes.kmeans_refresh(
            config, model, params, batch_stats, method_state, epoch, batches
        )
    c, _, d = method_state["prototypes"].shape
    new, counts = prototypes.location_prototypes(
        model, params, batch_stats, batches, num_classes=c, feature_dim=d, cap=mc.location_cap
    )
    return dict(method_state, prototypes=new, prototype_points=counts)


def drawn_prototypes(kind: str, method_state, aux, key) -> jax.Array:
    """(B, C, D) or (C, D): the prototype each (b, c) would be blended with.

    'kmeans': centre k ~ U{0..K-1}, one draw per step shared by every class and image (notes §8.3).
    'location': pi[c, q'] with q' one of the three quadrants other than that of the class's
    attention peak in the image (notes §10.3).
    """
    protos = method_state["prototypes"]
    if kind == "kmeans":
        k = jax.random.randint(key, (), 0, protos.shape[1])
        return protos[:, k]
    q = blending.attention_quadrants(aux["attention"], aux["feature_sum"])
    q_other = blending.other_quadrants(key, q)
    return protos[jnp.arange(protos.shape[0])[None], q_other]


def blend_loss(model, mc, params, aux, labels, method_state, key, kind: str, active):
    """Sum of the weighted blended-branch BCEs (IPRB, PPRB) and their metrics; `kind` is the
    prototype kind in ``method_state['prototypes']`` ('kmeans' | 'location').

    Both branches go through the classifier (GNN, output layer, classifier) in one call on the
    concatenated (2B, C, D) features; their BCE uses the method's ``bce_margin`` like the main term.
    The branches run only when `active` (a `lax.cond`: before the blending epoch the step pays
    nothing for them, as in the reference; the loss and the branch metrics are then 0).
    """
    v = aux["category_features"]
    alpha, beta = coefficients(mc, params)
    metrics = {}
    for name, value, on in (("alpha", alpha, mc.use_iprb), ("beta", beta, mc.use_pprb)):
        if on:
            metrics.update({f"{name}_mean": jnp.mean(value), f"{name}_min": jnp.min(value),
                            f"{name}_max": jnp.max(value)})  # fmt: skip
    if mc.use_iprb:
        metrics["iprb_blended_fraction"] = jnp.mean(blending.partner_mask(labels))
    if not (mc.use_iprb or mc.use_pprb):
        return jnp.float32(0.0), metrics

    def branches():
        feats, targets, weights, names = [], [], [], []
        if mc.use_iprb:
            v1, y1 = blending.instance_blend(v, labels, alpha)
            feats.append(v1), targets.append(y1), weights.append(mc.iprb_weight)
            names.append("iprb")
        if mc.use_pprb:
            k_select, k_proto = jax.random.split(key)
            selected = blending.select_unknown_classes(k_select, labels, mc.top_k)
            p = drawn_prototypes(kind, method_state, aux, k_proto)
            v2, y2 = blending.prototype_blend(v, labels, beta, p, selected)
            feats.append(v2), targets.append(y2), weights.append(mc.pprb_weight)
            names.append("pprb")
        logits = model.apply(
            {"params": base.model_params(params)},
            jnp.concatenate(feats),
            method=ssgrl.SSGRL.classify,
        )
        total, terms = jnp.float32(0.0), {}
        for i, (y, w, name) in enumerate(zip(targets, weights, names, strict=True)):
            b = y.shape[0]
            term, _ = losses.partial_bce(logits[i * b : (i + 1) * b], y, margin=mc.bce_margin)
            terms[f"{name}_bce"] = term
            total = total + w * term
        return total, terms

    def skipped():
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(branches))

    total, terms = jax.lax.cond(active, branches, skipped)
    return total, {**metrics, **terms}


def _with_backbone_map(module, images, train):
    """The model's (logits, aux) and the backbone map f they came from."""
    f = module.backbone(images, train=train)
    aux = module.head.features(f, train)
    return (module.classify(aux["category_features"]), aux), f


def _head_logits(module, f, train):
    """Logits of a backbone map f."""
    return module.classify(module.head.features(f, train)["category_features"])


def forward(model, mc, params, batch_stats, images, labels, key, active):
    """(logits, aux), BN statistics, and the mixup branch's loss (0 without mixup).

    The mixup branch (the batch mixed with its reverse, in pixel space or in backbone feature-map
    space) runs only when `active` (a `lax.cond`) and leaves the BatchNorm running statistics to
    the clean pass (in training mode the mixed pass normalises with its own batch statistics).
    """
    if mc.mixup == "none":
        out, batch_stats = base.apply_train(model, params, batch_stats, images)
        return out, batch_stats, jnp.float32(0.0)
    lam = jax.random.beta(key, mc.mixup_alpha, mc.mixup_alpha)
    x_mix, y_mix = blending.mixup(images, labels, lam)
    if mc.mixup == "image":
        out, new_stats = base.apply_train(model, params, batch_stats, images)

        def mixed_logits():
            return base.apply_train(model, params, batch_stats, x_mix)[0][0]
    else:
        (out, f), new_stats = base.apply_train(
            model, params, batch_stats, images, method=_with_backbone_map
        )
        f_mix = lam * f + (1 - lam) * f[::-1]

        def mixed_logits():
            return base.apply_train(model, params, batch_stats, f_mix, method=_head_logits)[0]

    def mix_loss():
        return losses.partial_bce(mixed_logits(), y_mix, margin=mc.bce_margin)[0]

    return out, new_stats, jax.lax.cond(active, mix_loss, lambda: jnp.float32(0.0))


def loss_fn(model, config, params, batch_stats, method_state, batch, rng, clock):
    """The SARB / DSRB loss (module docstring). See `base.Method.loss_fn`."""
    mc = config.method_config
    k_con, k_blend, k_mix = jax.random.split(rng, 3)
    t = batch["labels"]
    active = common.active_from(clock, mc.blend_epoch)
    (logits, aux), batch_stats, mix_loss = forward(
        model, mc, params, batch_stats, batch["image"], t, k_mix, active
    )
    on = active.astype(jnp.float32)
    ramp = common.epoch0_ramp(clock)
    loss, metrics = ssgrl_method.supervised_loss(config, logits, aux, t)
    l_con, _ = contrastive.instance_contrastive_loss(aux["category_features"], t, k_con)
    l_blend, blend_metrics = blend_loss(
        model, mc, params, aux, t, method_state, k_blend, mc.prototypes, active
    )
    loss = loss + ramp * mc.contrastive_weight * l_con + l_blend + on * mc.mixup_weight * mix_loss
    metrics.update(contrastive=l_con, mixup_bce=mix_loss, **blend_metrics)
    return loss, base.StepOutput(metrics, batch_stats, method_state)


def _method(name, default_config):
    return base.Method(
        name=name,
        default_config=default_config,
        make_model=ssgrl_method.make_model,
        loss_fn=loss_fn,
        predict_fn=base.predict_logits,
        validate=validate,
        init_state=init_state,
        init_params=init_params,
        param_groups=param_groups,
        refresh=refresh,
    )


SARB = _method("sarb", sarb_config)
DSRB = _method("dsrb", dsrb_config)
