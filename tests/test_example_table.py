"""Per-example tables (`ops.example_table`): storage precision, gather/scatter, sharding over 8
simulated devices (same contents as 1 device, 1/8 of the bytes per device, no table-sized
temporaries), and a method that keeps one in its state through the trainer's jitted step."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from helpers import fake_data_info
from jax.sharding import NamedSharding

from configs import base as base_config
from mlrpl_jax import sharding, trainer
from mlrpl_jax.methods import base, plain
from mlrpl_jax.ops import example_table as table_ops


def test_storage_precision():
    values = np.linspace(0.0, 1.0, 1001, dtype=np.float32)[:, None]
    for dtype, bound in (("float32", 0.0), ("bfloat16", 2.0**-8), ("uint8", 1.0 / 510)):
        stored = table_ops.init(values, dtype, multiple=8)
        back = np.asarray(table_ops.decode(stored))[: len(values)]
        err = np.abs(back - values)
        if dtype == "bfloat16":
            err = err / np.maximum(values, 1e-30)
        assert err.max() <= bound + 1e-7, (dtype, err.max())
    u8 = table_ops.init(np.array([[0.0, 1.0, 0.5, -3.0, 7.0]]), "uint8", multiple=1)
    np.testing.assert_array_equal(np.asarray(u8), [[0, 255, 128, 0, 255]])  # clipped to [0, 1]
    with pytest.raises(ValueError, match="float16"):
        table_ops.init(values, "float16")
    default = table_ops.init(values)  # float32 and 1024-row padding unless asked otherwise
    assert default.dtype == np.float32 and default.shape == (1024, 1)
    np.testing.assert_array_equal(default[:1001], values)
    filled = table_ops.full(3, 2, 0.25)
    assert filled.dtype == np.float32 and filled.shape == (1024, 2)
    assert (filled[:3] == 0.25).all() and (filled[3:] == 0).all()


def test_host_and_device_encodings_agree():
    """A table built on the host holds what `encode` writes in a step, whatever the input dtype."""
    values = np.random.default_rng(0).random((4096, 3))  # float64
    for dtype in ("float32", "bfloat16", "uint8"):
        host = table_ops.init(values, dtype, multiple=1)
        device = np.asarray(table_ops.encode(jnp.asarray(values, jnp.float32), dtype))
        np.testing.assert_array_equal(host, device, err_msg=dtype)


def test_device_encoding_clips_to_the_unit_interval_and_stores_float32():
    """`encode` in a step: uint8 clips to [0, 1] before quantising (as the host builder does), and
    float32 storage is float32 whatever the values' dtype (bfloat16 under mixed precision)."""
    values = jnp.asarray([0.0, 1.0, 0.5, -3.0, 7.0, 1.5])
    np.testing.assert_array_equal(table_ops.encode(values, "uint8"), [0, 255, 128, 0, 255, 255])
    stored = table_ops.encode(values.astype(jnp.bfloat16), "float32")
    assert stored.dtype == jnp.float32
    np.testing.assert_array_equal(stored, values)


def test_tables_are_built_chunk_by_chunk_across_chunk_boundaries(monkeypatch):
    """With chunks of 4 rows, 11 rows take three chunks (the last partial): every row is encoded,
    the same as one chunk would give."""
    values = np.random.default_rng(5).random((11, 3)).astype(np.float32)
    whole = table_ops.init(values, "uint8", multiple=1)
    monkeypatch.setattr(table_ops, "_CHUNK_ROWS", 4)
    np.testing.assert_array_equal(table_ops.init(values, "uint8", multiple=1), whole)
    assert (whole[10] > 0).any()


def test_from_partial_labels_and_row_padding():
    labels = np.array([[1, -1, 0], [0, 0, 1]], np.int8)
    t = table_ops.from_partial_labels(labels, unknown=0.25, multiple=4)
    assert t.shape == (4, 3)
    np.testing.assert_array_equal(
        np.asarray(t), [[1, 0, 0.25], [0.25, 0.25, 1], [0, 0, 0], [0, 0, 0]]
    )
    # The defaults: unknown entries 0.5, float32 storage (both builders).
    t = table_ops.from_partial_labels(labels, multiple=1)
    assert t.dtype == np.float32
    np.testing.assert_array_equal(t, [[1, 0, 0.5], [0.5, 0.5, 1]])
    t = table_ops.build(labels, lambda rows: (rows == 1).astype(np.float32), multiple=1)
    assert t.dtype == np.float32
    np.testing.assert_array_equal(t, labels == 1)


