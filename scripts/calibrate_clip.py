"""Choose TRM-ML's CPU-scale `stage2_epoch` and `pseudo_weight` on the validation split.

  python scripts/calibrate_clip.py --workdir runs/calibrate_clip \
      --out docs/results/clip_calibration.json

Paper 003 never says how its pseudo labels enter the loss, nor when its "first stage" ends; at CPU
scale (`configs/clip_synthetic.py:trm_ml`, `recipes.synthetic_clip`) hard replacement at full
weight from epoch 2 of 8 made about 89 % of the positive targets pseudo at 10 % known labels, half
of them wrong (``shared/reference/trm_ml_readings.md``). This script picks the two constants by a
rule fixed before looking at any result, which never reads test data:

1. Train `configs/clip_synthetic.py:trm_ml` (the recipe, with its token-grid `top_k`) for every
   candidate (`--stage2_epochs` 2, 4) x (`--pseudo_weights` 0.1, 0.3, 1.0) at known proportions
   10 %, 50 % and 90 %, seed 0, evaluating only after the last epoch. The candidates keep the
   pseudo labels in the loss (the method the paper describes), at its full weight or less.
   Reference runs, never chosen: `pseudo_weight` 0 (`--reference_weights`; the loss and
   gradients of `use_mmcp=False`, the Table 3 ablation without MMCP) at the smallest stage-2
   epoch.
2. Score the final weights on the *validation* split (500 generated images no training step
   sees) against its full labels: the mAP of the region path (the method's inference, the
   selection figure) and, beside it, of the query path (`trm_ml.predict_query_logits`); read the
   last epoch's pseudo-label diagnostics of the training run (precision and recall of the pseudo
   positives and negatives, the pseudo and the wrong share of the positive targets).
3. Choose the candidate with the highest mean region-path validation mAP over the calibrated
   proportions; a candidate within `--tie` (0.1) points of the best counts as tied, and among
   tied candidates the larger `pseudo_weight`, then the earlier `stage2_epoch` (the nearer to
   the paper's full-weight pseudo labels from the first stage's end) wins.

The runs, their validation figures and the choice are written to `--out` (JSON) and printed;
`recipes.synthetic_clip` holds the chosen values (copied by hand) and
``docs/results/clip_validation.md`` the criterion and figures. Rerunning with the same arguments
reproduces them (the runs are deterministic; finished runs in --workdir are reused). The trainer
also scores the test split after the last epoch (it always does); this script never reads it,
and its output goes to each run's train.log only.
"""

import argparse
import contextlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import numpy as np

from configs import clip_synthetic
from mlrpl_jax import checkpointing, metrics, trainer
from mlrpl_jax.data import pipeline
from mlrpl_jax.methods import base, trm_ml
from mlrpl_jax.metric_writer import atomic_write_json

DIAGNOSTICS = (
    "pseudo_precision", "pseudo_recall", "pseudo_negative_precision", "pseudo_negative_recall",
    "positive_targets_pseudo", "positive_targets_wrong",
)  # fmt: skip


def make_config(proportion: float, stage2_epoch: int, pseudo_weight: float):
    config = clip_synthetic.get_config("trm_ml")
    with config.unlocked():
        config.data.known_proportion = proportion
        config.method_config.stage2_epoch = stage2_epoch
        config.method_config.pseudo_weight = pseudo_weight
        config.train.eval_every_epochs = config.train.num_epochs  # the last epoch only
        config.checkpoint.keep_best = False
        config.train.progress_bar = False
    return config


