"""Benchmark: the whole SST / HST train step, ours against the reference heads' formulation, one process.

  python scripts/benchmark_train.py                       # B=8, 224 px, C=80 and 200, sst and hst
  python scripts/benchmark_train.py --classes 200 --methods hst --iters 3
  python scripts/benchmark_train.py --image-size 448 --classes 200 --skip-straightforward

The setting is the papers' recipe at 224 px: ResNet-101 with the stem and layer1-3 frozen (their BN
in inference mode), layer4 and every head trainable, the 2x2 average pool, heads at full width
(D = 1024, K = 512, IST 512 / 1024), Adam with coupled L2. Each step is the trainer's own jitted
`train_step` (`trainer.make_train_fns`: method loss with every term active — the clock is set past
epoch 5 —, gradients, optimiser update, method state update). Variants, all in the same process:

* ``plain``: the same backbone with a linear classifier and the partial BCE: the backbone's cost;
* ``<method>``: ours (`models.ssgrl`, `models.ist`);
* ``<method> straightforward``: the same parameters and loss, with the SSGRL head and the IST head
  replaced by the straightforward transcriptions of the reference (`models.reference_heads`: the
  ``repeat``-materialised SD tensors, the (B, P, 2H) pair concatenation, the (B, P, O) x (O, O)
  product per image).

Printed per variant: peak memory (XLA memory analysis of the compiled step: temporaries + arguments
+ outputs - aliased), seconds per step (median of ``--iters``; the variants are timed in turns, so
load from other processes affects them alike), and the heads' cost = step - plain step, as a
fraction of the plain step (target at C = 200: < 1, the heads cost less than the backbone).
"""

import argparse
import os
import statistics
import sys
import time
import types

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import numpy as np

from configs import base as config_base
from mlrpl_jax import methods, sharding, trainer
from mlrpl_jax.models import reference_heads

GB = 1024**3


class Straightforward:
    """Our SSGRL model with its heads computed by `reference_heads` (same parameter tree).

    Duck-types the two Flax calls the trainer makes (``init`` and ``apply(..., train=True,
    mutable=['batch_stats'])``); the head's BatchNorm statistics are not updated (the benchmark
    does not need them).
    """

    def __init__(self, model):
        self.model = model

    def init(self, *args, **kwargs):
        return self.model.init(*args, **kwargs)

    def apply(self, variables, images, train, mutable=(), method=None):
        if method is not None:
            return self.model.apply(variables, images, train=train, mutable=mutable, method=method)
        params, stats = variables["params"], variables["batch_stats"]
        f, backbone_stats = self.model.backbone.apply(
            {"params": params["backbone"], "batch_stats": stats["backbone"]},
            images,
            train=train,
            mutable=["batch_stats"],
        )
        logits, v, attention = reference_heads.head_apply(params["head"], stats["head"], f, train)
        aux = {"category_features": v, "attention": attention}
        if self.model.ist is not None:
            aux["pair_logits"] = reference_heads.ist_head_apply(params["ist"], v)
        new_stats = dict(stats, backbone=backbone_stats["batch_stats"])
        return (logits, aux), {"batch_stats": new_stats}


def data_info(num_classes: int, embedding_dim: int = 300) -> methods.DataInfo:
    rng = np.random.default_rng(0)
    adjacency = rng.random((num_classes, num_classes)).astype(np.float32)
    np.fill_diagonal(adjacency, 1.0)
    semantics = types.SimpleNamespace(
        embeddings=rng.normal(size=(num_classes, embedding_dim)).astype(np.float32),
        adjacency=adjacency,
        embedding_source="random (benchmark)",
    )
    names = tuple(f"class_{c}" for c in range(num_classes))
    return methods.DataInfo(
        num_classes=num_classes,
        class_names=names,
        num_train_examples=1,
        train_partial_labels=lambda: np.zeros((1, num_classes), np.int8),
        label_semantics=lambda: semantics,
    )