def test_gather_and_scatter():
    rng = np.random.default_rng(0)
    values = rng.random((10, 4)).astype(np.float32)
    t = jnp.asarray(table_ops.init(values, "float32", multiple=16))
    ids = jnp.array([7, 2, 9])
    np.testing.assert_array_equal(np.asarray(table_ops.gather(t, ids)), values[[7, 2, 9]])
    new_rows = rng.random((3, 4)).astype(np.float32)
    t2 = np.asarray(table_ops.scatter(t, ids, new_rows))
    expected = np.zeros((16, 4), np.float32)
    expected[:10] = values
    expected[[7, 2, 9]] = new_rows
    np.testing.assert_array_equal(t2, expected)


def _table_step(table, ids, targets):
    """A typical use: read the batch's rows, move them towards targets, write them back."""
    rows = table_ops.gather(table, ids)
    new = 0.9 * rows + 0.1 * targets
    return table_ops.scatter(table, ids, new), jnp.sum(rows)


def _run(devices, table, batches):
    mesh = sharding.make_mesh(devices)
    table_sh = NamedSharding(mesh, table_ops.PARTITION)
    batch_sh = sharding.batch_sharding(mesh)
    fn = jax.jit(
        _table_step,
        in_shardings=(table_sh, batch_sh, batch_sh),
        out_shardings=(table_sh, sharding.replicated(mesh)),
        donate_argnums=0,
    )
    table = jax.device_put(np.asarray(table), table_sh)
    compiled = fn.lower(table, *batches[0]).compile()
    for ids, targets in batches:
        table, _ = fn(table, jax.device_put(ids, batch_sh), jax.device_put(targets, batch_sh))
    return np.asarray(table), compiled.memory_analysis(), table


@pytest.mark.parametrize("dtype", ["uint8", "bfloat16", "float32"])
def test_eight_devices_hold_an_eighth_and_match_one_device(dtype):
    n, c, b = 5000, 64, 32
    rng = np.random.default_rng(1)
    table = table_ops.from_partial_labels(rng.integers(-1, 2, (n, c)), dtype=dtype)
    batches = [
        (rng.permutation(n)[:b].astype(np.int32), rng.random((b, c)).astype(np.float32))
        for _ in range(3)
    ]
    one, _, _ = _run(jax.devices()[:1], table, batches)
    eight, memory, sharded = _run(jax.devices(), table, batches)
    np.testing.assert_array_equal(one, eight)
    assert sharded.sharding.spec == table_ops.PARTITION
    itemsize = np.dtype(table.dtype).itemsize
    per_device = table_ops.padded_rows(n) * c * itemsize // 8
    assert {s.data.nbytes for s in sharded.addressable_shards} == {per_device}
    # Compiled per-device memory: the table argument is 1/8 of it (plus the batch), and no
    # temporary holds the whole table (an all-gather of it would need 8 * per_device; without
    # XLA's optimisations, as the tests compile, a copy of the local shard may be made).
    batch_bytes = b * 4 + b * c * 4
    assert memory.argument_size_in_bytes <= per_device + batch_bytes
    assert memory.temp_size_in_bytes < 8 * per_device // 2


# A method with a per-example table in its state, through the trainer's step on 8 devices.


def _table_init_state(config, data_info, rng):
    del rng
    labels = data_info.train_partial_labels()
    return {"table": table_ops.from_partial_labels(labels, dtype=config.method_config.storage)}


def _table_loss(model, config, params, batch_stats, method_state, batch, rng, clock):
    loss, out = plain.loss_fn(model, config, params, batch_stats, method_state, batch, rng, clock)
    ids = batch["example_id"]
    rows = table_ops.gather(method_state["table"], ids)
    table = table_ops.scatter(method_state["table"], ids, 1.0 - rows)  # visible change
    return loss, out._replace(method_state={"table": table})


def _table_config():
    c = plain.default_config()
    c.storage = "uint8"
    return c


TABLE_METHOD = base.Method(
    name="plain",  # its config keys are plain's + 'storage'
    default_config=_table_config,
    make_model=plain.make_model,
    loss_fn=_table_loss,
    predict_fn=base.predict_logits,
    init_state=_table_init_state,
    state_sharding=lambda config: (table_ops.sharding_rule(r"^method_state/table$"),),
)


def _batch_of_16(info):
    """(ids, a train batch of 16 distinct examples of the 40 of `info`, 32 px)."""
    rng = np.random.default_rng(0)
    ids = rng.permutation(40)[:16].astype(np.int32)
    return ids, {
        "image": rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8),
        "labels": info.train_partial_labels()[ids],
        "example_id": ids,
        "full_labels": rng.integers(0, 2, (16, 4), dtype=np.uint8),
    }


