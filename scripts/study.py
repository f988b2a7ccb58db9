"""Runs a study (several sweeps) from a committed plan, resumably, and archives each finished run.

  python scripts/study.py docs/results/readings/plan.json            # run (or resume) it
  python scripts/study.py docs/results/readings/plan.json --status   # what is done, what is left

A plan is a JSON file:

  {"runs_dir": "runs/readings",                # where the runs live while they train
   "archive": "docs/results/readings/runs",    # where their records are kept (archive_runs.py)
   "sweeps": [{"name": "imbalance_pal", "config": "configs/synthetic_transfer.py",
               "methods": ["imbalance"], "proportions": [0.1, 0.5], "seeds": [0, 1, 2],
               "overrides": ["--config.method_config.use_d=False"]}, ...]}

Each sweep is `scripts/sweep.py` in `<runs_dir>/<name>` with its overrides. The study goes seed by
seed (every sweep's seed 0 first), so an interrupted study already holds whole tables of its first
seeds; after each (sweep, seed) the finished runs are archived, so a study spread over several
sessions (whose `runs/` may not persist) loses nothing that finished: a run already archived is not
trained again. `python -m mlrpl_jax.report <archive>/...` then builds the tables from the archive.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mlrpl_jax import cli, errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = {"name", "config", "methods", "proportions", "seeds", "overrides"}


def load_plan(path: str) -> dict:
    """The plan at `path`, checked (every sweep has every key, names are unique)."""
    try:
        with open(path) as f:
            plan = json.load(f)
    except FileNotFoundError:
        raise errors.MissingFileError(f"plan {path} does not exist.") from None
    except ValueError as e:
        raise errors.InputError(f"plan {path} is not JSON ({e}).") from None
    for key in ("runs_dir", "archive", "sweeps"):
        if key not in plan:
            raise errors.InputError(f"plan {path} has no {key!r} (see scripts/study.py).")
    names = [s.get("name") for s in plan["sweeps"]]
    for sweep in plan["sweeps"]:
        missing = KEYS - set(sweep)
        if missing:
            raise errors.InputError(f"plan {path}: sweep {sweep.get('name')!r} lacks {missing}.")
    if len(set(names)) != len(names):
        raise errors.InputError(f"plan {path}: sweep names repeat: {names}.")
    return plan


def run_name(method: str, proportion: float, seed: int) -> str:
    """The run directory name `scripts/sweep.py` gives (method, proportion, seed)."""
    return f"{method}_p{proportion:g}_s{seed}"


def runs_of(sweep: dict, seed: int) -> list[str]:
    return [run_name(m, p, seed) for m in sweep["methods"] for p in sweep["proportions"]]


def is_archived(plan: dict, sweep: dict, run: str) -> bool:
    return os.path.exists(os.path.join(plan["archive"], sweep["name"], run, "results.json"))


def status(plan: dict) -> tuple[int, int]:
    """Prints each sweep's archived / planned runs; returns the totals."""
    done = total = 0
    for sweep in plan["sweeps"]:
        runs = [r for s in sweep["seeds"] for r in runs_of(sweep, s)]
        have = sum(is_archived(plan, sweep, r) for r in runs)
        print(f"{sweep['name']}: {have}/{len(runs)} runs archived")
        done, total = done + have, total + len(runs)
    print(f"total: {done}/{total}")
    return done, total


def restore_archived(plan: dict, sweep: dict, seed: int, workdir: str) -> None:
    """Copies the records of archived runs back into `workdir` (a new session's empty runs_dir),
    so that the sweep sees them finished and does not train them again."""
    for name in runs_of(sweep, seed):
        source = os.path.join(plan["archive"], sweep["name"], name)
        target = os.path.join(workdir, name)
        if is_archived(plan, sweep, name) and not os.path.exists(
            os.path.join(target, "results.json")
        ):
            shutil.copytree(source, target, dirs_exist_ok=True)


def run(plan: dict) -> None:
    """Trains what is not archived yet, seed by seed, archiving after each (sweep, seed)."""
    seeds = sorted({s for sweep in plan["sweeps"] for s in sweep["seeds"]})
    for seed in seeds:
        for sweep in plan["sweeps"]:
            if seed not in sweep["seeds"]:
                continue
            if all(is_archived(plan, sweep, r) for r in runs_of(sweep, seed)):
                continue
            workdir = os.path.join(plan["runs_dir"], sweep["name"])
            restore_archived(plan, sweep, seed, workdir)
            cmd = [
                sys.executable, "scripts/sweep.py", "--config", sweep["config"],
                "--methods", *sweep["methods"],
                "--proportions", *map(str, sweep["proportions"]),
                "--seeds", str(seed), "--workdir", workdir,
                "--compilation_cache", os.path.join(plan["runs_dir"], "jax_cache"),
            ]  # fmt: skip
            if sweep["overrides"]:
                cmd += ["--", *sweep["overrides"]]
            print(f"[study] {sweep['name']} seed {seed}", flush=True)
            proc = subprocess.run(cmd, cwd=ROOT, check=False)
            if os.path.isdir(workdir):
                subprocess.run(
                    [sys.executable, "scripts/archive_runs.py", workdir, "--out", plan["archive"]],
                    cwd=ROOT, check=True,
                )  # fmt: skip
            if proc.returncode != 0:
                raise SystemExit(f"[study] sweep {sweep['name']} seed {seed} failed; see above.")
    status(plan)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("plan", help="the study's plan (JSON)")
    parser.add_argument("--status", action="store_true", help="only report progress")
    args = parser.parse_args(argv)
    with cli.user_errors():
        plan = load_plan(args.plan)
    if args.status:
        status(plan)
    else:
        run(plan)


if __name__ == "__main__":
    main()
