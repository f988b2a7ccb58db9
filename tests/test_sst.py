"""`sst`: threshold schedule and the composition of its loss (notes §7.4-7.5) on a tiny model."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import fake_data_info
from test_train_step import NUM_CLASSES, fake_batch, tiny_config

from mlrpl_jax import losses, methods
from mlrpl_jax.losses import contrastive, cooccurrence
from mlrpl_jax.methods import base, common, sst
from mlrpl_jax.ops import pseudo_labels as pl


def test_threshold_schedule_decays_after_epoch_five_to_the_floor():
    mc = methods.get("sst").default_config()
    mc.inter_threshold = 0.85  # each slot its own value (the paper's are both 0.95)
    got = np.array([[float(t) for t in sst.thresholds(mc, jnp.int32(e))] for e in range(16)])
    intra = [0.95] * 6 + [0.925, 0.9, 0.875, 0.85, 0.825, 0.8, 0.775] + [0.75] * 3
    inter = [0.85] * 6 + [0.825, 0.8, 0.775] + [0.75] * 7
    np.testing.assert_allclose(got, np.stack([intra, inter], 1), atol=1e-6)
    mc.threshold_schedule = "fixed"
    assert [float(t) for t in sst.thresholds(mc, jnp.int32(12))] == pytest.approx([0.95, 0.85])


@pytest.fixture(scope="module")
def tiny():
    config = tiny_config(frozen_stages=4, method="sst")
    mc = config.method_config
    mc.ist_hidden_dim, mc.ist_pair_dim, mc.bank_size = 8, 12, 4
    mc.threshold_rule = "paper"
    # Low enough for pseudo labels to appear, and different, so that a swap of the two slots
    # changes which unknown entries each branch completes (the floor is below both).
    mc.intra_threshold, mc.inter_threshold, mc.threshold_floor = 0.45, 0.2, 0.05
    info = fake_data_info(NUM_CLASSES)
    model = sst.make_model(config, info)
    batch = fake_batch(batch_size=8)
    del batch["full_labels"]  # what a method's loss_fn sees
    batch["image"] = base.imagenet_normalize(None, batch["image"])
    variables = model.init(jax.random.PRNGKey(0), batch["image"], train=False)
    state = sst.init_state(config, info, None)
    state["bank"] = jax.random.normal(jax.random.PRNGKey(1), state["bank"].shape)
    return config, model, variables, state, batch


@pytest.mark.parametrize(("epoch", "fraction"), [(0, 0.25), (3, 0.0), (6, 0.5)])
def test_loss_is_the_documented_sum_of_terms(tiny, epoch, fraction):
    config, model, variables, state, batch = tiny
    mc = config.method_config
    clock = base.Clock(jnp.int32(0), jnp.int32(epoch), jnp.float32(fraction))
    rng = jax.random.PRNGKey(3)
    loss_fn = jax.jit(functools.partial(sst.loss_fn, model, config))
    loss, aux = loss_fn(variables["params"], variables["batch_stats"], state, batch, rng, clock)
    # The same terms, composed here from the model outputs and the pure functions.
    (logits, out), _ = base.apply_train(
        model, variables["params"], variables["batch_stats"], batch["image"]
    )
    t = batch["labels"]
    v, pair = out["category_features"], out["pair_logits"]
    bank = pl.update_bank(state["bank"], v, t)
    steps = max(epoch - mc.generate_label_epoch, 0)  # SST's decay, written out (notes §7.4)
    theta_i = max(0.05, 0.45 - mc.threshold_decay * steps)
    theta_x = max(0.05, 0.2 - mc.threshold_decay * steps)
    y_intra = pl.complete_labels(
        t, pl.indicator(pl.intra_scores(pl.cooccurrence_matrix(pair, NUM_CLASSES), t), theta_i)
    )
    y_inter = pl.complete_labels(t, pl.indicator(pl.mean_cosine_to_set(v, bank), theta_x))
    active = float(epoch >= 5)
    ramp = fraction if epoch == 0 else 1.0
    expected = (
        losses.partial_bce(logits, t)[0]
        + active * losses.partial_bce(logits, y_intra)[0]
        + active * losses.partial_bce(logits, y_inter)[0]
        + ramp * 10.0 * cooccurrence.intra_asymmetric_loss(pair, t)[0]
        + ramp * 0.05 * contrastive.instance_contrastive_loss(v, t, rng)[0]
    )
    np.testing.assert_allclose(loss, expected, rtol=2e-5)
    # jit vs op by op: float32 features differ by reassociation (seen 4e-6 on some CPUs).
    np.testing.assert_allclose(aux.method_state["bank"], bank, rtol=1e-4, atol=1e-5)
    # Pseudo labels only add positives to unknown entries; their counts are logged from epoch 5.
    assert np.all((np.asarray(y_intra) == np.asarray(t)) | (np.asarray(t) == 0))
    # ... through the diagnostics path, the only one that sees the full labels.
    assert "full_labels" not in batch
    diag = sst.METHOD.diagnostics(config, aux.diagnostics, t, jnp.ones_like(t, jnp.uint8))
    assert all(not k.startswith("pseudo") for k in aux.metrics)
    has_counts = float(diag["pseudo_intra_recall/den"]) > 0
    assert has_counts == (epoch >= 5)


def test_statistical_cooccurrence_ablation_uses_the_known_label_graph(tiny):
    """'statistics': S[b, i, j] = P(i | j) = A[j, i] for every image, A the GNN adjacency."""
    config, _, variables, _, _ = tiny
    mc = config.method_config.copy_and_resolve_references()
    mc.cooccurrence_source = "statistics"
    pair = jnp.zeros((3, NUM_CLASSES * (NUM_CLASSES - 1) // 2))
    s = common.cooccurrence_for_labels(mc.cooccurrence_source, variables["params"], pair)
    adjacency = np.asarray(variables["params"]["head"]["adjacency"])
    for b in range(3):
        np.testing.assert_array_equal(s[b], adjacency.T)
    mc.cooccurrence_source = "learned"
    np.testing.assert_allclose(
        common.cooccurrence_for_labels(mc.cooccurrence_source, variables["params"], pair),
        pl.cooccurrence_matrix(pair, NUM_CLASSES),
    )
