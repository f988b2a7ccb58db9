"""Benchmark: SSGRL heads (ours) against a straightforward transcription of the reference, one process.

  python scripts/benchmark_heads.py                    # B=32, 7x7 and 14x14 maps, C=80 and C=200
  python scripts/benchmark_heads.py --maps 7 --classes 80 --iters 5

For each setting, both heads (channel reduction 2048->1024 + BN, semantic decoupling, 3-step gated
GNN, output layer, element-wise classifier) get the same parameters and the same backbone feature map
(B, H, W, 2048), and one train step (partial BCE, gradients of every head parameter, an Adam update)
is jit-compiled for each. Printed per setting:

* peak memory: XLA's memory analysis of the compiled step (temporaries + arguments + outputs);
* seconds per step: median over ``--iters`` runs after one warm-up run;
* ratios ours / straightforward (memory target <= 0.25, time <= 1).

The straightforward head (`mlrpl_jax.models.reference_heads`) follows the PyTorch reference's order of
operations, including its ``repeat``-materialised (B*H*W, C, 512) and (B, H, W, C, 1024) tensors.
It is only timed when its analysed peak fits in ``--max-run-gb``; otherwise the time is reported as
skipped (the memory figure comes from compilation alone).
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mlrpl_jax import losses
from mlrpl_jax.models import reference_heads, ssgrl

GB = 1024**3


def _peak_bytes(compiled) -> int:
    m = compiled.memory_analysis()
    return (
        m.temp_size_in_bytes
        + m.argument_size_in_bytes
        + m.output_size_in_bytes
        - m.alias_size_in_bytes
    )


def _make_step(apply_fn, tx):
    """Jitted (params, opt_state, batch_stats, f, labels) -> (params, opt_state, loss)."""

    def step(params, opt_state, batch_stats, f, labels):
        def loss_of(p):
            logits = apply_fn(p, batch_stats, f)
            return losses.partial_bce(logits, labels)[0]

        loss, grads = jax.value_and_grad(loss_of)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return jax.jit(step, donate_argnums=(0, 1))


def _time(compiled, args, iters: int) -> float:
    params, opt_state, *rest = args
    params, opt_state, loss = compiled(params, opt_state, *rest)  # warm-up
    loss.block_until_ready()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        params, opt_state, loss = compiled(params, opt_state, *rest)
        loss.block_until_ready()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(batch: int, size: int, num_classes: int, args) -> dict:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(num_classes, args.embedding_dim)).astype(np.float32)
    adj = rng.random((num_classes, num_classes)).astype(np.float32)
    np.fill_diagonal(adj, 1.0)
    head = ssgrl.SSGRLHead(
        num_classes=num_classes,
        label_embeddings=emb,
        adjacency=adj,
        feature_dim=args.feature_dim,
        attention_dim=args.attention_dim,
        sd_chunk=args.sd_chunk,
    )
    f = jax.random.normal(jax.random.PRNGKey(0), (batch, size, size, args.in_dim))
    labels = jnp.asarray(rng.choice([-1, 0, 1], size=(batch, num_classes)).astype(np.int8))
    variables = jax.jit(lambda x: head.init(jax.random.PRNGKey(1), x, train=False))(f[:1])
    params, batch_stats = variables["params"], variables["batch_stats"]
    tx = optax.adam(1e-5)

    def ours(p, bs, x):
        (logits, _), _ = head.apply(
            {"params": p, "batch_stats": bs}, x, train=True, mutable=["batch_stats"]
        )
        return logits

    def straightforward(p, bs, x):
        return reference_heads.head_apply(p, bs, x, train=True)[0]

    row = {}
    for name, fn in (("ours", ours), ("straightforward", straightforward)):
        step = _make_step(fn, tx)
        p = jax.tree.map(jnp.copy, params)
        opt_state = tx.init(p)
        compiled = step.lower(p, opt_state, batch_stats, f, labels).compile()
        peak = _peak_bytes(compiled)
        row[f"{name}_gb"] = peak / GB
        if peak / GB <= args.max_run_gb:
            row[f"{name}_s"] = _time(compiled, (p, opt_state, batch_stats, f, labels), args.iters)
        else:
            row[f"{name}_s"] = float("nan")
        del compiled
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--maps", type=int, nargs="+", default=[7, 14], help="H = W of the map")
    parser.add_argument("--classes", type=int, nargs="+", default=[80, 200])
    parser.add_argument("--in-dim", type=int, default=2048, help="backbone channels")
    parser.add_argument("--feature-dim", type=int, default=1024)
    parser.add_argument("--attention-dim", type=int, default=512)
    parser.add_argument("--embedding-dim", type=int, default=300)
    parser.add_argument("--sd-chunk", type=int, default=16)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument(
        "--max-run-gb", type=float, default=12.0, help="time a step only if its peak fits"
    )
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} device(s))")
    header = (
        f"{'B':>3} {'map':>5} {'C':>4} | {'peak GB ours':>12} {'straightfwd':>11} {'ratio':>6} | "
        f"{'s/step ours':>11} {'straightfwd':>11} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for size in args.maps:
        for c in args.classes:
            r = bench(args.batch, size, c, args)
            mem_ratio = r["ours_gb"] / r["straightforward_gb"]
            time_ratio = r["ours_s"] / r["straightforward_s"]
            print(
                f"{args.batch:>3} {size:>2}x{size:<2} {c:>4} | {r['ours_gb']:>12.2f} "
                f"{r['straightforward_gb']:>11.2f} {mem_ratio:>6.3f} | {r['ours_s']:>11.3f} "
                f"{r['straightforward_s']:>11.3f} {time_ratio:>6.3f}",
                flush=True,
            )
    print("(nan: not run, its analysed peak exceeds --max-run-gb)")


if __name__ == "__main__":
    main()
