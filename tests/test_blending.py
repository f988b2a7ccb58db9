"""`sarb`, `dsrb`, `hst_fb`: how the blending ops are wired into the methods (the ops themselves are
checked against eq. 6-13 in test_blending_ops.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import fake_data_info, init_params, normalize, refresh_on
from test_train_step import NUM_CLASSES, fake_batch, tiny_config

from mlrpl_jax import losses, methods, optim
from mlrpl_jax.methods import base, blending, common, hst
from mlrpl_jax.models import ssgrl
from mlrpl_jax.ops import blending as ops


def setup(method, **method_config):
    config = tiny_config(frozen_stages=4, method=method)
    mc = config.method_config
    if method == "hst_fb":
        mc.ist_hidden_dim, mc.ist_pair_dim = 8, 12
    for key, value in method_config.items():
        mc[key] = value
    info = fake_data_info(NUM_CLASSES)
    m = methods.get(method)
    model = m.make_model(config, info)
    batch = fake_batch(batch_size=8)
    batch["image"] = normalize(batch["image"])
    variables = init_params(m, config, info, model, batch["image"])
    state = m.init_state(config, info, None)
    state["prototypes"] = jax.random.normal(jax.random.PRNGKey(1), state["prototypes"].shape)
    return config, m, model, variables, state, batch


def loss_and_aux(m, model, config, variables, state, batch, epoch, params=None):
    clock = base.Clock(jnp.int32(0), jnp.int32(epoch), jnp.float32(0.5))
    return m.loss_fn(
        model, config, variables["params"] if params is None else params,
        variables["batch_stats"], state, batch, jax.random.PRNGKey(2), clock,
    )  # fmt: skip


@pytest.mark.parametrize(
    "method",
    [  # ~15 s each on 2 cores: in the whole suite, not the fast loop
        pytest.param("sarb", marks=pytest.mark.slow),
        pytest.param("dsrb", marks=pytest.mark.slow),
        pytest.param("hst_fb", marks=pytest.mark.slow),
    ],
)
def test_alpha_and_beta_get_gradients_only_once_blending_starts(method):
    config, m, model, variables, state, batch = setup(method)

    def grads(epoch):
        def loss(params):
            return loss_and_aux(m, model, config, variables, state, batch, epoch, params)[0]

        return jax.jit(jax.grad(loss))(variables["params"])["method"]

    before, after = grads(3), grads(6)
    for name in ("alpha", "beta"):
        assert before[name].shape == (NUM_CLASSES,)
        np.testing.assert_array_equal(before[name], 0.0)
        assert np.any(np.asarray(after[name]) != 0.0), name
    groups = m.param_groups(config)
    for name in ("alpha", "beta"):
        assert groups[optim.group_of(("method", name), groups)].delayed
    # Before blending the branches are skipped (a lax.cond), not computed and multiplied by 0.
    for epoch, ran in ((3, False), (6, True)):
        metrics = loss_and_aux(m, model, config, variables, state, batch, epoch)[1].metrics
        for name in ("iprb_bce", "pprb_bce"):
            assert (float(metrics[name]) > 0.0) == ran, (name, epoch)
    jaxpr = jax.make_jaxpr(lambda: loss_and_aux(m, model, config, variables, state, batch, 3))()
    assert "cond[" in str(jaxpr)


@pytest.mark.slow
@pytest.mark.mutation
def test_blended_branches_go_through_the_same_classifier():
    """With top_k = C every class is blended with a prototype; with the 4 quadrant prototypes of a
    class equal, the DSRB branch is beta v + (1 - beta) p_c with target 1 - beta everywhere."""
    config, m, model, variables, state, batch = setup("dsrb", top_k=NUM_CLASSES)
    p = jax.random.normal(jax.random.PRNGKey(5), (NUM_CLASSES, config.model.feature_dim))
    state["prototypes"] = jnp.repeat(p[:, None], 4, axis=1)
    _, aux = loss_and_aux(m, model, config, variables, state, batch, epoch=6)
    (_, out), _ = base.apply_train(
        model, variables["params"], variables["batch_stats"], batch["image"]
    )
    v, t = out["category_features"], batch["labels"]
    alpha, beta = variables["params"]["method"]["alpha"], variables["params"]["method"]["beta"]

    def classify(features):
        return model.apply(
            {"params": base.model_params(variables["params"])}, features,
            method=ssgrl.SSGRL.classify,
        )  # fmt: skip

    v1, y1 = ops.instance_blend(v, t, alpha)
    np.testing.assert_allclose(
        aux.metrics["iprb_bce"], losses.partial_bce(classify(v1), y1)[0], rtol=1e-5
    )
    v2 = beta[:, None] * v + (1 - beta[:, None]) * p
    y2 = jnp.broadcast_to(1 - beta, t.shape)
    np.testing.assert_allclose(
        aux.metrics["pprb_bce"], losses.partial_bce(classify(v2), y2)[0], rtol=1e-5
    )


@pytest.mark.slow
@pytest.mark.mutation
def test_location_prototype_is_from_another_quadrant_than_the_peak():
    _, _, model, variables, state, batch = setup("dsrb")
    (_, aux), _ = base.apply_train(
        model, variables["params"], variables["batch_stats"], batch["image"]
    )
    protos = state["prototypes"]  # (C, 4, D), all distinct
    q = np.asarray(ops.attention_quadrants(aux["attention"], aux["feature_sum"]))
    for seed in range(3):
        drawn = np.asarray(blending.drawn_prototypes("location", state, aux, jax.random.key(seed)))
        for b in range(drawn.shape[0]):
            for c in range(NUM_CLASSES):
                match = [k for k in range(4) if np.allclose(drawn[b, c], protos[c, k])]
                assert len(match) == 1 and match[0] != q[b, c]


@pytest.mark.slow
@pytest.mark.mutation
def test_kmeans_prototype_index_is_shared_by_all_classes():
    *_, state, _ = setup("sarb")
    protos = np.asarray(state["prototypes"])  # (C, K, D)
    drawn = np.asarray(blending.drawn_prototypes("kmeans", state, {}, jax.random.key(0)))
    k = [kk for kk in range(protos.shape[1]) if np.allclose(drawn[0], protos[0, kk])]
    assert len(k) == 1
    np.testing.assert_allclose(drawn, protos[:, k[0]])


def test_coefficients_are_clamped_after_each_update():
    config, m, *_ = setup("dsrb")
    params = {
        "method": {"alpha": jnp.array([-0.2, 0.3, 1.4]), "beta": jnp.array(2.0)},
        "x": jnp.array(5.0),
    }
    out = optim.project(params, m.param_groups(config))
    np.testing.assert_allclose(out["method"]["alpha"], [0.0, 0.3, 1.0])
    assert float(out["method"]["beta"]) == 1.0 and float(out["x"]) == 5.0


@pytest.mark.parametrize("mode", ["image", "feature_map"])
@pytest.mark.slow
@pytest.mark.mutation
def test_mixup_baselines_add_a_mixed_branch(mode):
    """SSGRL w/ IP-Mixup / FM-Mixup: no blended branches and no coefficients, one branch on the
    batch mixed with its reverse (`ops.mixup` targets) from blend_epoch on, and the BatchNorm
    running statistics are those of the clean pass."""
    config, m, model, variables, state, batch = setup(
        "dsrb", use_iprb=False, use_pprb=False, mixup=mode
    )
    assert "method" not in variables["params"]
    _, aux = loss_and_aux(m, model, config, variables, state, batch, epoch=6)
    _, clean_stats = base.apply_train(
        model, variables["params"], variables["batch_stats"], batch["image"]
    )
    jax.tree.map(np.testing.assert_array_equal, aux.batch_stats, clean_stats)
    _, before = loss_and_aux(m, model, config, variables, state, batch, epoch=3)
    assert float(before.metrics["mixup_bce"]) == 0.0
    lam = jax.random.beta(jax.random.split(jax.random.PRNGKey(2), 3)[2], 1.0, 1.0)
    x, t = batch["image"], batch["labels"]
    _, y = ops.mixup(x, t, lam)
    if mode == "image":
        (logits, _), _ = base.apply_train(
            model, variables["params"], variables["batch_stats"], lam * x + (1 - lam) * x[::-1]
        )
    else:

        def fm(module, images, train):
            f = module.backbone(images, train=train)
            mixed = module.head.features(lam * f + (1 - lam) * f[::-1], train)
            return module.classify(mixed["category_features"])

        logits, _ = base.apply_train(
            model, variables["params"], variables["batch_stats"], x, method=fm
        )
    np.testing.assert_allclose(
        aux.metrics["mixup_bce"], losses.partial_bce(logits, y)[0], rtol=1e-4
    )
    assert "iprb_bce" not in aux.metrics and "pprb_bce" not in aux.metrics


def test_dsrb_refresh_buckets_the_known_positives_of_one_pass():
    config, m, model, variables, state, _ = setup("dsrb", location_cap=3)
    batches = [fake_batch(batch_size=8, seed=s) for s in range(3)]
    assert refresh_on(m, config, model, variables, state, batches, 4) is state  # not due
    new = refresh_on(m, config, model, variables, state, batches, 5)
    sums = jnp.zeros_like(state["prototypes"])
    counts = jnp.zeros(state["prototype_points"].shape, jnp.int32)
    for b in batches:
        aux = base.apply_eval(
            model, variables["params"], variables["batch_stats"], normalize(b["image"]),
            method=ssgrl.SSGRL.features,
        )  # fmt: skip
        q = ops.attention_quadrants(aux["attention"], aux["feature_sum"])
        sums, counts = ops.accumulate_location_sums(
            sums, counts, aux["category_features"], q, b["labels"] == 1, cap=3
        )
    np.testing.assert_allclose(
        new["prototypes"], ops.location_prototypes(sums, counts), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(new["prototype_points"], counts)
    assert int(counts.max()) <= 3


def test_prototype_schedule_and_errors():
    mc = methods.get("sarb").default_config()

    def due(e):
        return common.prototypes_due(
            e, mc.blend_epoch, mc.prototype_every_epochs, mc.recompute_prototypes
        )

    assert [e for e in range(20) if due(e)] == [5, 10, 15]
    mc.recompute_prototypes = False
    assert [e for e in range(20) if due(e)] == [5]
    config, *_ = setup("dsrb")
    for key, value, message in (
        ("prototypes", "mean", "prototypes='mean'"),
        ("mixup", "cutmix", "mixup='cutmix'"),
        ("alpha", 1.5, "alpha=1.5"),
    ):
        bad = config.copy_and_resolve_references()
        bad.method_config[key] = value
        with pytest.raises(ValueError, match=message):
            blending.validate(bad)
    bad = tiny_config(method="hst_fb")
    bad.method_config.cross_image_source = "instances"
    with pytest.raises(ValueError, match="use_pprb"):
        hst.fb_validate(bad)


def test_fixed_and_scalar_coefficients():
    config, m, model, variables, state, batch = setup("sarb", learn_coefficients=False)
    assert "method" not in variables["params"]
    _, aux = loss_and_aux(m, model, config, variables, state, batch, epoch=6)
    assert float(aux.metrics["alpha_mean"]) == 0.5
    config, m, model, variables, *_ = setup("sarb", per_class_coefficients=False)
    assert variables["params"]["method"]["alpha"].shape == ()
