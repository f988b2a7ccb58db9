"""Benchmark: batched JAX K-means (`mlrpl_jax.ops.kmeans`) against per-class scikit-learn fits.

  python scripts/benchmark_kmeans.py                    # C=80, K=10, D=1024, 2,000 points/class
  python scripts/benchmark_kmeans.py --classes 8 --repeats 1      # smaller, for a loaded CPU
  python scripts/benchmark_kmeans.py --sklearn-classes 8          # sklearn timed on 8 classes only

The SARB/HST prototype refresh (reference notes §8.4, §9.2) runs `KMeans(n_clusters=10)`
(k-means++, n_init=10) once per class over the features of its known positives. Synthetic stand-in:
per class, `--true-clusters` centres drawn from N(0, spread^2 I), N(0, I) noise around them, every
class with `--points` points. Timed:

* ours: `batched_kmeans` over all classes in one call. The first call compiles and runs; then the
  median of `--repeats` calls on new data (same shapes, no recompilation) is the run time, and
  first call - run time is reported as the compile time;
* scikit-learn: a Python loop of `KMeans(n_clusters=K, n_init=10)` fits, one per class (what the
  reference does), and the same loop with n_init=1, on the data of the last timed call of ours
  (`--sklearn-classes S`: on the first S classes only, time scaled by C/S, inertia compared there).

Printed: seconds, speed ratio sklearn / ours, and inertia ours / sklearn (mean, min, max over
classes).
"""

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.cluster import KMeans

from mlrpl_jax.ops.kmeans import batched_kmeans


def make_data(rng, classes, points, dim, true_clusters, spread):
    """(C, N, D) float32 mixture data, one independent mixture per class."""
    centres = rng.normal(size=(classes, true_clusters, dim)).astype(np.float32) * spread
    which = rng.integers(true_clusters, size=(classes, points))
    x = np.take_along_axis(centres, which[..., None], axis=1)
    return x + rng.standard_normal((classes, points, dim), dtype=np.float32)


def sklearn_loop(x, k, n_init, seed):
    """Per-class scikit-learn fits: (seconds, inertia (C,), iterations (C,))."""
    start = time.perf_counter()
    fits = [
        KMeans(n_clusters=k, n_init=n_init, random_state=seed + c).fit(xc) for c, xc in enumerate(x)
    ]
    seconds = time.perf_counter() - start
    return seconds, np.array([f.inertia_ for f in fits]), np.array([f.n_iter_ for f in fits])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, default=80, help="C")
    parser.add_argument("--points", type=int, default=2000, help="points per class (N)")
    parser.add_argument("--dim", type=int, default=1024, help="feature dimension (D)")
    parser.add_argument("--clusters", type=int, default=10, help="K")
    parser.add_argument("--n-init", type=int, default=10, help="restarts (ours and sklearn)")
    parser.add_argument(
        "--true-clusters", type=int, default=10, help="mixture components per class"
    )
    parser.add_argument(
        "--spread", type=float, default=0.05, help="std of the true centres (noise 1)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed calls of ours after compiling"
    )
    parser.add_argument("--skip-sklearn-n-init-1", action="store_true")
    parser.add_argument(
        "--sklearn-classes",
        type=int,
        default=None,
        help="fit sklearn on only the first S classes and scale its time by C/S (default: all)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    c, n, d, k = args.classes, args.points, args.dim, args.clusters
    print(
        f"C={c} N={n} D={d} K={k} n_init={args.n_init} spread={args.spread}; "
        f"jax {jax.__version__} on {jax.devices()[0].device_kind}; {os.cpu_count()} CPUs"
    )
    rng = np.random.default_rng(args.seed)
    mask = jnp.ones((c, n), bool)
    run = lambda x, key: batched_kmeans(x, mask, k, key, n_init=args.n_init)

    x = make_data(rng, c, n, d, args.true_clusters, args.spread)
    start = time.perf_counter()
    jax.block_until_ready(run(jnp.asarray(x), jax.random.key(args.seed)))
    compile_s = time.perf_counter() - start
    times = []
    for r in range(args.repeats):
        x = make_data(rng, c, n, d, args.true_clusters, args.spread)
        x_dev = jax.block_until_ready(jnp.asarray(x))
        start = time.perf_counter()
        ours = jax.block_until_ready(run(x_dev, jax.random.key(args.seed + 1 + r)))
        times.append(time.perf_counter() - start)
    ours_s = statistics.median(times)
    assert batched_kmeans._cache_size() == 1, "recompiled"
    ours_inertia = np.asarray(ours.inertia)
    print(f"ours:   first call {compile_s:8.2f} s, compile ~ {compile_s - ours_s:.2f} s")
    print(
        f"ours:   run {ours_s:8.2f} s (median of {args.repeats}: "
        + ", ".join(f"{t:.2f}" for t in times)
        + f"); Lloyd iterations mean {np.mean(ours.iterations):.1f}, max {np.max(ours.iterations)}"
    )

    s = min(args.sklearn_classes or c, c)
    ours_inertia = ours_inertia[:s]
    for n_init in (args.n_init, 1):
        if n_init == 1 and (args.skip_sklearn_n_init_1 or args.n_init == 1):
            continue
        seconds, inertia, iters = sklearn_loop(x[:s], k, n_init, args.seed)
        scaled = "" if s == c else f" ({seconds:.2f} s measured on {s} classes, scaled by {c}/{s})"
        seconds *= c / s
        print(
            f"sklearn n_init={n_init:<2d} loop over {c} classes: {seconds:8.2f} s{scaled}, "
            f"speed ratio sklearn/ours {seconds / ours_s:7.1f}x, "
            f"inertia ours/sklearn mean {np.mean(ours_inertia / inertia):.4f} "
            f"(min {np.min(ours_inertia / inertia):.4f}, "
            f"max {np.max(ours_inertia / inertia):.4f}); "
            f"iterations mean {iters.mean():.1f}"
        )


if __name__ == "__main__":
    main()
