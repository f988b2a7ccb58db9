"""Choose the CPU-scale pseudo-label thresholds of SST and HST on the validation split.

  python scripts/calibrate_transfer.py --workdir runs/calibrate_transfer \
      --out docs/results/synthetic_transfer_calibration.json

The papers' constants (SST: theta_intra = theta_inter = 0.95 at the first pseudo-label epoch; HST:
learnable margins initialised at 1.0) were set for ResNet-101 on COCO; they stay the defaults of
the paper configs. For the CPU-scale transfer benchmark (`configs/synthetic_transfer.py`) this
script picks them by a rule fixed before looking at any result, which never sees test data:

1. Train the method with the benchmark recipe up to its first pseudo-label epoch (the epochs before
   it do not depend on the thresholds), for known proportions 10 %, 50 % and 90 %, seed 0. HST
   then computes its prototypes as it does at that epoch.
2. On the *validation* split (500 images that no training step sees, with their partial-label mask
   drawn as for training), compute the method's own pseudo-label scores of every unknown entry
   (intra-image: the known-positive average of the IST co-occurrence; cross-image: SST's mean
   cosine to the bank, HST's mean cosine to the class prototypes) and, for each threshold of a grid
   (0.05 .. 0.99 by 0.01), the precision and recall of the pseudo positives against the
   validation images' full labels.
3. Pick, per method and branch, the smallest threshold whose validation precision is at least
   `--target_precision` (0.9) with at least `--min_positives` (10) pseudo positives, at every
   calibrated proportion; if the paper's value is below the grid's top and already meets it, the
   smaller of the two is kept anyway (the rule favours recall at a fixed precision). If no grid
   value qualifies, the paper value is kept (and the report says so).

The per-proportion precision/recall curves and the choice are written to `--out` (JSON) and
printed; `recipes.synthetic_transfer` holds the chosen values (copied by hand, with the date of
the calibration run). Rerunning with the same arguments reproduces them (the runs are
deterministic; finished runs in --workdir are reused).
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np

from configs import synthetic_transfer
from mlrpl_jax import checkpointing, trainer
from mlrpl_jax.data import pipeline
from mlrpl_jax.methods import base, common
from mlrpl_jax.metric_writer import atomic_write_json
from mlrpl_jax.ops import pseudo_labels as pl

GRID = np.round(np.arange(0.05, 0.995, 0.01), 2)
# The papers' values: SST's starting thresholds, HST's margin initialisation.
PAPER = {"sst": {"intra": 0.95, "inter": 0.95}, "hst": {"intra": 1.0, "inter": 1.0}}


def trained_state(method: str, proportion: float, workdir: str):
    """(experiment, state) of `method` trained to its first pseudo-label epoch (HST: with the
    prototypes of that epoch)."""
    config = synthetic_transfer.get_config(method)
    epoch = config.method_config.generate_label_epoch
    with config.unlocked():
        config.data.known_proportion = proportion
        config.train.num_epochs = epoch
        config.train.progress_bar = False
    run_dir = os.path.join(workdir, f"{method}_p{proportion:g}")
    trainer.run(config, run_dir)
    exp = trainer.setup(config, pretrained=False)
    ckpt = checkpointing.Checkpointer(run_dir, max_to_keep=2, keep_best=False)
    state, _ = ckpt.restore_state(exp.state, which="latest")
    ckpt.close()
    if exp.method.refresh is not None:
        state = trainer.run_refresh(exp, state, epoch)
    return exp, state


def validation_scores(exp, state) -> dict[str, np.ndarray]:
    """{'intra', 'inter': (N, C) scores, 'labels': partial (N, C), 'full': (N, C)} on validation."""
    cfg = exp.config
    source = exp.val_source
    mask = pipeline.make_mask_transform(cfg.data, source, validation=True)
    references = state.method_state.get("bank", state.method_state.get("prototypes"))

    @jax.jit
    def scores(images, labels):
        x = exp.normalize_fn(images)
        _, aux = base.apply_eval(exp.model, state.params, state.batch_stats, x)
        s = common.cooccurrence_for_labels("learned", state.params, aux["pair_logits"])
        intra = pl.intra_scores(s, labels)
        inter = pl.mean_cosine_to_set(aux["category_features"], references)
        return intra, inter

    bs = cfg.train.eval_batch_size
    out = {"intra": [], "inter": [], "labels": [], "full": []}
    batches = zip(
        pipeline.eval_batches(cfg.data, source, bs, mask=mask),
        pipeline.eval_batches(cfg.data, source, bs),
        strict=True,
    )
    for partial, full in batches:
        valid = partial["valid"]
        intra, inter = scores(partial["image"], jnp.asarray(partial["targets"]))
        out["intra"].append(np.asarray(intra)[valid])
        out["inter"].append(np.asarray(inter)[valid])
        out["labels"].append(partial["targets"][valid])
        out["full"].append(full["targets"][valid])
    return {k: np.concatenate(v) for k, v in out.items()}


def curve(scores: np.ndarray, labels: np.ndarray, full: np.ndarray, strict: bool) -> list[dict]:
    """Precision / recall / count of the pseudo positives [score >= theta] (`strict`: >) among the
    unknown entries, for every theta of GRID."""
    unknown = labels == 0
    positives = (full == 1) & unknown
    rows = []
    for theta in GRID:
        pred = (scores > theta if strict else scores >= theta) & unknown
        n, correct = int(pred.sum()), int((pred & positives).sum())
        rows.append({
            "theta": float(theta),
            "pseudo_positives": n,
            "precision": correct / n if n else float("nan"),
            "recall": correct / max(int(positives.sum()), 1),
        })  # fmt: skip
    return rows


def choose(curves: dict[float, list[dict]], target: float, min_positives: int) -> float | None:
    """The smallest theta meeting the precision target at every proportion, or None."""
    for i, theta in enumerate(GRID):
        if all(
            c[i]["pseudo_positives"] >= min_positives and c[i]["precision"] >= target
            for c in curves.values()
        ):
            return float(theta)
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="runs/calibrate_transfer")
    parser.add_argument("--out", default="docs/results/synthetic_transfer_calibration.json")
    parser.add_argument("--methods", nargs="+", default=["sst", "hst"])
    parser.add_argument("--proportions", nargs="+", type=float, default=[0.1, 0.5, 0.9])
    parser.add_argument("--target_precision", type=float, default=0.9)
    parser.add_argument("--min_positives", type=int, default=10)
    args = parser.parse_args()
    jax.config.update("jax_threefry_partitionable", False)  # as mlrpl_jax.train

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    report = {"rule": vars(args), "grid": GRID.tolist(), "methods": {}}
    for method in args.methods:
        strict = method == "hst"  # HST's y = [score - m > 0]; SST's [score >= theta]
        curves = {"intra": {}, "inter": {}}
        for p in args.proportions:
            exp, state = trained_state(method, p, args.workdir)
            val = validation_scores(exp, state)
            for branch, by_p in curves.items():
                by_p[p] = curve(val[branch], val["labels"], val["full"], strict)
        chosen = {}
        for branch, by_p in curves.items():
            theta = choose(by_p, args.target_precision, args.min_positives)
            chosen[branch] = {
                "value": PAPER[method][branch] if theta is None else theta,
                "from": "paper value (no grid value qualified)" if theta is None else "rule",
            }
            paper_i = np.searchsorted(GRID, min(PAPER[method][branch], GRID[-1]))
            for p, rows in by_p.items():
                at = rows[paper_i]
                pick = next(r for r in rows if r["theta"] == chosen[branch]["value"]) if (
                    theta is not None) else at  # fmt: skip
                print(
                    f"{method} {branch:5s} p={p:g}: paper theta {PAPER[method][branch]:.2f} -> "
                    f"{at['pseudo_positives']} pseudo positives (precision {at['precision']:.3f}, "
                    f"recall {at['recall']:.3f}); chosen {chosen[branch]['value']:.2f} -> "
                    f"{pick['pseudo_positives']} (precision {pick['precision']:.3f}, recall "
                    f"{pick['recall']:.3f})"
                )
        report["methods"][method] = {
            "chosen": chosen,
            "curves": {b: {f"{p:g}": rows for p, rows in c.items()} for b, c in curves.items()},
        }
        atomic_write_json(args.out, report)
    print(json.dumps({m: r["chosen"] for m, r in report["methods"].items()}, indent=2))


if __name__ == "__main__":
    main()
