"""`hst`: prototype schedule and refresh, margins out of the graph until epoch 5, loss terms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import fake_data_info, init_params, normalize, refresh_on
from test_train_step import NUM_CLASSES, fake_batch, tiny_config

from mlrpl_jax import methods
from mlrpl_jax.methods import base, common, hst
from mlrpl_jax.models import ssgrl
from mlrpl_jax.ops import kmeans


def _due(mc, epoch):
    return common.prototypes_due(
        epoch, mc.generate_label_epoch, mc.prototype_every_epochs, mc.recompute_prototypes
    )


def test_prototype_schedule_is_the_reference_one():
    mc = methods.get("hst").default_config()
    assert [e for e in range(20) if _due(mc, e)] == [5, 10, 15]
    mc.recompute_prototypes = False
    assert [e for e in range(20) if _due(mc, e)] == [5]


@pytest.fixture(scope="module")
def tiny():
    config = tiny_config(frozen_stages=4, method="hst")
    mc = config.method_config
    mc.ist_hidden_dim, mc.ist_pair_dim = 8, 12
    mc.num_prototypes, mc.prototype_max_per_class, mc.kmeans_n_init = 2, 16, 2
    info = fake_data_info(NUM_CLASSES)
    model = hst.make_model(config, info)
    batch = fake_batch(batch_size=8)
    variables = init_params(hst.METHOD, config, info, model, normalize(batch["image"]))
    method_state = hst.init_state(config, info, None)
    method_state["prototypes"] = jax.random.normal(
        jax.random.PRNGKey(1), method_state["prototypes"].shape
    )
    return config, model, variables, method_state, batch


@pytest.mark.slow
@pytest.mark.mutation
def test_margins_get_gradients_only_from_the_activation_epoch(tiny):
    """Before epoch 5 every term that involves the margins is multiplied by 0: their gradient is
    exactly 0, so `start_on_first_gradient` keeps them out of Adam (no step, no L2) as PyTorch does."""
    config, model, variables, method_state, batch = tiny
    batch = dict(batch, image=normalize(batch["image"]))

    def grads(epoch):
        clock = base.Clock(jnp.int32(0), jnp.int32(epoch), jnp.float32(0.5))

        def loss(params):
            return hst.loss_fn(
                model, config, params, variables["batch_stats"], method_state, batch,
                jax.random.PRNGKey(2), clock,
            )[0]  # fmt: skip

        return jax.jit(jax.grad(loss))(variables["params"])

    before, after = grads(3), grads(6)
    assert float(before["method"]["intra_margin"]) == 0.0
    assert float(before["method"]["inter_margin"]) == 0.0
    assert (
        float(after["method"]["intra_margin"]) != 0.0
        or float(after["method"]["inter_margin"]) != 0.0
    )
    assert base.ParamGroup(("method",), delayed=True) in hst.param_groups(config)


@pytest.mark.slow
@pytest.mark.mutation
def test_refresh_clusters_the_known_positive_features_of_one_pass(tiny):
    config, model, variables, method_state, _ = tiny
    batches = [fake_batch(batch_size=8, seed=s) for s in range(3)]
    assert refresh_on(hst, config, model, variables, method_state, batches, 4) is method_state
    new = refresh_on(hst, config, model, variables, method_state, batches, 5)
    # The same clustering, written directly: features of every known positive, then K-means.
    feats = jnp.concatenate([
        base.apply_eval(model, variables["params"], variables["batch_stats"],
                        normalize(b["image"]), method=ssgrl.SSGRL.features)["category_features"]
        for b in batches
    ])  # fmt: skip
    labels = np.concatenate([b["labels"] for b in batches])
    points, mask = kmeans.pad_by_class(feats, labels == 1, 16)
    seed = int(np.random.SeedSequence([config.seed, 5, 0xC57]).generate_state(1)[0])
    expected = kmeans.batched_kmeans(points, mask, 2, jax.random.PRNGKey(seed), n_init=2)
    np.testing.assert_allclose(new["prototypes"], expected.centroids, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(new["prototype_points"], np.minimum((labels == 1).sum(0), 16))


def test_fixed_margins_have_no_parameters(tiny):
    config = tiny[0].copy_and_resolve_references()
    config.method_config.learn_margins = False
    assert hst.init_params(config, fake_data_info(NUM_CLASSES)) == {}


def test_instance_level_cst_scores_against_the_bank(tiny):
    """Ablation "CST w/ IL" (HST Table 5): the cross-image soft scores are the mean cosine to SST's
    FIFO bank (updated with this batch first), there are no prototypes, no refresh and no prototype
    loss, and the updated bank is the new method state."""
    from mlrpl_jax import losses
    from mlrpl_jax.ops import pseudo_labels as pl

    config = tiny[0].copy_and_resolve_references()
    mc = config.method_config
    mc.cross_image_source, mc.bank_size = "instances", 4
    _, _, variables, _, batch = tiny
    info = fake_data_info(NUM_CLASSES)
    model = hst.make_model(config, info)
    state = hst.init_state(config, info, None)
    d = config.model.feature_dim
    assert set(state) == {"bank"} and state["bank"].shape == (NUM_CLASSES, 4, d)
    state["bank"] = jax.random.normal(jax.random.PRNGKey(3), state["bank"].shape)
    assert hst.refresh(config, model, None, None, state, 5, None) is state  # never due
    batch = dict(batch, image=normalize(batch["image"]))
    clock = base.Clock(jnp.int32(0), jnp.int32(6), jnp.float32(0.5))
    _, out = hst.loss_fn(
        model, config, variables["params"], variables["batch_stats"], state, batch,
        jax.random.PRNGKey(2), clock,
    )  # fmt: skip

    (logits, aux), _ = base.apply_train(
        model, variables["params"], variables["batch_stats"], batch["image"]
    )
    t = batch["labels"]
    bank = pl.update_bank(state["bank"], aux["category_features"], t)
    soft = np.clip(
        np.asarray(pl.mean_cosine_to_set(aux["category_features"], bank)) - mc.inter_margin, 0, 1
    )
    y_inter = np.where((t == 0) & (soft > 0), 1, np.asarray(t))
    expected, _ = losses.partial_bce(logits, jnp.asarray(y_inter, jnp.int8))
    np.testing.assert_allclose(out.metrics["inter_bce"], expected, rtol=1e-5)
    assert float(out.metrics["prototype_contrastive"]) == 0.0
    np.testing.assert_allclose(out.method_state["bank"], bank, rtol=1e-6)


def test_each_margin_reaches_its_own_branch(tiny):
    """theta_intra thresholds the intra-image co-occurrence scores and theta_inter the cosine to
    the prototypes: with a different value in each slot, the soft scores, their DTL terms and the
    pseudo-label BCE terms are recomputed here branch by branch (a swap of the slots fails)."""
    from mlrpl_jax import losses
    from mlrpl_jax.ops import pseudo_labels as pl

    config = tiny[0].copy_and_resolve_references()
    mc = config.method_config
    mc.learn_margins, mc.intra_margin, mc.inter_margin = False, 0.15, 0.6
    _, _, variables, state, batch = tiny
    info = fake_data_info(NUM_CLASSES)
    model = hst.make_model(config, info)
    batch = dict(batch, image=normalize(batch["image"]))
    clock = base.Clock(jnp.int32(0), jnp.int32(6), jnp.float32(0.5))
    params = {k: v for k, v in variables["params"].items() if k != "method"}
    _, out = hst.loss_fn(
        model, config, params, variables["batch_stats"], state, batch,
        jax.random.PRNGKey(2), clock,
    )  # fmt: skip
    (logits, aux), _ = base.apply_train(model, params, variables["batch_stats"], batch["image"])
    t = batch["labels"]
    intra = np.asarray(pl.intra_scores(pl.cooccurrence_matrix(aux["pair_logits"], NUM_CLASSES), t))
    inter = np.asarray(pl.mean_cosine_to_set(aux["category_features"], state["prototypes"]))
    soft_intra, soft_inter = np.clip(intra - 0.15, 0, 1), np.clip(inter - 0.6, 0, 1)
    assert not np.allclose(np.clip(intra - 0.6, 0, 1), soft_intra)  # the slots are told apart
    t_np = np.asarray(t)
    for name, soft in (("intra", soft_intra), ("inter", soft_inter)):
        completed = np.where((t_np == 0) & (soft > 0), 1, t_np).astype(np.int8)
        expected_bce, _ = losses.partial_bce(logits, jnp.asarray(completed))
        expected_dtl, _ = losses.partial_bce(jnp.asarray(soft, jnp.float32), t)
        np.testing.assert_allclose(out.metrics[f"{name}_bce"], expected_bce, rtol=1e-5)
        np.testing.assert_allclose(out.metrics[f"{name}_dtl"], expected_dtl, rtol=1e-5)
    assert float(out.metrics["theta_intra"]) == pytest.approx(0.15)
    assert float(out.metrics["theta_inter"]) == pytest.approx(0.6)