def make_config(method: str, args):
    config = config_base.get_config(method)
    m = config.model
    m.backbone, m.width, m.avg_pool_2x2, m.frozen_stages = "resnet101", 64, True, 4
    config.data.size_factor = args.image_size / 448
    config.optim.name, config.optim.learning_rate, config.optim.weight_decay = "adam", 1e-5, 5e-4
    if method == "hst":  # K-means is outside the step; keep its buffers small
        config.method_config.prototype_max_per_class = 16
    return config


def build(method_name: str, num_classes: int, straightforward: bool, args):
    """(compiled step, state, batch) for one variant, clock past epoch 5."""
    config = make_config(method_name, args)
    method = methods.get(method_name)
    if straightforward:
        make = method.make_model
        method = method._replace(make_model=lambda c, d: Straightforward(make(c, d)))
    mesh = sharding.make_mesh(jax.devices()[:1])
    steps_per_epoch = 10
    fns = trainer.make_train_fns(
        config, method, data_info(num_classes), mesh, steps_per_epoch, 20 * steps_per_epoch
    )
    state, step_fn = fns.state, fns.step_fn
    state = state.replace(step=state.step + 6 * steps_per_epoch)
    rng = np.random.default_rng(1)
    b, s = args.batch, args.image_size
    batch = {
        "image": rng.integers(0, 256, size=(b, s, s, 3), dtype=np.uint8),
        "labels": rng.choice([-1, 0, 1], size=(b, num_classes)).astype(np.int8),
        "example_id": np.arange(b, dtype=np.int32),
        "full_labels": rng.integers(0, 2, size=(b, num_classes), dtype=np.uint8),
    }
    batch = sharding.host_to_global(batch, mesh)
    compiled = step_fn.lower(state, batch).compile()
    m = compiled.memory_analysis()
    peak = (
        m.temp_size_in_bytes
        + m.argument_size_in_bytes
        + m.output_size_in_bytes
        - m.alias_size_in_bytes
    )
    state, metrics = compiled(state, batch)  # warm-up
    jax.block_until_ready(metrics["loss"])
    return {"compiled": compiled, "state": state, "batch": batch, "peak": peak, "times": []}


def time_once(v) -> None:
    start = time.perf_counter()
    v["state"], metrics = v["compiled"](v["state"], v["batch"])
    jax.block_until_ready(metrics["loss"])
    v["times"].append(time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--classes", type=int, nargs="+", default=[80, 200])
    parser.add_argument("--methods", nargs="+", default=["sst", "hst"], choices=["sst", "hst"])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument(
        "--skip-straightforward", action="store_true", help="only plain and ours (e.g. at 448 px)"
    )
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; B={args.batch}, "
          f"{args.image_size} px, ResNet-101 layer4 + heads trainable")  # fmt: skip
    header = f"{'C':>4} {'variant':<22} | {'peak GB':>8} | {'s/step':>8} | {'heads/backbone':>14}"
    print(header)
    print("-" * len(header))
    for c in args.classes:
        variants = {"plain": build("plain", c, False, args)}
        for name in args.methods:
            variants[name] = build(name, c, False, args)
            if not args.skip_straightforward:
                variants[f"{name} straightforward"] = build(name, c, True, args)
        for _ in range(args.iters):  # in turns
            for v in variants.values():
                time_once(v)
        base_s = statistics.median(variants["plain"]["times"])
        for name, v in variants.items():
            s = statistics.median(v["times"])
            ratio = "" if name == "plain" else f"{(s - base_s) / base_s:>14.2f}"
            print(f"{c:>4} {name:<22} | {v['peak'] / GB:>8.2f} | {s:>8.3f} | {ratio:>14}")
        sys.stdout.flush()
        del variants
    print("heads/backbone = (step - plain step) / plain step")


if __name__ == "__main__":
    main()
