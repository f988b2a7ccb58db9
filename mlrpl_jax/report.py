"""Paper-style reports of finished runs: `python -m mlrpl_jax.report RUN_DIRS... --out DIR`.

Reads each run directory written by `mlrpl_jax.train` (config.json, results.json, metrics.jsonl;
directories without results.json are skipped with a note, so a sweep's workdir can be globbed while
it runs) and

* prints the papers' table layout as markdown (rows: methods; columns: the known-label proportions;
  then Avg. mAP, Avg. OF1, Avg. CF1, each the mean over the columns of the per-column means), every
  cell the mean +- sample std over the seeds, and writes it as `table.md` and `table.csv` (one row
  per method x column with mean, std, number of seeds and the seeds' values). A column is a label
  setting and proportion (`config.data.setting`): 'pal' columns read "10%", the others "PPL 30%",
  "SPL" and "FAL", after the 'pal' ones, so runs of several settings (e.g. one sweep workdir per
  setting) make one table;
* writes matplotlib figures (PNG) to `--out`: `map_vs_proportion.png` (mean +- std over seeds per
  method, the 'pal' columns), and, for the runs that log them, `pseudo_labels.png` (pseudo-label
  precision / recall per epoch, from the `train_epoch/pseudo_*` records) and `learned_scalars.png`
  (HST's thresholds and SARB/DSRB's alpha/beta over training, from `train/theta_*`,
  `train/alpha_*`, `train/beta_*`), one line per method and column (the mean over its seeds).

`--compare-paper coco|vg|voc` adds the published rows of the HST and DSRB papers' main tables
(`mlrpl_jax.paper_tables`) in the same layout.

The reported metric of a run is its final test metric (`results.json['metrics']`, the last epoch),
as the papers' tables and `scripts/sweep.py` report; `--select val` reports instead the test
metrics of the epoch whose validation mAP was highest (the checkpoint `workdir/best` holds, read
from the per-epoch evaluations in metrics.jsonl; ties go to the earlier epoch), for runs with a
validation split.
"""

import argparse
import csv
import io
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

AVERAGED = ("mAP", "OF1", "CF1")
SETTING_ORDER = ("pal", "ppl", "spl", "fal")

# A table column: (label setting, known proportion); the proportion is 0 for 'spl' and 1 for 'fal',
# whose masks do not depend on it.
Column = tuple[str, float]


def column_of(setting: str, proportion: float) -> Column:
    return (setting, {"spl": 0.0, "fal": 1.0}.get(setting, proportion))


def column_label(column: Column) -> str:
    setting, p = column
    if setting in ("spl", "fal"):
        return setting.upper()
    return f"{p * 100:g}%" if setting == "pal" else f"{setting.upper()} {p * 100:g}%"


class Run(NamedTuple):
    """One finished run."""

    path: str
    method: str
    dataset: str
    setting: str  # config.data.setting: 'pal', 'ppl', 'spl' or 'fal'
    proportion: float
    seed: int
    final: dict[str, float]  # final test metrics (%)
    records: list[dict[str, Any]]  # metrics.jsonl


def val_selected(records: Sequence[dict[str, Any]], dataset: str) -> dict[str, float]:
    """Test metrics (%) of the epoch with the highest validation mAP among `records`' evaluations.

    Raises:
        ValueError: if no evaluation record has a validation mAP (no validation split).
    """
    prefix = f"eval/{dataset}/"
    val_key = prefix + "val/mAP"  # trainer._eval_record's name of the validation mAP
    evals = [r for r in records if val_key in r]
    if not evals:
        raise ValueError(f"no validation mAP ({val_key}) in the metrics of this run")
    best = max(evals, key=lambda r: (r[val_key], -r["step"]))
    return {
        k[len(prefix):]: v for k, v in best.items()
        if k.startswith(prefix) and "/" not in k[len(prefix):]
    }  # fmt: skip


