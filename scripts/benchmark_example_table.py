"""Per-example tables at Open Images scale: bytes per device and train-step overhead.

  python scripts/benchmark_example_table.py                       # N = 5.6M, C = 600, 8 devices
  python scripts/benchmark_example_table.py --examples 100000     # smaller, faster

On a CPU the devices are simulated (`--xla_force_host_platform_device_count`); on a GPU/TPU host
pass --devices 0 to use the real ones. Two measurements:

1. Bytes per device, from XLA's compiled memory analysis of a jitted gather + update + scatter of
   the batch's rows (abstract inputs: nothing is allocated), for each storage dtype, against
   N_pad * C * itemsize / devices; and the temporary bytes (an all-gather of the table would show
   here as ~ the whole table).
2. Step overhead: the trainer's whole jitted train step of `plain` (CPU-scale ResNet-18, C
   classes) against the same network's step of the `imbalance` method (paper 002), which also
   gathers, updates and scatters its uint8 (N, C) pseudo-label table every step
   (`ops.example_table`) and computes its loss, timed in turns in one process.
"""

import argparse
import os
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=5_600_000)
    parser.add_argument("--classes", type=int, default=600)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--devices", type=int, default=8, help="simulated CPU devices; 0 = real")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--skip-step", action="store_true", help="only the memory analysis")
    args = parser.parse_args()
    if args.devices:
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + f" --xla_force_host_platform_device_count={args.devices}"
        )
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    import jax
    import numpy as np
    from jax.sharding import NamedSharding

    from mlrpl_jax import sharding
    from mlrpl_jax.ops import example_table as table_ops

    mesh = sharding.make_mesh()
    d = mesh.devices.size
    n, c, b = args.examples, args.classes, args.batch
    rows = table_ops.padded_rows(n)
    table_sh = NamedSharding(mesh, table_ops.PARTITION)
    batch_sh = sharding.batch_sharding(mesh)
    print(
        f"{jax.devices()[0].platform} x {d} devices; N = {n:,} (padded {rows:,}), C = {c}, B = {b}"
    )

    def table_step(table, ids, targets):
        rows_ = table_ops.gather(table, ids)
        return table_ops.scatter(table, ids, 0.9 * rows_ + 0.1 * targets)

    print("\n1. compiled memory per device (gather + update + scatter of B rows)")
    print(f"{'storage':>9} {'table GB':>9} {'expected/dev GB':>16} {'argument/dev GB':>16} "
          f"{'temp/dev MB':>12}")  # fmt: skip
    for dtype in table_ops.STORAGE_DTYPES:
        held = table_ops.HELD_AS[dtype]
        itemsize = np.dtype(held).itemsize
        abstract = (
            jax.ShapeDtypeStruct((rows, c), held, sharding=table_sh),
            jax.ShapeDtypeStruct((b,), np.int32, sharding=batch_sh),
            jax.ShapeDtypeStruct((b, c), np.float32, sharding=batch_sh),
        )
        fn = jax.jit(table_step, out_shardings=table_sh, donate_argnums=0)
        memory = fn.lower(*abstract).compile().memory_analysis()
        print(
            f"{dtype:>9} {rows * c * itemsize / 1e9:9.2f} {rows * c * itemsize / d / 1e9:16.3f} "
            f"{memory.argument_size_in_bytes / 1e9:16.3f} {memory.temp_size_in_bytes / 1e6:12.2f}"
        )
    if args.skip_step:
        return

    from absl import flags

    flags.FLAGS.mark_as_parsed()
    jax.config.update("jax_threefry_partitionable", False)
    from configs import base as base_config
    from configs import recipes
    from mlrpl_jax import methods, trainer

    plain, imbalance = methods.get("plain"), methods.get("imbalance")
    configs = {}
    for name in ("plain", "imbalance"):
        configs[name] = recipes.synthetic_cpu_scale(base_config.get_config(name))
        configs[name].data.size_factor = args.image_size / 448
    configs["imbalance"].method_config.table_dtype = "uint8"
    labels = np.zeros((n, c), np.int8)  # all unknown: the table starts at 0.5
    info = methods.DataInfo(
        num_classes=c, class_names=tuple(f"c{i}" for i in range(c)), num_train_examples=n,
        train_partial_labels=lambda: labels, label_semantics=lambda: None,
    )  # fmt: skip
    rng = np.random.default_rng(0)

    def batch_of(i):
        ids = rng.choice(n, size=b, replace=False).astype(np.int32)
        return sharding.host_to_global({
            "image": rng.integers(0, 256, (b, args.image_size, args.image_size, 3), dtype=np.uint8),
            "labels": rng.integers(-1, 2, (b, c)).astype(np.int8),
            "example_id": ids,
            "full_labels": rng.integers(0, 2, (b, c)).astype(np.uint8),
        }, mesh)  # fmt: skip

    print(f"\n2. whole train step (plain, ResNet-18 w16, {args.image_size} px), median of "
          f"{args.steps} steps, timed in turns")  # fmt: skip
    t0 = time.perf_counter()
    runs = {
        "plain": trainer.make_train_fns(configs["plain"], plain, info, mesh, 100, 1000),
        "imbalance (uint8 table)": trainer.make_train_fns(
            configs["imbalance"], imbalance, info, mesh, 100, 1000
        ),
    }
    print(
        f"   set-up (both, incl. the table's host init and placement): {time.perf_counter() - t0:.1f} s"
    )
    states = {k: v.state for k, v in runs.items()}
    times = {k: [] for k in runs}
    batches = [batch_of(i) for i in range(args.steps + 1)]
    for i, batch in enumerate(batches):
        for name, fns in runs.items():
            t = time.perf_counter()
            states[name], _ = fns.step_fn(states[name], batch)
            jax.block_until_ready(states[name].params)
            if i:  # the first call compiles
                times[name].append(time.perf_counter() - t)
    table = states["imbalance (uint8 table)"].method_state["pseudo_labels"]
    per_dev = {s.data.nbytes for s in table.addressable_shards}
    base_t = float(np.median(times["plain"]))
    for name, ts in times.items():
        med = float(np.median(ts))
        print(f"   {name:>22}: {med * 1e3:8.1f} ms/step  (x{med / base_t:.3f})")
    print(f"   table {table.shape} {table.dtype}: {min(per_dev) / 1e6:.1f} MB on each of {d} "
          f"devices ({table.nbytes / 1e9:.2f} GB in all)")  # fmt: skip


if __name__ == "__main__":
    main()
