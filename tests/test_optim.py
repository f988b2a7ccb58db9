"""The default optimiser is torch.optim.Adam with coupled L2 and StepLR, written out by hand here."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import base
from mlrpl_jax import optim
from mlrpl_jax.methods.base import ParamGroup


def torch_adam_steps(w, grads, lrs, wd, b1=0.9, b2=0.999, eps=1e-8):
    """torch.optim.Adam(weight_decay=wd) update rule (PyTorch docs' algorithm), in numpy."""
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        g = g + wd * w  # coupled L2: added to the gradient before the moments
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w


def test_default_optimizer_is_torch_adam_with_coupled_l2_and_step_lr():
    config = base.get_config("plain")
    config.optim.learning_rate = 1e-2  # large enough for the differences to show
    steps_per_epoch = 2
    tx, schedule = optim.make_optimizer(config.optim, steps_per_epoch, total_steps=60)
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(5,)).astype(np.float64)
    grads = [rng.normal(size=(5,)) for _ in range(44)]
    # StepLR(step_size=10 epochs, gamma=0.1): epochs 0-9 at lr, 10-19 at lr/10, 20+ at lr/100.
    lrs = [1e-2 * 0.1 ** ((t // steps_per_epoch) // 10) for t in range(44)]
    np.testing.assert_allclose([float(schedule(t)) for t in range(44)], lrs, rtol=1e-6)
    params = jnp.asarray(w0, jnp.float32)
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
        params = optax.apply_updates(params, updates)
    expected = torch_adam_steps(w0, grads, lrs, wd=5e-4)
    np.testing.assert_allclose(np.asarray(params), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_other_optimizers_build_and_step(name):
    config = base.get_config("plain")
    config.optim.name = name
    config.optim.schedule = "cosine"
    config.optim.warmup_epochs = 1.0
    tx, schedule = optim.make_optimizer(config.optim, steps_per_epoch=4, total_steps=20)
    assert float(schedule(0)) == 0.0 and float(schedule(4)) == pytest.approx(1e-5)
    params = jnp.ones(3)
    updates, _ = tx.update(jnp.ones(3), tx.init(params), params)
    assert np.all(np.isfinite(np.asarray(updates)))


def test_constant_warmup_then_cosine_as_dualcoop():
    # Dassl's ConstantWarmupScheduler: 1 epoch at 1e-5, then the cosine from the peak lr.
    config = base.get_config("plain")
    config.optim.update(name="sgd", schedule="cosine", learning_rate=2e-3, warmup_epochs=1.0,
                        warmup_lr=1e-5)  # fmt: skip
    _, schedule = optim.make_optimizer(config.optim, steps_per_epoch=4, total_steps=20)
    assert [float(schedule(t)) for t in range(4)] == pytest.approx([1e-5] * 4)
    assert float(schedule(4)) == pytest.approx(2e-3)
    # The cosine then runs its own count over the whole schedule length (20 steps), as Dassl's
    # successor scheduler does: 8 steps in, 2e-3 * (1 + cos(pi 8 / 20)) / 2.
    assert float(schedule(12)) == pytest.approx(1e-3 * (1 + np.cos(np.pi * 8 / 20)), rel=1e-5)


def test_delayed_parameters_start_their_adam_at_their_first_gradient():
    """A parameter outside the graph (zero gradient) gets no update, no L2 and no Adam step until
    it first receives a gradient; then it runs torch.optim.Adam from t = 1 (notes §3)."""
    config = base.get_config("plain")
    config.optim.learning_rate = 1e-2
    groups = (ParamGroup(("margin",), delayed=True),)
    tx, schedule = optim.make_optimizer(config.optim, 2, total_steps=60, groups=groups)
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(3,)), jnp.float32), "margin": jnp.float32(1.0)}
    w_grads = [rng.normal(size=(3,)) for _ in range(30)]
    m_grads = [0.0] * 7 + list(rng.normal(size=(23,)))  # enters the graph at step 7
    lrs = [float(schedule(t)) for t in range(30)]
    state = tx.init(params)
    for t in range(30):
        grads = {"w": jnp.asarray(w_grads[t], jnp.float32), "margin": jnp.float32(m_grads[t])}
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        if t < 7:
            assert float(params["margin"]) == 1.0
    wd = config.optim.weight_decay
    w0 = np.asarray(np.random.default_rng(0).normal(size=(3,)))
    np.testing.assert_allclose(params["w"], torch_adam_steps(w0, w_grads, lrs, wd), rtol=1e-5)
    expected = torch_adam_steps(np.array([1.0]), [np.array([g]) for g in m_grads[7:]], lrs[7:], wd)
    np.testing.assert_allclose(params["margin"], expected[0], rtol=1e-5)


def test_param_groups_are_torch_adam_param_groups():
    """lr multiplier and weight-decay masks per group equal torch.optim.Adam with one param group
    per rule (ASL's 'no decay on biases and 1-D weights', ROLE's x10 table); the longest prefix
    wins; a projection applies after the update."""
    config = base.get_config("plain")
    config.optim.learning_rate = 1e-2
    groups = (
        ParamGroup((), weight_decay="matrices"),
        ParamGroup(("method", "table"), lr_mult=10.0),
        ParamGroup(("method", "alpha"), weight_decay="none", project=optim_clip),
    )
    tx, schedule = optim.make_optimizer(config.optim, 2, total_steps=60, groups=groups)
    rng = np.random.default_rng(1)
    init = {
        "w": rng.normal(size=(3, 2)), "b": rng.normal(size=(3,)),
        "method": {"table": rng.normal(size=(4,)), "alpha": np.full((2,), 0.5)},
    }  # fmt: skip
    params = {"w": jnp.asarray(init["w"], jnp.float32), "b": jnp.asarray(init["b"], jnp.float32),
              "method": {k: jnp.asarray(v, jnp.float32) for k, v in init["method"].items()}}  # fmt: skip
    grads = [
        {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=(3,)),
         "method": {"table": rng.normal(size=(4,)), "alpha": -np.abs(rng.normal(size=(2,)))}}
        for _ in range(12)
    ]  # fmt: skip
    lrs = [float(schedule(t)) for t in range(12)]
    state = tx.init(params)
    for g in grads:
        g = {"w": jnp.asarray(g["w"], jnp.float32), "b": jnp.asarray(g["b"], jnp.float32),
             "method": {k: jnp.asarray(v, jnp.float32) for k, v in g["method"].items()}}  # fmt: skip
        updates, state = tx.update(g, state, params)
        params = optim.project(optax.apply_updates(params, updates), groups)
    wd = config.optim.weight_decay
    steps = lambda name, w0, lr_mult, decay: torch_adam_steps(
        w0, [_get(g, name) for g in grads], [lr_mult * lr for lr in lrs], decay
    )
    np.testing.assert_allclose(params["w"], steps("w", init["w"], 1.0, wd), rtol=1e-5)
    np.testing.assert_allclose(params["b"], steps("b", init["b"], 1.0, 0.0), rtol=1e-5)
    np.testing.assert_allclose(
        params["method"]["table"], steps("method/table", init["method"]["table"], 10.0, wd),
        rtol=1e-4, atol=1e-5,
    )  # fmt: skip
    # alpha: negative gradients push it up; clamped at 1 after every update.
    assert np.all(np.asarray(params["method"]["alpha"]) <= 1.0)
    assert np.all(np.asarray(params["method"]["alpha"]) > 0.5)
    assert optim.group_of(("method", "table", "x"), groups) == 1
    assert optim.group_of(("other",), groups) == 0


