"""Run a grid of methods x known-label proportions x seeds and tabulate the test mAP.

  python scripts/sweep.py --config configs/ssgrl_synthetic.py --methods plain ssgrl \
      --proportions 0.1 0.3 1.0 --seeds 0 1 2 --workdir runs/sweep_ssgrl

Each run is `python -m mlrpl_jax.train --config <config>:<method>` in its own process and workdir
(`<workdir>/<method>_p<proportion>_s<seed>`), with `seed` and `data.label_seed` both set to the seed,
so seeds differ in initialisation, data order, augmentation and which labels are known. A run whose
workdir already holds results.json is not repeated (rerun the command to resume an interrupted
sweep). The table (mean +- standard deviation over seeds, and every seed) is printed and written
to `<workdir>/summary.md` and `<workdir>/summary.json`.

Runs are started seed by seed (every method and proportion of seed 0 first), so an interrupted
sweep already holds whole tables of its first seeds. Before anything is written, each method's
config (with the overrides) is checked as its runs will load it (`python -m mlrpl_jax.train
--print_config`), so a misspelt method or key is one error message (exit status 2), not a failed
sweep. The runs share a persistent XLA compilation
cache (``--compilation_cache``, default ``<workdir>/jax_cache``; ``none`` disables it), so the
steps of a (method, shapes) pair are compiled once per sweep, not once per run.

``--parallel N`` runs N runs at once (e.g. on a GPU host with many cores; each run's own data
pipeline uses the CPUs). When N > 1 and XLA_PYTHON_CLIENT_PREALLOCATE is unset, it is set to
false so that the runs can share one accelerator's memory. A failed run does not stop the others;
the sweep reports every failure at the end and exits with an error.
"""

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mlrpl_jax import cli, errors

# The tail of `mlrpl_jax.train`'s user-error message that refers to its own command line.
_TRAIN_HELP_HINT = "Run with --help for the flags."


class RunFailed(Exception):
    """A run of the sweep failed; `user_error` when `mlrpl_jax.train` reported a user error."""

    def __init__(self, message: str, user_error: bool):
        super().__init__(message)
        self.user_error = user_error


def train_command(args, method: str, proportion: float, seed: int, workdir: str) -> list[str]:
    """The `mlrpl_jax.train` command line of one run."""
    return [
        sys.executable, "-m", "mlrpl_jax.train",
        f"--config={args.config}:{method}", f"--workdir={workdir}",
        f"--config.seed={seed}", f"--config.data.label_seed={seed}",
        f"--config.data.known_proportion={proportion}", "--config.train.progress_bar=False",
        *args.overrides,
    ]  # fmt: skip


def user_error_message(stderr: str) -> str:
    """The message of `mlrpl_jax.train`'s `error: ...` output (status 2)."""
    text = stderr.strip()
    if "error: " in text:
        text = text[text.rindex("error: ") + len("error: ") :]
    return text.replace(_TRAIN_HELP_HINT, "").strip()


