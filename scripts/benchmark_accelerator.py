"""Accelerator benchmark of the headline methods' train step: images/s, input wait, memory, MFU.

  python scripts/benchmark_accelerator.py                     # on a GPU / TPU host, ~5 minutes
  python scripts/benchmark_accelerator.py --max_minutes 0     # every case (~15-20 min first run)
  python scripts/benchmark_accelerator.py --methods dualcoop --dtypes bfloat16 --batch 64
      # beside the PyTorch DualCoOp's logged 225 images/s at batch 64 in 7.7 GB (RN101, AMP)
  python scripts/benchmark_accelerator.py --tiny --methods plain,sst,dualcoop --steps 2 --out F

A case is one method (plain, ssgrl, sst, hst, sarb, dsrb, imbalance, dualcoop, trm_ml) in one
`config.model.dtype`, at its paper config (configs/<method>_coco.py; plain: ssgrl_coco.py:plain,
dualcoop: the ':official' variant) and batch (`--batch` overrides), random weights, the clock in
the last epoch (every phase-gated loss term on; the epoch-boundary K-means refresh is not timed).
Each case runs in its own process on every device of this host (one host, data parallel): the
device's peak memory is the case's, and a case that runs out of memory is reported while the
next one goes on. Input: the real train loader (partial labels, the config's augmentation,
`--workers` grain workers, default the config's) over the synthetic scenes with the config's
classes, raw 480-px images (generated once into `--data_dir`; no JPEG decode, so real data costs
the host more: `--real_data` reads the configs' own prepared datasets). Per case: the trainer's jitted step compiled once, 2 warm-up steps, two timed loops
of `--steps`: *with input*, the trainer's loop (`next(loader)`, `sharding.host_to_global` of the
whole batch dict, the step dispatched asynchronously, so input and compute overlap as in
training), up to `jax.block_until_ready` of the last outputs; *step only*, the same on one fixed
device-resident batch (the accelerator's ceiling). Reported:

* images/s with input and step only; input wait = (time with input - time step only) / time
  with input, in [0, 1]: the share of training time the device waits for the host (the JSON
  also holds the host's seconds per batch in `next` + `host_to_global`);
* peak device memory: `memory_stats()['peak_bytes_in_use']` on GPU/TPU (it includes what
  compilation's autotuning allocated), n/a on CPU; and XLA's memory of the compiled step
  (arguments + outputs + temporaries - aliased, as `mlrpl_jax.plan`);
* train GFLOPs per image from XLA's cost analysis of the compiled step, as `mlrpl_jax.plan` (a
  multiply-add is 2 FLOPs, forward + backward); MFU = GFLOPs per image x images/s (step only) /
  (peak FLOP/s x devices), the peak from `PEAK_TFLOPS` by device kind or `--peak_tflops`, else n/a;
* compile seconds (a hit in `--xla_cache` loads in ~1 s).

Duration on one H100 (estimated, not measured): per case ~10 s of process start and set-up, the
compile (~20-60 s at 448 px; XLA's autotuning results and programs are kept in `--xla_cache`, so
a re-run mostly skips it) and 2 x `--steps` steps of < 1 s: ~1 min per case on a first run, all 18
cases in ~15-20 min. Cases run bfloat16 first, then float32; `--max_minutes` (default 5) starts
no case that would end past it and lists the skipped ones (0: no limit). `--tiny` is the CPU mode
of the tests (ResNet-18 of width 8, 64 px, C = 4, batch 4, the small CLIP).
"""

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# method: (configs/ module, its get_config argument or None)
METHODS = {
    "plain": ("ssgrl_coco", "plain"), "ssgrl": ("ssgrl_coco", None),
    "sst": ("sst_coco", None), "hst": ("hst_coco", None), "sarb": ("sarb_coco", None),
    "dsrb": ("dsrb_coco", None), "imbalance": ("imbalance_coco", None),
    "dualcoop": ("dualcoop_coco", "official"), "trm_ml": ("trm_ml_coco", None),
}  # fmt: skip
DTYPES = ("bfloat16", "float32")
WARMUP_STEPS = 2
CASE_TIMEOUT_S = 900  # a case that runs longer is stopped and reported
SYNTHETIC_SIZE, SYNTHETIC_TRAIN = 480, 256  # raw images of the paper-shape input (~COCO's side)
TINY_CLASSES, TINY_BATCH, TINY_SIZE = 4, 4, 64