def optim_clip(x):
    return jnp.clip(x, 0.0, 1.0)


def _get(tree, path):
    for key in path.split("/"):
        tree = tree[key]
    return tree


def test_onecycle_schedule_matches_torch_onecycle_lr():
    """'onecycle' is PyTorch's OneCycleLR (cosine annealing, div 25, final div 1e4) as ASL and SPLC
    call it: max_lr, steps_per_epoch, an `schedule_epochs`-long schedule, pct_start."""
    torch = pytest.importorskip("torch")
    config = base.get_config("plain")
    config.optim.schedule = "onecycle"
    config.optim.learning_rate = 1e-4
    config.optim.schedule_epochs = 8
    config.optim.onecycle_pct = 0.2
    steps_per_epoch = 5
    config.optim.total_steps = 3 * steps_per_epoch  # training stops early, as ASL's loop does
    schedule = optim.make_schedule(config.optim, steps_per_epoch)
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([w], lr=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=1e-4, steps_per_epoch=steps_per_epoch, epochs=8, pct_start=0.2,
        cycle_momentum=False,
    )  # fmt: skip
    expected = []
    for _ in range(8 * steps_per_epoch):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    got = [float(schedule(s)) for s in range(8 * steps_per_epoch)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert got[0] == pytest.approx(1e-4 / 25, rel=1e-5) and max(got) == pytest.approx(
        1e-4, rel=1e-3
    )
    assert got[-1] < 1e-6


def test_decay_on_matrices_leaves_biases_undecayed():
    """optim.decay_on='matrices': coupled L2 on >= 2-D leaves only (ASL's / SPLC's recipe)."""
    config = base.get_config("plain")
    config.optim.weight_decay = 0.1
    config.optim.decay_on = "matrices"
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}
    for groups in ((), (ParamGroup(("other",), lr_mult=2.0),)):
        tx, _ = optim.make_optimizer(config.optim, 1, 10, groups)
        zero = {"kernel": jnp.zeros((2, 2)), "bias": jnp.zeros((2,))}
        updates, _ = tx.update(zero, tx.init(params), params)
        assert np.all(np.asarray(updates["kernel"]) != 0)  # decay acts as a gradient
        assert not np.asarray(updates["bias"]).any()
