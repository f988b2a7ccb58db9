"""Measure, once, across seeds, by how much every method beats the label-frequency baseline in the
short run of configs/learning_check.py; tests/test_methods_learn.py asserts the margins.

  python scripts/learning_margins.py                       # every method, seeds 0-4; resumes
  python scripts/learning_margins.py --methods sst hst     # some methods
  python scripts/learning_margins.py --from-json           # recompute the margins of the committed
                                                           # file from its recorded runs (prints)

Each run is the command a user types, `python -m mlrpl_jax.train --config
configs/learning_check.py:METHOD` with `config.seed` and `config.data.label_seed` = the seed, on one
CPU device with XLA's optimisations off (JAX_DISABLE_MOST_OPTIMIZATIONS: tiny programs for a few
dozen steps), so that the test's seed-0 run is the run recorded here. Per run: the final test mAP (the checkpoint selected on the validation split), the
frequency baseline (the mAP of a constant score per class: the mean over classes of the test
split's positive rate), their gap, and for a method with pseudo labels the precision of its pseudo
positives in its last epoch that had any (`train_epoch/<name>_precision`) against the positive
rate among the unknown train entries (what a random choice would reach).

The margin of a method (the `RULE`) = min over seeds of the gap - max(1, 2 x sample std of the
gaps): a rerun of seed 0 passes wherever the runs reproduce within their own seed spread, and
fails when a change costs more. Written to docs/results/learning_margins.json (atomically after
every run; runs already recorded are not repeated).
"""

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

RULE = "min over seeds of (test mAP - frequency baseline) - max(1.0, 2 x sample std over seeds)"
DEFAULT_OUT = os.path.join(ROOT, "docs", "results", "learning_margins.json")


def methods_measured() -> list[str]:
    """Every registered method but `clip_pretrain`: contrastive pretraining from scratch needs far
    longer than a check to score anything zero-shot (configs/pretrain_clip_synthetic.py: 25
    minutes); tests/test_clip_pretrain.py checks that it learns by fitting one batch."""
    from mlrpl_jax import methods

    return sorted(m for m in methods.METHODS if m != "clip_pretrain")


def overrides(seed: int, data_dir: str) -> dict:
    """The keys a measurement sets on `configs/learning_check.py:METHOD` (as --config.KEY flags)."""
    return {"seed": seed, "data.label_seed": seed, "data.data_dir": data_dir,
            "train.progress_bar": False}  # fmt: skip


def check_config(method: str, seed: int, data_dir: str):
    """The config of `measure`'s run, in this process."""
    from configs import learning_check

    config = learning_check.get_config(method)
    for key, value in overrides(seed, data_dir).items():
        *parents, leaf = key.split(".")
        node = config
        for name in parents:
            node = node[name]
        node[leaf] = value
    return config


def unknown_positive_rate(config) -> float:
    """The fraction of positives among the unknown entries of the train split (its hidden labels
    under the run's partial-label masks): the precision of pseudo positives chosen at random."""
    import numpy as np

    from mlrpl_jax.data import label_semantics, pipeline

    source = pipeline.make_source(config.data, config.data.train_split)
    full = source.labels_matrix() > 0
    partial = label_semantics.train_partial_labels(config.data, source)
    unknown = partial == 0
    return float(np.sum(full & unknown) / max(np.sum(unknown), 1))


def frequency_baseline(config) -> float:
    """The test mAP (%) of a constant score per class: the mean over classes of the positive rate."""
    from mlrpl_jax.data import pipeline

    test = pipeline.make_source(config.data, config.data.test_split).labels_matrix()
    return float(100.0 * (test > 0).mean(axis=0).mean())


def pseudo_precisions(workdir: str) -> dict[str, float]:
    """{name: precision of its pseudo positives in the last epoch that had any} of a finished run."""
    out = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            for key, value in record.items():
                if key.startswith("train_epoch/") and key.endswith("_precision"):
                    out[key[len("train_epoch/") : -len("_precision")]] = value
    return out


def measure(method: str, seed: int, data_dir: str, workdir: str) -> dict:
    """One run of the learning check, as a user types it (`TRAIN_COMMAND`, one CPU device)."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one device, not the tests' 8
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"  # tiny programs for a few dozen steps
    command = [sys.executable, "-m", "mlrpl_jax.train",
               f"--config=configs/learning_check.py:{method}", f"--workdir={workdir}",
               *(f"--config.{k}={v}" for k, v in overrides(seed, data_dir).items())]  # fmt: skip
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {proc.returncode}:\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")  # fmt: skip
    with open(os.path.join(workdir, "results.json")) as f:
        final = json.load(f)["metrics"]
    config = check_config(method, seed, data_dir)
    baseline = frequency_baseline(config)
    record = {
        "seed": seed,
        "mAP": round(final["mAP"], 2),
        "baseline": round(baseline, 2),
        "gap": round(final["mAP"] - baseline, 2),
    }
    pseudo = pseudo_precisions(workdir)
    if pseudo:
        record["pseudo_precision"] = {k: round(v, 4) for k, v in sorted(pseudo.items())}
        record["unknown_positive_rate"] = round(unknown_positive_rate(config), 4)
    return record


def margin(gaps: list[float]) -> float:
    import numpy as np

    return round(min(gaps) - max(1.0, 2.0 * float(np.std(gaps, ddof=1))), 2)


def margins(runs: dict[str, list[dict]]) -> dict[str, float]:
    """{method: margin} of the recorded runs (methods with 2 or more seeds)."""
    return {m: margin([r["gap"] for r in rs]) for m, rs in sorted(runs.items()) if len(rs) >= 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="*", default=None, help="default: every method")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    parser.add_argument("--workdir", default=os.path.join(ROOT, "runs", "learning_margins"))
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument(
        "--from-json", action="store_true",
        help="print the margins recomputed from the recorded runs of --out (nothing is run or "
        "written): how scripts/check_published.py checks the committed file",
    )  # fmt: skip
    args = parser.parse_args()

    from mlrpl_jax import cli, errors
    from mlrpl_jax.metric_writer import atomic_write_json

    with cli.user_errors():
        if args.from_json:
            if not os.path.exists(args.out):
                raise errors.InputError(f"{args.out}: no such file.")
            with open(args.out) as f:
                print(json.dumps(margins(json.load(f)["runs"]), indent=2))
            return
        known = methods_measured()
        chosen = known if not args.methods else args.methods
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            raise errors.InputError(f"--methods: unknown {unknown}; one of {known}.")
        if len(set(args.seeds)) < 2:
            raise errors.InputError("--seeds: a margin needs 2 or more seeds.")
        result = {"config": "configs/learning_check.py", "rule": RULE, "runs": {}}
        if os.path.exists(args.out):
            with open(args.out) as f:
                result = json.load(f)
        data_dir = os.path.join(args.workdir, "data")
        for method in chosen:
            done = {r["seed"] for r in result["runs"].get(method, [])}
            for seed in args.seeds:
                if seed in done:
                    continue
                workdir = os.path.join(args.workdir, method, f"seed_{seed}")
                record = measure(method, seed, data_dir, workdir)
                print(f"{method} seed {seed}: {json.dumps(record)}", flush=True)
                runs = result["runs"].setdefault(method, [])
                runs.append(record)
                runs.sort(key=lambda r: r["seed"])
                result["margins"] = margins(result["runs"])
                atomic_write_json(args.out, result)
        print(json.dumps(result.get("margins", {}), indent=2))


if __name__ == "__main__":
    main()
