"""The CLIP methods' train step: memory at paper scale and time at CPU scale.

  python scripts/benchmark_clip.py                 # RN101, 448 px, C = 80, batch 8; CPU scale
  python scripts/benchmark_clip.py --arch RN50 --batch 32 --skip-time

1. **Memory at paper scale** (XLA's compiled memory analysis of the trainer's whole jitted train
   step; the state is built, the step is only compiled): `dualcoop` (author variant) and `trm_ml`
   on a frozen CLIP `--arch` at `--size` px with the C = 80 COCO class names, each with the text
   tower's activations kept (`remat_text=False`) and recomputed in the backward pass
   (`remat_text=True`). Printed per device: the state's parameter and optimiser bytes (the frozen
   towers hold no optimiser state) and the step's temporaries. The towers' weights are random
   (nothing is downloaded); shapes are what matter.
2. **Time at CPU scale**: the whole train step of `plain` (the transfer benchmark's ResNet-18),
   `dualcoop` and `trm_ml` (`configs/clip_synthetic.py`: the small CLIP, 96 px, 10 classes,
   batch 32), median of `--steps` steps, timed in turns in one process; ratios against `plain`.

On a GPU/TPU host pass --devices 0 to use the real devices.
"""

import argparse
import os
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="RN101", choices=("RN50", "RN101"))
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--devices", type=int, default=1, help="simulated CPU devices; 0 = real")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-time", action="store_true")
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
    from absl import flags

    flags.FLAGS.mark_as_parsed()
    jax.config.update("jax_threefry_partitionable", False)
    from configs import base as base_config
    from configs import clip_synthetic, recipes
    from mlrpl_jax import methods, sharding, trainer
    from mlrpl_jax.data import sources

    mesh = sharding.make_mesh()
    d = mesh.devices.size
    print(f"{jax.devices()[0].platform} x {d} device(s)")

    def data_info(names, n=1000):
        labels = np.zeros((n, len(names)), np.int8)
        return methods.DataInfo(
            num_classes=len(names), class_names=tuple(names), num_train_examples=n,
            train_partial_labels=lambda: labels, label_semantics=lambda: None,
        )  # fmt: skip

    def batch_of(rng, b, size, c):
        return sharding.host_to_global({
            "image": rng.integers(0, 256, (b, size, size, 3), dtype=np.uint8),
            "labels": rng.integers(-1, 2, (b, c)).astype(np.int8),
            "example_id": np.arange(b, dtype=np.int32),
            "full_labels": rng.integers(0, 2, (b, c)).astype(np.uint8),
        }, mesh)  # fmt: skip

    def tree_bytes(tree):
        leaves = [x for x in jax.tree_util.tree_leaves(tree) if hasattr(x, "addressable_shards")]
        return sum(x.addressable_shards[0].data.nbytes for x in leaves)

    if not args.skip_memory:
        names = sources.COCO_CLASS_NAMES
        info = data_info(names)
        print(f"\n1. compiled train step, CLIP {args.arch}, {args.size} px, C = {len(names)}, "
              f"batch {args.batch} (per device: MB)")  # fmt: skip
        print(f"{'method':>10} {'remat_text':>10} {'params':>8} {'opt state':>10} {'temp':>9} "
              f"{'compile s':>10}")  # fmt: skip
        for name in ("dualcoop", "trm_ml"):
            for remat in (False, True):
                config = recipes.trm_ml_scale(base_config.get_config(name), "coco")
                mc = config.method_config
                mc.clip_arch, mc.clip_weights, mc.remat_text = args.arch, None, remat
                config.data.image_size = args.size
                config.train.batch_size = args.batch
                fns = trainer.make_train_fns(
                    config, methods.get(name), info, mesh, 100, 1000, pretrained=False
                )
                batch = batch_of(np.random.default_rng(0), args.batch, args.size, len(names))
                t = time.perf_counter()
                memory = fns.step_fn.lower(fns.state, batch).compile().memory_analysis()
                took = time.perf_counter() - t
                print(f"{name:>10} {remat!s:>10} {tree_bytes(fns.state.params) / 1e6:8.1f} "
                      f"{tree_bytes(fns.state.opt_state) / 1e6:10.2f} "
                      f"{memory.temp_size_in_bytes / 1e6:9.1f} {took:10.1f}")  # fmt: skip
                del fns

    if not args.skip_time:
        from configs import synthetic_transfer

        print(f"\n2. whole train step at CPU scale (96 px, 10 classes, batch 32), median of "
              f"{args.steps} steps, timed in turns")  # fmt: skip
        plain_config = synthetic_transfer.get_config("plain")
        plain_config.model.backbone_weights = None
        runs = {"plain (ResNet-18 w16)": (plain_config, "plain")}
        for name in ("dualcoop", "trm_ml"):
            config = clip_synthetic.get_config(name)
            config.method_config.clip_weights = None
            runs[f"{name} (small CLIP)"] = (config, name)
        from mlrpl_jax.data.tfds_builders import synthetic_scenes

        info = data_info(synthetic_scenes.class_names(10))
        fns = {k: trainer.make_train_fns(c, methods.get(m), info, mesh, 93, 744)
               for k, (c, m) in runs.items()}  # fmt: skip
        states = {k: v.state for k, v in fns.items()}
        times = {k: [] for k in fns}
        rng = np.random.default_rng(0)
        for i in range(args.steps + 1):
            batch = batch_of(rng, 32, 96, 10)
            for name, f in fns.items():
                t = time.perf_counter()
                states[name], _ = f.step_fn(states[name], batch)
                jax.block_until_ready(states[name].params)
                if i:  # the first call compiles
                    times[name].append(time.perf_counter() - t)
        base_t = float(np.median(times["plain (ResNet-18 w16)"]))
        for name, ts in times.items():
            med = float(np.median(ts))
            print(f"   {name:>22}: {med * 1e3:8.1f} ms/step  (x{med / base_t:.2f})")


if __name__ == "__main__":
    main()