def check_configs(args) -> None:
    """Loads and validates each method's config with the sweep's overrides, as its runs will
    (`mlrpl_jax.train --print_config`, one process per method, up to one per CPU at once).

    Raises:
        errors.ConfigError: for the first method whose config does not load or validate.
    """

    def check(method: str) -> tuple[str, subprocess.CompletedProcess]:
        cmd = train_command(args, method, args.proportions[0], args.seeds[0], args.workdir)
        cmd = [a for a in cmd if not a.startswith("--workdir=")] + ["--print_config"]
        return method, subprocess.run(cmd, capture_output=True, text=True, check=False)

    workers = min(len(args.methods), os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        checked = list(pool.map(check, args.methods))
    for method, proc in checked:
        if proc.returncode == cli.EXIT_USER_ERROR:
            raise errors.ConfigError(f"{args.config}:{method}: {user_error_message(proc.stderr)}")
        if proc.returncode != 0:  # not the user's: show what happened
            sys.stderr.write(proc.stderr[-4000:])
            raise RuntimeError(f"checking the config of {method} failed ({proc.returncode}).")


def check_args(args) -> None:
    """The command line's values that need no config loading."""
    path = args.config
    if ":" in os.path.basename(path):
        raise errors.ConfigError(
            f"--config {path}: give the file alone; the sweep appends :METHOD for each of "
            "--methods."
        )
    if not os.path.isfile(path):
        raise errors.MissingFileError(
            f"--config {path}: no such config file (a file whose get_config(method) takes the "
            "method, e.g. configs/synthetic_transfer.py)."
        )
    bad = [p for p in args.proportions if not 0.0 < p <= 1.0]
    if bad:
        raise errors.ConfigError(f"--proportions {bad}: each must be in (0, 1].")
    if args.parallel < 1:
        raise errors.ConfigError(f"--parallel {args.parallel}: must be >= 1.")
    if len(set(args.methods)) != len(args.methods):
        raise errors.ConfigError(f"--methods {' '.join(args.methods)}: a method is listed twice.")


def run_one(args, method: str, proportion: float, seed: int) -> dict:
    workdir = os.path.join(args.workdir, f"{method}_p{proportion:g}_s{seed}")
    results = os.path.join(workdir, "results.json")
    if not os.path.exists(results):
        cmd = train_command(args, method, proportion, seed, workdir)
        start = time.perf_counter()
        print(f"[sweep] {method} p={proportion:g} seed={seed} ...", flush=True)
        env = dict(os.environ)
        if args.compilation_cache != "none":
            env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.abspath(args.compilation_cache))
            env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if proc.returncode == cli.EXIT_USER_ERROR:
            raise RunFailed(
                f"[sweep] {method} p={proportion:g} seed={seed}: {user_error_message(proc.stderr)}",
                user_error=True,
            )
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
            raise RunFailed(f"[sweep] run failed: {' '.join(cmd)}", user_error=False)
        took = time.perf_counter() - start
        print(f"[sweep]   {method} p={proportion:g} seed={seed} done in {took:.0f} s", flush=True)
    with open(results) as f:
        return json.load(f)["metrics"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="config file whose get_config(method)")
    parser.add_argument("--methods", nargs="+", required=True)
    parser.add_argument("--proportions", nargs="+", type=float, required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--metric", default="mAP")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once")
    parser.add_argument(
        "--compilation_cache", default=None,
        help="persistent XLA cache shared by the runs (default <workdir>/jax_cache; 'none': off)",
    )  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="extra --config.x=y flags, after --")
    args = parser.parse_args(argv)
    with cli.user_errors():
        check_args(args)
        check_configs(args)
        sweep(args)


def sweep(args) -> None:
    """Runs the grid (resuming), prints and writes the table."""
    if args.compilation_cache is None:
        args.compilation_cache = os.path.join(args.workdir, "jax_cache")
    os.makedirs(args.workdir, exist_ok=True)
    if args.parallel > 1:
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    grid = [(m, p, s) for s in args.seeds for p in args.proportions for m in args.methods]
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.parallel) as pool:
        futures = [pool.submit(run_one, args, *job) for job in grid]
    table, failures = {}, []
    for (method, proportion, seed), future in zip(grid, futures, strict=True):
        try:
            m = future.result()
        except RunFailed as e:
            failures.append(e)
            continue
        if args.metric not in m:
            raise errors.ConfigError(
                f"--metric {args.metric}: not among the runs' metrics ({', '.join(sorted(m))})."
            )
        table.setdefault(method, {}).setdefault(f"{proportion:g}", []).append(m[args.metric])
    if failures:
        print("\n".join(str(e) for e in failures), file=sys.stderr)
        if all(e.user_error for e in failures):
            cli.fail(f"{len(failures)} of {len(grid)} runs failed (above).")
        raise SystemExit(f"{len(failures)} of {len(grid)} runs failed (above).")
    cols = [f"{p:g}" for p in args.proportions]
    lines = [
        f"Test {args.metric} (%) on {args.config}, mean +- std over seeds {args.seeds}",
        "",
        "| method | " + " | ".join(f"{float(c) * 100:g}% known" for c in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for method in args.methods:
        cells = []
        for c in cols:
            v = np.asarray(table[method][c])
            each = ", ".join(f"{x:.1f}" for x in v)
            cells.append(f"{v.mean():.2f} +- {v.std(ddof=1) if len(v) > 1 else 0.0:.2f} ({each})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(args.workdir, "summary.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.workdir, "summary.json"), "w") as f:
        json.dump({"config": args.config, "metric": args.metric, "table": table}, f, indent=1)


if __name__ == "__main__":
    main()