# Dense peak TFLOP/s per chip from the vendors' data sheets (NVIDIA: the tensor-core figures
# "with sparsity" halved; Google Cloud TPU: bf16 per chip): (pattern in jax's device_kind,
# bfloat16, float32). float32 on Ampere and later GPUs is the TF32 tensor-core figure (XLA's
# default precision runs float32 dots and convolutions in TF32 there); on TPUs the bf16 figure
# (the default precision multiplies float32 in one bf16 pass); on V100 (no bf16 or TF32 units)
# the FP32 figure for both. Patterns are tried in order, on the lower-cased device_kind.
PEAK_TFLOPS = (
    ("h100 nvl", 835.5, 417.5), ("h100 pcie", 756.5, 378.0), ("h100", 989.4, 494.7),
    ("h200 nvl", 835.5, 417.5), ("h200", 989.4, 494.7), ("a100", 312.0, 156.0),
    ("v100s", 16.4, 16.4), ("v100-pcie", 14.0, 14.0), ("v100", 15.7, 15.7),
    ("nvidia l4", 121.0, 60.0), ("tpu v4", 275.0, 275.0),
    ("tpu v5 lite", 197.0, 197.0), ("tpu v5e", 197.0, 197.0), ("tpu v5p", 459.0, 459.0),
    ("tpu v5", 459.0, 459.0), ("tpu v6 lite", 918.0, 918.0), ("tpu v6e", 918.0, 918.0),
)  # fmt: skip


def peak_tflops(device_kind: str, dtype: str, override: tuple[float, float] | None = None):
    """Dense peak TFLOP/s of one chip of `device_kind` for `dtype`: `override` (bfloat16,
    float32) when given, else `PEAK_TFLOPS`'s first match, else None (MFU n/a)."""
    if override is not None:
        return override[DTYPES.index(dtype)]
    kind = device_kind.lower()
    if kind.endswith(" lite") and "tpu v4" in kind:  # v4i: not in the table
        return None
    for pattern, bf16, f32 in PEAK_TFLOPS:
        if pattern in kind and not (pattern == "nvidia l4" and "nvidia l40" in kind):
            return bf16 if dtype == "bfloat16" else f32
    return None