def train(config, run_dir: str):
    """Trains (or reuses) the run; the trainer's output goes to run_dir/train.log."""
    os.makedirs(run_dir, exist_ok=True)
    with (
        open(os.path.join(run_dir, "train.log"), "a") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        trainer.run(config, run_dir)
    exp = trainer.setup(config, pretrained=False)
    ckpt = checkpointing.Checkpointer(run_dir, max_to_keep=2, keep_best=False)
    state, _ = ckpt.restore_state(exp.state, which="latest")
    ckpt.close()
    return exp, state


def validation_maps(exp, state) -> dict[str, float]:
    """mAP (%) of the region path and the query path on the validation split's full labels."""
    cfg = exp.config

    @jax.jit
    def logits(images):
        x = exp.normalize_fn(images)
        args = (exp.model, cfg, state.params, state.batch_stats, state.method_state, x)
        return base.predict_logits(*args), trm_ml.predict_query_logits(*args)

    region, query, targets = [], [], []
    for batch in pipeline.eval_batches(cfg.data, exp.val_source, cfg.train.eval_batch_size):
        r, q = logits(batch["image"])
        valid = batch["valid"]
        region.append(np.asarray(r)[valid])
        query.append(np.asarray(q)[valid])
        targets.append(batch["targets"][valid])
    targets = np.concatenate(targets)
    out = {}
    for name, values in (("region", region), ("query", query)):
        scores = metrics.compute_metrics(
            np.concatenate(values), targets, from_logits=True, ap_mode=cfg.train.ap_mode
        )
        out[f"val_mAP_{name}"] = float(scores["mAP"])
    return out


def last_epoch_diagnostics(run_dir: str) -> dict[str, float]:
    """The last 'train_epoch/<name>' record of each diagnostic (stage-2 counts of that epoch)."""
    found = {}
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            for name in DIAGNOSTICS:
                key = f"train_epoch/{name}"
                if key in record:
                    found[name] = float(record[key])
    return found


def choose(runs: list[dict], proportions, tie: float) -> dict:
    """The rule of the module docstring over the candidate runs."""
    means = {}
    for r in runs:
        if r["candidate"]:
            means.setdefault((r["stage2_epoch"], r["pseudo_weight"]), []).append(r)
    table = []
    for (s2, w), rows in means.items():
        assert sorted(x["proportion"] for x in rows) == sorted(proportions), (s2, w)
        table.append({
            "stage2_epoch": s2, "pseudo_weight": w,
            "mean_val_mAP_region": float(np.mean([x["val_mAP_region"] for x in rows])),
            "mean_val_mAP_query": float(np.mean([x["val_mAP_query"] for x in rows])),
        })  # fmt: skip
    best = max(t["mean_val_mAP_region"] for t in table)
    tied = [t for t in table if t["mean_val_mAP_region"] >= best - tie]
    pick = max(tied, key=lambda t: (t["pseudo_weight"], -t["stage2_epoch"]))
    return {"chosen": pick, "means": sorted(table, key=lambda t: -t["mean_val_mAP_region"])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="runs/calibrate_clip")
    parser.add_argument("--out", default="docs/results/clip_calibration.json")
    parser.add_argument("--proportions", nargs="+", type=float, default=[0.1, 0.5, 0.9])
    parser.add_argument("--stage2_epochs", nargs="+", type=int, default=[2, 4])
    parser.add_argument("--pseudo_weights", nargs="+", type=float, default=[0.1, 0.3, 1.0])
    parser.add_argument("--reference_weights", nargs="*", type=float, default=[0.0])
    parser.add_argument("--tie", type=float, default=0.1)
    args = parser.parse_args()
    jax.config.update("jax_threefry_partitionable", False)  # as mlrpl_jax.train

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    plan = [(s2, w, True) for s2 in args.stage2_epochs for w in args.pseudo_weights]
    plan += [(min(args.stage2_epochs), w, False) for w in args.reference_weights]
    runs = []
    report = {"rule": vars(args), "runs": runs}
    for p in args.proportions:
        for s2, w, candidate in plan:
            config = make_config(p, s2, w)
            run_dir = os.path.join(args.workdir, f"p{p:g}_s{s2}_w{w:g}")
            exp, state = train(config, run_dir)
            row = {
                "proportion": p, "stage2_epoch": s2, "pseudo_weight": w,
                "candidate": candidate, "top_k": config.method_config.top_k,
                **validation_maps(exp, state), **last_epoch_diagnostics(run_dir),
            }  # fmt: skip
            runs.append(row)
            print(json.dumps(row), flush=True)
            atomic_write_json(args.out, report)
    report.update(choose(runs, args.proportions, args.tie))
    atomic_write_json(args.out, report)
    print(json.dumps({"chosen": report["chosen"], "means": report["means"]}, indent=1))


if __name__ == "__main__":
    main()