@pytest.mark.slow
@pytest.mark.mutation
def test_a_method_shards_its_table_through_the_trainer():
    config = base_config.get_config("plain")
    with config.unlocked():
        config.method_config = ml_collections.ConfigDict(_table_config().to_dict())
    config.model.backbone, config.model.width, config.model.avg_pool_2x2 = "resnet18", 8, False
    config.model.frozen_stages, config.data.size_factor = 0, 32 / 448
    info = fake_data_info(4, num_examples=40)
    mesh = sharding.make_mesh(jax.devices())
    fns = trainer.make_train_fns(config, TABLE_METHOD, info, mesh, 10, 20)
    assert fns.state.method_state["table"].sharding.spec == table_ops.PARTITION
    assert fns.state.method_state["table"].shape == (1024, 4)
    before = np.asarray(fns.state.method_state["table"])
    ids, batch = _batch_of_16(info)
    state, _ = fns.step_fn(fns.state, sharding.host_to_global(batch, mesh))
    after = np.asarray(state.method_state["table"])
    assert state.method_state["table"].sharding.spec == table_ops.PARTITION
    expected = before.copy()
    expected[ids] = 255 - before[ids]
    np.testing.assert_array_equal(after, expected)


def _learned_table_loss(model, config, params, batch_stats, method_state, batch, rng, clock):
    """ROLE-like: a learned (N, C) table of label-estimate logits, gathered by example id."""
    loss, out = plain.loss_fn(model, config, params, batch_stats, method_state, batch, rng, clock)
    rows = table_ops.gather(params["method"]["table"], batch["example_id"])
    return loss + jnp.mean((jax.nn.sigmoid(rows) - 1.0) ** 2), out


@pytest.mark.slow  # compiles a train step on 8 devices (~12 s)
def test_a_learned_table_and_its_optimiser_state_are_sharded():
    """A table among the method's own parameters (ROLE's label estimates, x10 learning rate): the
    parameter and its Adam moments are split over the devices by one rule, and only the batch's
    rows move."""
    config = base_config.get_config("plain")
    config.model.backbone, config.model.width, config.model.avg_pool_2x2 = "resnet18", 8, False
    config.model.frozen_stages, config.data.size_factor = 0, 32 / 448
    config.optim.weight_decay = 0.0
    info = fake_data_info(4, num_examples=40)
    method = base.Method(
        name="plain",
        default_config=plain.default_config,
        make_model=plain.make_model,
        loss_fn=_learned_table_loss,
        predict_fn=base.predict_logits,
        init_params=lambda config, info: {"table": table_ops.init(np.zeros((40, 4)))},
        param_groups=lambda config: (base.ParamGroup(("method", "table"), lr_mult=10.0),),
        state_sharding=lambda config: (table_ops.sharding_rule(r"method/table$"),),
    )
    mesh = sharding.make_mesh(jax.devices())
    fns = trainer.make_train_fns(config, method, info, mesh, 10, 20)
    sharded = [
        (sharding.path_string(path), leaf.sharding.spec)
        for path, leaf in jax.tree_util.tree_flatten_with_path(fns.state)[0]
        if leaf.shape == (1024, 4)
    ]
    assert len(sharded) == 3  # the parameter, Adam's mu and nu
    assert all(spec == table_ops.PARTITION for _, spec in sharded), sharded
    ids, batch = _batch_of_16(info)
    state, _ = fns.step_fn(fns.state, sharding.host_to_global(batch, mesh))
    table = np.asarray(state.params["method"]["table"])
    moved = np.flatnonzero(np.any(table != 0, axis=1))
    np.testing.assert_array_equal(moved, np.sort(ids))  # only this batch's rows
    assert state.params["method"]["table"].sharding.spec == table_ops.PARTITION


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "uint8"])
def test_abstract_tables_are_the_shapes_and_dtypes_of_the_real_ones(dtype):
    """Within `abstract_tables`, the builders return the ShapeDtypeStruct of what they build."""
    labels = np.array([[1, 0, -1], [0, 1, 1]], np.int8)
    real = {
        "build": table_ops.build(labels, lambda r: r.astype(np.float32), dtype, multiple=8),
        "full": table_ops.full(2, 3, 0.5, dtype, multiple=8),
    }
    with table_ops.abstract_tables():
        spec = jax.ShapeDtypeStruct(labels.shape, labels.dtype)
        abstract = {
            "build": table_ops.build(spec, lambda r: r.astype(np.float32), dtype, multiple=8),
            "full": table_ops.full(2, 3, 0.5, dtype, multiple=8),
        }
    for name, table in real.items():
        assert isinstance(abstract[name], jax.ShapeDtypeStruct), name
        assert (abstract[name].shape, abstract[name].dtype) == (table.shape, table.dtype), name
        assert table.shape == (8, 3)