def make_config(method: str, dtype: str, tiny: bool, batch: int, workers: int | None):
    """The paper config of `method` (`METHODS`) in `dtype`, random weights, `batch` (0: the
    config's); with `tiny` shrunk to CPU scale. Its data is still the paper's dataset."""
    import importlib

    module, arg = METHODS[method]
    get_config = importlib.import_module(f"configs.{module}").get_config
    config = get_config() if arg is None else get_config(arg)
    config.model.dtype = dtype
    config.model.backbone_weights = None
    mc = config.method_config
    if "clip_weights" in mc:
        mc.clip_weights = None
    if tiny:
        m = config.model
        m.backbone, m.width, m.avg_pool_2x2, m.feature_dim, m.attention_dim = (
            "resnet18", 8, False, 16, 8)  # fmt: skip
        config.data.size_factor = TINY_SIZE / 448
        config.train.batch_size = TINY_BATCH
        config.data.worker_count = 0  # 2 CPU cores
        shrink = {"ist_hidden_dim": 8, "ist_pair_dim": 16, "prototype_max_per_class": 16,
                  "bank_size": 8, "clip_arch": "synthetic_rn", "ffn_dim": 32, "mlp_dim": 32,
                  "bank_length": 8}  # fmt: skip
        for key, value in shrink.items():
            if key in mc:
                mc[key] = value
        if "top_k" in mc and "bank_length" in mc:  # TRM-ML: k of the (S/32)^2 token grid
            from mlrpl_jax.methods import trm_ml

            mc.top_k = trm_ml.top_k_for_tokens((TINY_SIZE // 32) ** 2)
    if batch:
        config.train.batch_size = batch
    if workers is not None:
        config.data.worker_count = workers
    return config


def synthetic_params(config, tiny: bool) -> dict:
    """The synthetic scenes that stand in for `config`'s dataset (its class count)."""
    from mlrpl_jax import plan

    if tiny:
        size, classes, n = round(TINY_SIZE * 512 / 448) + 1, TINY_CLASSES, 32
    else:
        size, classes, n = SYNTHETIC_SIZE, plan.dataset_shape(config.data)[1], SYNTHETIC_TRAIN
    return {"image_size": size, "num_classes": classes, "num_train": n, "num_test": 8,
            "num_val": 0, "seed": 0, "difficulty": 1.0}  # fmt: skip


def _data_info(config, source, n: int, c: int):
    """DataInfo of N = `n` examples (the paper's split, so per-example tables have its rows),
    C = `c` classes named as `source`'s, random partial labels, fallback embeddings (as plan)."""
    import numpy as np

    from mlrpl_jax import plan

    labels = np.random.default_rng(0).integers(-1, 2, size=(n, c), dtype=np.int8)
    return plan.data_info_without_data(
        config, tuple(source.class_names), n, lambda: labels, "benchmark"
    )


def _gflops(stage, devices: int, batch: int) -> float:
    """Train GFLOPs per image of a lowered or compiled step: XLA's cost analysis counts one
    device's share of an SPMD program, so x devices / global batch (as `mlrpl_jax.plan`); NaN
    where the backend gives none."""
    try:
        cost = stage.cost_analysis()
    except Exception:  # noqa: BLE001 - a backend without cost analysis raises
        cost = None
    cost = cost[0] if isinstance(cost, (list, tuple)) and cost else cost
    flops = float((cost or {}).get("flops") or 0.0)
    return flops * devices / batch / 1e9 if flops > 0 else math.nan


def run_case(spec: dict) -> dict:
    """One case in this process (`--_case`); returns the measurements (see the docstring)."""
    import jax
    import numpy as np
    from absl import flags, logging

    flags.FLAGS.mark_as_parsed()  # grain's workers read absl flags
    logging.set_verbosity(logging.WARNING)
    jax.config.update("jax_threefry_partitionable", False)  # as mlrpl_jax.train
    if spec["xla_cache"]:
        jax.config.update("jax_compilation_cache_dir", spec["xla_cache"])
    from mlrpl_jax import config_validation, methods, plan, sharding, trainer
    from mlrpl_jax.data import pipeline

    tiny, begun = spec["tiny"], time.perf_counter()
    config = make_config(spec["method"], spec["dtype"], tiny, spec["batch"], spec["workers"])
    config_validation.validate(config_validation.resolve_none(config))
    if spec["data_dir"]:
        config.data.data_dir = spec["data_dir"]
    if spec["real_data"]:
        source = pipeline.make_splits(config.data).train
        n, c = len(source), source.num_classes
    else:
        params = synthetic_params(config, tiny)
        n = params["num_train"] if tiny else plan.dataset_shape(config.data)[0]
        c = params["num_classes"]
        config.data.name = "synthetic_scenes"
        config.data.synthetic.update(params)
        source = pipeline.make_source(config.data, "train")
    batch = config.train.batch_size
    mesh = sharding.make_mesh()
    devices = mesh.devices.size
    device = jax.local_devices()[0]
    result = {"batch": batch, "image_size": pipeline.image_size(config.data), "num_classes": c,
              "num_train": n, "devices": devices, "device_kind": device.device_kind,
              "platform": device.platform, "jax": jax.__version__,
              "workers": config.data.worker_count,
              "data": source.name if spec["real_data"] else
              f"synthetic_scenes (raw {config.data.synthetic.image_size} px)"}  # fmt: skip
    sharding.local_batch_size(batch, mesh)  # divisible by the devices, or a ConfigError
    loader = pipeline.make_train_loader(config.data, source, batch, config.seed)
    spe = max(1, n // batch)
    method = methods.get(config.method)
    fns = trainer.make_train_fns(
        config, method, _data_info(config, source, n, c), mesh, spe,
        spe * config.train.num_epochs, pretrained=False,
    )  # fmt: skip
    computes = getattr(fns.model, "dtype", None)  # a model that ignores model.dtype shows here
    if computes is not None and jax.numpy.dtype(computes) != jax.numpy.dtype(spec["dtype"]):
        result["note"] = f"the model computes in {jax.numpy.dtype(computes)}"
    clock = np.int32(spe * (config.train.num_epochs - 1))  # last epoch: every phase active
    state = fns.state.replace(step=jax.device_put(clock, fns.state_sharding.step))

    def next_batch():
        return sharding.host_to_global(next(loader), mesh)  # the loader's whole batch dict

    fixed = next_batch()
    start = time.perf_counter()
    result["setup_s"] = start - begun  # config, data, state (after the imports)
    lowered = fns.step_fn.lower(state, fixed)
    compiled = lowered.compile()
    result["compile_s"] = time.perf_counter() - start
    # The compiled step's count (plan's); the lowered program's (before XLA's passes) beside it.
    result["gflops_per_image_lowered"] = _gflops(lowered, devices, batch)
    result["gflops_per_image"] = _gflops(compiled, devices, batch)
    if not math.isfinite(result["gflops_per_image"]):
        result["gflops_per_image"] = result["gflops_per_image_lowered"]
    memory = compiled.memory_analysis()
    if memory is not None:
        result["step_memory_bytes"] = int(
            memory.argument_size_in_bytes + memory.output_size_in_bytes
            + memory.temp_size_in_bytes - memory.alias_size_in_bytes
        )  # fmt: skip
    for _ in range(WARMUP_STEPS):
        state, metrics = compiled(state, next_batch())
    jax.block_until_ready((state, metrics))
    steps, waited = spec["steps"], 0.0
    start = time.perf_counter()
    for _ in range(steps):  # as trainer._train_loop: input and the running step overlap
        t = time.perf_counter()
        batch_arrays = next_batch()
        waited += time.perf_counter() - t
        state, metrics = compiled(state, batch_arrays)
    jax.block_until_ready((state, metrics))
    with_input = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = compiled(state, fixed)
    jax.block_until_ready((state, metrics))
    step_only = time.perf_counter() - start
    stats = device.memory_stats() or {}
    peak = peak_tflops(device.device_kind, spec["dtype"], spec["peak_tflops"])
    result.update(
        status="ok", steps=steps, step_s=step_only / steps, input_s_per_batch=waited / steps,
        images_per_s=steps * batch / with_input, images_per_s_step_only=steps * batch / step_only,
        input_wait_share=min(1.0, max(0.0, (with_input - step_only) / with_input)),
        peak_memory_bytes=stats.get("peak_bytes_in_use"), memory_limit_bytes=stats.get("bytes_limit"),
        peak_tflops=peak, loss=float(metrics["loss"]),
    )  # fmt: skip
    flops = result["gflops_per_image"] * 1e9
    for key, rate in (("mfu", "images_per_s_step_only"), ("mfu_with_input", "images_per_s")):
        ok = peak is not None and math.isfinite(flops)
        result[key] = flops * result[rate] / (peak * 1e12 * devices) if ok else None
    return result


def case_main(spec: dict, result_path: str) -> None:
    """`--_case`: runs `spec`, writes its result (or its failure) to `result_path` as JSON."""
    import traceback

    from mlrpl_jax.errors import UserError

    try:
        result = run_case(spec)
    except UserError as e:  # a message, no traceback; the command ends with status 2
        result = {"status": "user_error", "error": str(e)}
    except Exception as e:  # noqa: BLE001 - every other failure is one case's result
        text = f"{type(e).__name__}: {e}"
        oom = any(s in text for s in ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory"))
        if not oom:
            traceback.print_exc()
        result = {"status": "oom" if oom else "error", "error": text[:2000]}
    finite = {k: None if isinstance(v, float) and not math.isfinite(v) else v
              for k, v in result.items()}  # fmt: skip
    with open(result_path, "w") as f:
        json.dump(finite, f)


def _gb(x) -> str:
    return "n/a" if x is None else f"{x / 1e9:.3g}"


def format_table(cases: list[dict]) -> str:
    """The final table, one row per case."""
    head = (f"{'method':<10} {'dtype':<9} {'batch':>5} {'px':>4} {'img/s':>8} {'step img/s':>10} "
            f"{'input wait':>10} {'peak GB':>8} {'XLA GB':>7} {'GFLOP/img':>9} {'MFU':>6} "
            f"{'compile s':>9}")  # fmt: skip
    rows = [head, "-" * len(head)]
    for r in cases:
        name = f"{r['method']:<10} {r['dtype']:<9}"
        if r["status"] != "ok":
            rows.append(f"{name} {r['status']}: {r.get('error', '')[:140]}")
            continue
        mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        rows.append(
            f"{name} {r['batch']:>5} {r['image_size']:>4} {r['images_per_s']:>8.1f} "
            f"{r['images_per_s_step_only']:>10.1f} {100 * r['input_wait_share']:>9.1f}% "
            f"{_gb(r['peak_memory_bytes']):>8} {_gb(r.get('step_memory_bytes')):>7} "
            f"{r['gflops_per_image']:>9.3g} {mfu:>6} {r['compile_s']:>9.1f}"
            + (f"  ({r['note']})" if "note" in r else "")
        )
    return "\n".join(rows)


def _run_child(spec: dict, env: dict) -> dict:
    """Runs one case in a new process (its own session, stopped whole on timeout)."""
    fd, path = tempfile.mkstemp(prefix="bench_case_", suffix=".json")
    os.close(fd)
    cmd = [sys.executable, os.path.abspath(__file__), "--_case", json.dumps(spec)]
    cmd += ["--_result", path]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=CASE_TIMEOUT_S)
    except (subprocess.TimeoutExpired, KeyboardInterrupt) as e:  # the case and its workers
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        os.remove(path)
        if isinstance(e, KeyboardInterrupt):
            raise
        return {"status": "error", "error": f"stopped after {CASE_TIMEOUT_S} s"}
    try:
        with open(path) as f:
            result = json.load(f)
    except (OSError, ValueError):
        result = {"status": "error", "error": f"the case's process exited with {proc.returncode}"
                  + (" (killed: out of host memory?)" if proc.returncode == -9 else "")}  # fmt: skip
    os.remove(path)
    if result["status"] == "error":
        print(output[-3000:], file=sys.stderr)
    return result


def preflight(args: argparse.Namespace) -> None:
    """Raises the user errors every case would meet (config values, CLIP's BPE vocabulary, an
    unprepared `--real_data` dataset) and generates the synthetic scenes the cases read."""
    from mlrpl_jax import config_validation
    from mlrpl_jax.data import pipeline, sources
    from mlrpl_jax.models import clip

    synthetic = {}
    for method in args.methods:
        config = make_config(method, "float32", args.tiny, args.batch, args.workers)
        config_validation.validate(config_validation.resolve_none(config))
        mc = config.method_config
        if "clip_arch" in mc:
            clip.make_tokenizer(clip.PRESETS[mc.clip_arch], mc.vocab_path)  # reads the vocabulary
        if args.real_data:
            config.data.data_dir = args.data_dir or config.data.data_dir
            pipeline.make_splits(config.data)
        else:
            params = synthetic_params(config, args.tiny)
            synthetic[json.dumps(params, sort_keys=True)] = params
    for params in synthetic.values():
        sources.make_source("synthetic_scenes", "train", data_dir=args.data_dir, synthetic=params)


def parse_args(argv: list[str]) -> argparse.Namespace:
    from mlrpl_jax import cli

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 1)[1],
    )  # fmt: skip
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    parser.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated, run in order")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per loop")
    parser.add_argument("--batch", type=int, default=0, help="global batch; 0: each config's")
    parser.add_argument("--tiny", action="store_true", help="CPU scale (the tests)")
    parser.add_argument("--out", default=None, help="JSON file, rewritten after each case")
    parser.add_argument(
        "--workers", type=int, default=None, help="grain workers; default: config's"
    )
    parser.add_argument("--peak_tflops", default=None,
                        help="peak TFLOP/s per chip: X (every dtype) or BF16,FP32")  # fmt: skip
    parser.add_argument("--data_dir", default=None, help="TFDS dir of the synthetic scenes")
    parser.add_argument("--real_data", action="store_true", help="the configs' own datasets")
    parser.add_argument("--xla_cache", default=None,
                        help="XLA compilation cache ('' = none); default $MLRPL_JAX_CACHE or "
                        "~/.cache/mlrpl_jax, /xla_benchmark")  # fmt: skip
    parser.add_argument("--max_minutes", type=float, default=5.0, help="0: no limit")
    parser.add_argument("--_case", help=argparse.SUPPRESS)
    parser.add_argument("--_result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._case:
        return args
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown or not args.methods:
        cli.fail(f"--methods: unknown {unknown or 'empty list'}; known: {', '.join(METHODS)}.")
    bad = [d for d in args.dtypes if d not in DTYPES]
    if bad or not args.dtypes:
        cli.fail(f"--dtypes: unknown {bad or 'empty list'}; known: {', '.join(DTYPES)}.")
    for name, value, low in (("steps", args.steps, 1), ("batch", args.batch, 0),
                             ("workers", args.workers, 0), ("max_minutes", args.max_minutes, 0)):  # fmt: skip
        if value is not None and value < low:
            cli.fail(f"--{name}={value}: must be >= {low}.")
    if args.peak_tflops is not None:
        try:
            values = [float(x) for x in args.peak_tflops.split(",")]
        except ValueError:
            values = []
        if len(values) not in (1, 2) or not all(math.isfinite(v) and v > 0 for v in values):
            cli.fail(f"--peak_tflops={args.peak_tflops!r}: write X or BF16,FP32 (TFLOP/s > 0).")
        args.peak_tflops = (values[0], values[-1])
    if args.out and not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        cli.fail(f"--out={args.out}: its directory does not exist.")
    if args.xla_cache is None:
        home = os.environ.get("MLRPL_JAX_CACHE") or os.path.expanduser("~/.cache/mlrpl_jax")
        args.xla_cache = os.path.join(home, "xla_benchmark")
    return args


def main(argv: list[str]) -> int:
    from mlrpl_jax import cli

    cli.quiet_logs()  # before TensorFlow (TFDS may import it) loads, here and in the cases
    args = parse_args(argv)
    if args._case:
        case_main(json.loads(args._case), args._result)
        return 0
    child_env = dict(os.environ)  # the cases see the user's devices
    os.environ["JAX_PLATFORMS"] = "cpu"  # this process never holds the accelerator
    from absl import flags

    flags.FLAGS.mark_as_parsed()
    from mlrpl_jax import paths

    with cli.user_errors():  # what every case needs, checked (and generated) once
        preflight(args)
    if args.xla_cache:
        os.makedirs(args.xla_cache, exist_ok=True)
    cases = [(m, d) for d in args.dtypes for m in args.methods]
    results, started, stop = [], time.perf_counter(), False
    for i, (method, dtype) in enumerate(cases):
        elapsed = time.perf_counter() - started
        # No new case once the next one (at the mean so far) would end past the limit.
        stop = stop or bool(
            args.max_minutes and i and elapsed * (1 + 1 / i) > 60 * args.max_minutes
        )
        print(f"[{i + 1}/{len(cases)}] {method} {dtype}: ", end="", flush=True)
        if stop:
            result = {"status": "skipped", "error": f"--max_minutes={args.max_minutes:g} reached"}
        else:
            spec = {"method": method, "dtype": dtype, "tiny": args.tiny, "batch": args.batch,
                    "workers": args.workers, "steps": args.steps, "data_dir": args.data_dir,
                    "real_data": args.real_data, "xla_cache": args.xla_cache,
                    "peak_tflops": args.peak_tflops}  # fmt: skip
            t = time.perf_counter()
            result = _run_child(spec, child_env)
            result["case_s"] = time.perf_counter() - t
        results.append({"method": method, "dtype": dtype, **result})
        r, line = results[-1], ""
        if r["status"] == "ok":
            line += (f"{r['images_per_s']:.1f} img/s ({r['images_per_s_step_only']:.1f} step only), "
                     f"input wait {100 * r['input_wait_share']:.0f}%, {r['case_s']:.0f} s")  # fmt: skip
        else:
            line += f"{r['status']}: {r.get('error', '')[:300]}"
        print(line, flush=True)
        if args.out:
            record = {"command": sys.argv, "elapsed_s": time.perf_counter() - started}
            paths.atomic_write_json(args.out, {**record, "cases": results})
    ok = [r for r in results if r["status"] == "ok"]
    if ok:
        r = ok[0]
        print(f"\n{r['device_kind']} x {r['devices']} ({r['platform']}), jax {r['jax']}; input: "
              f"{r['data']}, {r['workers']} grain workers; {args.steps} timed steps per loop, "
              f"{time.perf_counter() - started:.0f} s in all")  # fmt: skip
    print(format_table(results))
    skipped = [f"{r['method']}:{r['dtype']}" for r in results if r["status"] == "skipped"]
    if skipped:
        print(f"skipped (time limit): {', '.join(skipped)}")
    user = {r["error"]: None for r in results if r["status"] == "user_error"}
    if user:
        cli.fail("\n".join(user))
    return 1 if any(r["status"] == "error" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