def load_run(path: str, select: str = "final") -> Run | None:
    """The `Run` in `path`, or None if it has no results.json (unfinished). `select`: 'final'
    (last-epoch test metrics) or 'val' (`val_selected`)."""
    if not os.path.exists(os.path.join(path, "results.json")):
        return None
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(path, "results.json")) as f:
        results = json.load(f)
    records = []
    metrics_path = os.path.join(path, "metrics.jsonl")
    if os.path.exists(metrics_path):
        with open(metrics_path) as f:
            records = [json.loads(line) for line in f if line.strip()]
    return Run(
        path=path,
        method=config["method"],
        dataset=config["data"]["name"],
        setting=config["data"].get("setting", "pal"),
        proportion=float(config["data"]["known_proportion"]),
        seed=int(config["seed"]),
        final=(
            results["metrics"]
            if select == "final"
            else val_selected(records, config["data"]["name"])
        ),
        records=records,
    )


def load_runs(paths: Sequence[str], select: str = "final") -> list[Run]:
    """Runs of `paths` (run directories, or directories of run directories), finished only."""
    runs = []
    for path in paths:
        candidates = [path]
        if not os.path.exists(os.path.join(path, "config.json")) and os.path.isdir(path):
            candidates = sorted(os.path.join(path, d) for d in os.listdir(path))
        for candidate in candidates:
            if not os.path.exists(os.path.join(candidate, "config.json")):
                continue
            run = load_run(candidate, select)
            if run is None:
                print(
                    f"[report] skipping {candidate}: no results.json (unfinished)", file=sys.stderr
                )
            else:
                runs.append(run)
    return runs


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (NaN for a single value: shown as the mean alone)."""
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")


class Table(NamedTuple):
    """Mean +- std over seeds. cells[method][column][metric] = (mean, std, values)."""

    methods: list[str]
    columns: list[Column]
    cells: dict[str, dict[Column, dict[str, tuple[float, float, list[float]]]]]

    @property
    def pal_proportions(self) -> list[float]:
        return [p for s, p in self.columns if s == "pal"]

    def average(self, method: str, metric: str) -> tuple[float, float]:
        """Avg. <metric>: mean over the columns of the per-column means, and the std of the
        seed-wise averages when every column has the same number of seeds (else NaN)."""
        per = [self.cells[method][c][metric] for c in self.columns if c in self.cells[method]]
        mean = float(np.mean([m for m, _, _ in per]))
        counts = {len(values) for _, _, values in per}
        if len(counts) == 1 and len(per) == len(self.columns):
            seedwise = np.mean([values for _, _, values in per], axis=0)
            return mean, _mean_std(seedwise)[1]
        return mean, float("nan")


# Row order of the tables: the baselines, then the SSGRL family as the papers list it; other
# methods follow in the order their runs were found.
ROW_ORDER = (
    "plain", "partial_bce", "cl", "asl", "focal", "bce_ls", "an", "an_ls", "wan", "epr", "role",
    "ll_r", "ll_ct", "ll_cp", "splc", "hill", "imbalance", "ssgrl", "sst", "hst", "hst_fb",
    "sarb", "dsrb",
)  # fmt: skip


def summarize(runs: Sequence[Run], metrics: Sequence[str] = AVERAGED) -> Table:
    """Groups runs by (method, column) and takes mean and std over seeds (rows in `ROW_ORDER`,
    unknown methods after them in run order; columns by setting, then proportion)."""
    found = list(dict.fromkeys(r.method for r in runs))
    methods = [m for m in ROW_ORDER if m in found] + [m for m in found if m not in ROW_ORDER]
    columns = sorted(
        {column_of(r.setting, r.proportion) for r in runs},
        key=lambda c: (SETTING_ORDER.index(c[0]), c[1]),
    )
    cells: dict = {}
    for r in sorted(runs, key=lambda r: r.seed):
        cell = cells.setdefault(r.method, {}).setdefault(column_of(r.setting, r.proportion), {})
        for metric in metrics:
            # Runs scored on known entries only (Open Images) have mAP and no threshold metrics.
            cell.setdefault(metric, []).append(float(r.final.get(metric, math.nan)))
    for by_column in cells.values():
        for c, cell in by_column.items():
            by_column[c] = {k: (*_mean_std(v), v) for k, v in cell.items()}
    return Table(methods, columns, cells)


def _fmt(mean: float, std: float) -> str:
    return f"{mean:.1f}" if math.isnan(std) else f"{mean:.1f} +- {std:.1f}"


def to_markdown(table: Table, metric: str = "mAP", title: str = "") -> str:
    """The papers' layout: methods x columns (`metric`), then Avg. mAP / OF1 / CF1."""
    head = [column_label(c) for c in table.columns] + [f"Avg. {m}" for m in AVERAGED]
    lines = [title, ""] if title else []
    lines += ["| method | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for method in table.methods:
        row = []
        for c in table.columns:
            cell = table.cells[method].get(c)
            row.append(_fmt(*cell[metric][:2]) if cell else "")
        row += [_fmt(*table.average(method, m)) for m in AVERAGED]
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def to_csv(table: Table) -> str:
    """One row per (method, column, metric): mean, std, n, the seeds' values."""
    out = io.StringIO()
    writer = csv.writer(out)
    head = ["method", "setting", "known_proportion", "metric", "mean", "std", "n", "values"]
    writer.writerow(head)
    for method in table.methods:
        for setting, p in table.columns:
            for metric, (mean, std, values) in table.cells[method].get((setting, p), {}).items():
                each = " ".join(f"{v:.4f}" for v in values)
                writer.writerow(
                    [method, setting, p, metric, f"{mean:.4f}", f"{std:.4f}", len(values), each]
                )
    return out.getvalue()


def _series(run: Run, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(epoch, value) of every record of `run` holding `key`."""
    pts = [(r["epoch"], r[key]) for r in run.records if key in r and "epoch" in r]
    return np.asarray([e for e, _ in pts], float), np.asarray([v for _, v in pts], float)


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_map_vs_proportion(table: Table, path: str, metric: str = "mAP") -> bool:
    """Mean +- std over seeds of `metric` against the known proportion of the 'pal' columns, one
    line per method. False (no file) if the table has no 'pal' column."""
    if not table.pal_proportions:
        return False
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for method in table.methods:
        ps = [p for p in table.pal_proportions if ("pal", p) in table.cells[method]]
        if not ps:
            continue
        mean = [table.cells[method][("pal", p)][metric][0] for p in ps]
        std = [table.cells[method][("pal", p)][metric][1] for p in ps]
        std = np.nan_to_num(np.asarray(std, float))
        ax.errorbar([100 * p for p in ps], mean, yerr=std, marker="o", capsize=3, label=method)
    ax.set_xlabel("known labels (%)")
    ax.set_ylabel(f"test {metric} (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_series(runs: Sequence[Run], prefixes: Sequence[str], path: str, ylabel: str) -> bool:
    """Every logged key starting with one of `prefixes`, over epochs: one line per (method,
    column), the mean over its seeds at each logged epoch (`train_epoch/...` records per epoch,
    `train/...` per log step). False (no file) if none is logged."""
    plt = pyplot()

    keys = sorted({
        k for r in runs for rec in r.records for k in rec
        if k.startswith(tuple(prefixes)) and not k.endswith(("/num", "/den"))
    })  # fmt: skip
    if not keys:
        return False
    groups: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.method, column_label(column_of(r.setting, r.proportion))), []).append(
            r
        )
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for (method, column), members in groups.items():
            by_epoch: dict[float, list[float]] = {}
            for r in members:
                for x, y in zip(*_series(r, key), strict=True):
                    by_epoch.setdefault(float(x), []).append(float(y))
            if by_epoch:
                xs = sorted(by_epoch)
                ys = [np.mean(by_epoch[x]) for x in xs]
                label = f"{method} {column} (n={len(members)})"
                ax.plot(xs, ys, marker=".", lw=1, label=label)
        ax.set_title(key.split("/", 1)[1], fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def paper_markdown(dataset: str, proportions: Sequence[float]) -> str:
    """The published rows of `dataset` (`paper_tables`) in the same layout (mAP at `proportions`;
    the averages are the papers', over 10%..90%)."""
    from mlrpl_jax import paper_tables

    head = [f"{p * 100:g}%" for p in proportions] + [f"Avg. {m}" for m in AVERAGED]
    lines = [
        (
            f"Published rows on {dataset} (mAP %; Avg. over 10%..90% as in the papers; "
            "our method name in brackets)"
        ),
        "",
        "| method | " + " | ".join(head) + " |",
        "|---" * (len(head) + 1) + "|",
    ]

    def fmt(v):
        return "-" if v is None else f"{v:.1f}"

    for row in paper_tables.rows(dataset):
        ours = paper_tables.METHOD_KEYS.get(row.method)
        name = f"{row.method} [{ours}]" if ours else row.method
        cells = [fmt(row.map_by_proportion.get(round(p, 1))) for p in proportions]
        cells += [fmt(row.avg_map), fmt(row.avg_of1), fmt(row.avg_cf1)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(
    paths: Sequence[str],
    out: str | None,
    metric: str = "mAP",
    compare_paper: str | None = None,
    select: str = "final",
) -> str:
    """Loads the runs, prints and (with `out`) writes the table, CSV and figures, and (with
    `compare_paper`) the published rows of that dataset beside them. Returns the markdown."""
    runs = load_runs(paths, select)
    if not runs:
        raise SystemExit(f"No finished runs (results.json) under {list(paths)}.")
    table = summarize(runs, tuple(dict.fromkeys((metric, *AVERAGED))))
    datasets = sorted({r.dataset for r in runs})
    seeds = sorted({r.seed for r in runs})
    which = "Final test" if select == "final" else "Test (at the best validation epoch)"
    title = (
        f"{which} {metric} (%) on {', '.join(datasets)}, mean +- std over seeds {seeds} "
        f"({len(runs)} runs)"
    )
    text = to_markdown(table, metric, title)
    if compare_paper is not None:
        text += "\n\n" + paper_markdown(compare_paper, table.pal_proportions)
    print(text)
    if out is not None:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "table.md"), "w") as f:
            f.write(text + "\n")
        with open(os.path.join(out, "table.csv"), "w") as f:
            f.write(to_csv(table))
        plot_map_vs_proportion(table, os.path.join(out, "map_vs_proportion.png"), metric)
        plot_series(
            runs, ("train_epoch/pseudo_",), os.path.join(out, "pseudo_labels.png"), "fraction"
        )  # fmt: skip
        plot_series(
            runs, ("train/theta_", "train/alpha_mean", "train/beta_mean"),
            os.path.join(out, "learned_scalars.png"), "value",
        )  # fmt: skip
    return text


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories or directories of them")
    parser.add_argument("--out", default=None, help="write table.md, table.csv and PNGs here")
    parser.add_argument("--metric", default="mAP", help="the per-proportion metric")
    parser.add_argument(
        "--compare-paper", choices=("coco", "vg", "voc"), default=None,
        help="also print the papers' published rows on this dataset (mlrpl_jax.paper_tables)",
    )  # fmt: skip
    parser.add_argument(
        "--select", choices=("final", "val"), default="final",
        help="final: last-epoch test metrics; val: test metrics at the best validation epoch",
    )  # fmt: skip
    args = parser.parse_args(argv)
    report(args.runs, args.out, args.metric, args.compare_paper, args.select)


if __name__ == "__main__":
    main()
