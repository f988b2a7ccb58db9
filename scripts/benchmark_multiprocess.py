"""Benchmark: the train step on 1 process x D devices against P processes x D/P devices, and the
cost of cross-process communication, on this machine's CPU (gloo collectives).

    python scripts/benchmark_multiprocess.py                       # quickstart config, 2 devices
    python scripts/benchmark_multiprocess.py --config configs/tiny.py --devices 4 --steps 20

Each layout (1 x D, then P x D/P for P = 2, 4, ... up to --devices) runs this script in worker mode
under `scripts/launch_local.py`. A worker builds the config's experiment (`trainer.setup`), takes
one real global batch of the train loader (every process its rows), and times, after two warm-up
calls (compilation):

* the trainer's jitted train step (`Experiment.step_fn`: forward, loss, gradients, their
  all-reduce, optimiser update), seconds per step (median over --steps) and images/s;
* the gradient all-reduce alone: a sum over the 'data' axis of one float32 vector per device with
  as many entries as the trainable parameters (what data parallelism exchanges every step),
  in-process on one process, through gloo across processes;
* the input pipeline: this process's batches per second from the train loader (each process reads
  only its rows, so P processes read P times fewer images each).

Also run: 1 x 1 on one device's share of the batch, the per-device program with no other device
to wait for or talk to; a layout's step minus that step is its communication and waiting.

Printed: a line per layout, then each multi-process layout's step time and all-reduce times against
the 1-process layout's, and each layout's communication and waiting. Figures from a loaded
2-core machine move by tens of percent between runs; compare layouts of one run.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker(args) -> None:
    sys.path.insert(0, ROOT)
    from mlrpl_jax import launch

    launch.setup_process()
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import PartitionSpec

    from mlrpl_jax import sharding, trainer
    from mlrpl_jax.data import pipeline
    from mlrpl_jax.train_state import split_params

    config = _load_config(args.config)
    if args.data_dir is not None:
        config.data.data_dir = args.data_dir
    if args.batch_size:
        config.train.batch_size = args.batch_size
    exp = trainer.setup(config)
    cfg = exp.config
    loader = pipeline.make_train_loader(cfg.data, exp.train_source, cfg.train.batch_size, cfg.seed)
    host = next(loader)
    batch = sharding.host_to_global(host, exp.mesh)
    holder = {"state": exp.state}

    def train_step():
        holder["state"], metrics = exp.step_fn(holder["state"], batch)
        return metrics

    step_times = _timed(train_step, args.steps)
    trainable, _ = split_params(holder["state"].params, tuple(exp.method.param_groups(cfg)))
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(trainable))
    devices = exp.mesh.devices.size
    grads = jax.make_array_from_callback(
        (devices, n_params),
        sharding.batch_sharding(exp.mesh),
        lambda index: np.ones((1, n_params), np.float32),
    )
    all_reduce = jax.jit(lambda g: jnp.sum(g, axis=0), out_shardings=sharding.replicated(exp.mesh))
    reduce_times = _timed(lambda: all_reduce(grads), args.steps)
    # The step's collectives: XLA:CPU keeps one all-reduce per BatchNorm statistic (synchronised
    # over the global batch), gradient leaf and metric; each costs a latency across processes.
    hlo = exp.step_fn.lower(holder["state"], batch).compile().as_text()
    count = len(re.findall(r"\ball-reduce(?:-start)?\(", hlo))
    chain = jax.jit(jax.shard_map(
        lambda v: jax.lax.fori_loop(0, count, lambda _, w: jax.lax.psum(w, "data") * 0.5, v),
        mesh=exp.mesh, in_specs=PartitionSpec("data"), out_specs=PartitionSpec("data"),
        check_vma=False,
    ))  # fmt: skip
    small = jax.make_array_from_callback(
        (devices * 8,), sharding.batch_sharding(exp.mesh), lambda _: np.ones(8, np.float32)
    )
    chain_times = _timed(lambda: chain(small), args.steps)
    start = time.perf_counter()
    for _ in range(args.steps):
        next(loader)
    load_s = (time.perf_counter() - start) / args.steps
    if jax.process_index() == 0:
        step = statistics.median(step_times)
        print("RESULT " + json.dumps({
            "processes": jax.process_count(), "devices": devices, "step_s": step,
            "images_per_s": cfg.train.batch_size / step,
            "all_reduce_s": statistics.median(reduce_times), "floats": n_params,
            "step_all_reduces": count, "chain_s": statistics.median(chain_times),
            "loader_batches_per_s": 1.0 / load_s,
        }), flush=True)  # fmt: skip


def _timed(fn, steps: int) -> list[float]:
    """Seconds of each of `steps` calls of `fn` (waited for), after two warm-up calls."""
    import jax

    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        if i >= 2:
            times.append(time.perf_counter() - start)
    return times


def _load_config(path: str):
    import importlib.util

    sys.path.insert(0, ROOT)
    spec = importlib.util.spec_from_file_location("bench_config", os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def run_layout(args, processes: int, devices: int, batch_size: int = 0) -> dict:
    """One layout: `processes` x `devices` per process (`batch_size` 0: the config's)."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--config", args.config,
               "--steps", str(args.steps), "--batch_size", str(batch_size)]  # fmt: skip
    if args.data_dir is not None:
        command += ["--data_dir", args.data_dir]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    if processes == 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    else:
        command = [sys.executable, os.path.join(ROOT, "scripts", "launch_local.py"),
                   "--processes", str(processes), "--devices_per_process", str(devices), "--",
                   *command]  # fmt: skip
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    lines = [x for x in proc.stdout.splitlines() if "RESULT " in x]
    if proc.returncode != 0 or not lines:
        sys.exit(f"error: layout {processes} x {devices} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[0].split("RESULT ", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/quickstart.py")
    parser.add_argument("--devices", type=int, default=2, help="devices in every layout")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--data_dir", default=None,
                        help="TFDS data dir (default: the config's)")  # fmt: skip
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch_size", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.devices < 2 or args.devices & (args.devices - 1):
        print("error: --devices must be a power of two, at least 2", file=sys.stderr)
        sys.exit(2)
    layouts, p = [], 1
    while p <= args.devices:
        layouts.append(p)
        p *= 2
    batch = _load_config(args.config).train.batch_size
    # The per-device program without other devices: 1 x 1 on one device's share of the batch.
    alone = run_layout(args, 1, 1, batch // args.devices)
    print(f"1 x 1 on {batch // args.devices} images (one device's share, no collective): train "
          f"step {1000 * alone['step_s']:.1f} ms", flush=True)  # fmt: skip
    results = []
    for processes in layouts:
        r = run_layout(args, processes, args.devices // processes)
        results.append(r)
        print(f"{r['processes']} x {r['devices'] // r['processes']}: train step "
              f"{1000 * r['step_s']:.1f} ms ({r['images_per_s']:.0f} images/s), gradient "
              f"all-reduce of {r['floats'] / 1e6:.2f} M floats {1000 * r['all_reduce_s']:.2f} ms "
              f"({100 * r['all_reduce_s'] / r['step_s']:.1f} % of the step); the step's "
              f"{r['step_all_reduces']} all-reduces, one after another (8 floats each): "
              f"{1000 * r['chain_s']:.1f} ms ({100 * r['chain_s'] / r['step_s']:.0f} % of the "
              f"step); loader "
              f"{r['loader_batches_per_s']:.1f} batches/s per process", flush=True)  # fmt: skip
    base = results[0]
    for r in results[1:]:
        print(f"{r['processes']} processes vs 1: step time x{r['step_s'] / base['step_s']:.2f}, "
              f"gradient all-reduce x{r['all_reduce_s'] / base['all_reduce_s']:.1f} (+"
              f"{1000 * (r['all_reduce_s'] - base['all_reduce_s']):.2f} ms), the step's "
              f"all-reduces in a row +{1000 * (r['chain_s'] - base['chain_s']):.1f} ms of the "
              f"+{1000 * (r['step_s'] - base['step_s']):.1f} ms per step")  # fmt: skip
    for r in results:
        print(f"{r['processes']} x {r['devices'] // r['processes']}: communication and waiting "
              f"for the other devices = step - the 1 x 1 step = "
              f"{1000 * (r['step_s'] - alone['step_s']):.1f} ms "
              f"({100 * (1 - alone['step_s'] / r['step_s']):.0f} % of the step)")  # fmt: skip


if __name__ == "__main__":
    main()
