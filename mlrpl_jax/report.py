"""Paper-style reports of finished runs: `python -m mlrpl_jax.report RUN_DIRS... [--out DIR]`.

Reads each run directory written by `mlrpl_jax.train` (config.json, results.json, metrics.jsonl);
a directory that holds run directories (a sweep's workdir) stands for the runs in it. Runs without
results.json are skipped with a note, so a sweep's workdir can be reported while it runs. Then it

* prints the papers' table layout as markdown (rows: methods; columns: the known-label proportions;
  then Avg. mAP, Avg. OF1, Avg. CF1, each the mean over the columns of the per-column means), every
  cell the mean +- sample std over the seeds, and writes it as `table.md` and `table.csv` (one row
  per method x column with mean, std, number of seeds and the seeds' values). A column is a label
  setting and proportion (`config.data.setting`): 'pal' columns read "10%", the others "PPL 30%",
  "SPL" and "FAL", after the 'pal' ones, so runs of several settings (e.g. one sweep workdir per
  setting) make one table;
* writes matplotlib figures (PNG) to `--out`. Each carries a title with the dataset, the label
  setting(s) and proportion(s), the metric (final-epoch test metric, or the test metric at the best
  validation epoch with `--select val`), the seeds, and what the error bars or shaded bands are
  ("mean ± std over seeds [0, 1, 2]"; with one run per line there are none):
  - `map_vs_proportion.png`: the reported metric against the known proportion, one line per method
    with ± std error bars, drawn when the runs cover at least two 'pal' proportions (a single
    proportion would be one dot per method: the table already holds it);
  - `learning_curves.png`: train loss (each logged step), validation mAP and test mAP (each
    evaluated epoch) against the epoch, from metrics.jsonl, one line per method and column (the
    mean over its seeds, shaded ± std), drawn when that makes at most `MAX_LINES` (10) lines: a
    single run, a few methods or seeds at one proportion. A whole sweep would be unreadable; give
    `report` some of its run directories to see theirs. The validation panel is left out when no
    run has a validation split. A value logged twice for one step (a resumed run logs the steps
    after its last checkpoint again) counts once, the later one;
  - for the runs that log them, `pseudo_labels.png` (pseudo-label precision / recall per epoch, from
    the `train_epoch/pseudo_*` records) and `learned_scalars.png` (HST's thresholds and SARB/DSRB's
    alpha/beta over training, from `train/theta_*`, `train/alpha_*`, `train/beta_*`), lines as in
    the learning curves.

`--compare-paper coco|vg|voc` adds the published rows of the HST and DSRB papers' main tables
(`mlrpl_jax.paper_tables`) in the same layout.

The reported metric of a run is its final test metric (`results.json['metrics']`, the last epoch),
as the papers' tables and `scripts/sweep.py` report; `--select val` reports instead the test
metrics of the epoch whose validation mAP was highest (the checkpoint `workdir/best` holds, read
from the per-epoch evaluations in metrics.jsonl; ties go to the earlier epoch), for runs with a
validation split.

Mistakes in what is asked (a path that does not exist, no finished run, a damaged config.json,
results.json or metrics.jsonl, `--select val` for a run without a validation split, a `--metric` no
run has) print one `error: ...` line naming the file and the fix, and exit with status 2; every run
is read before `--out` is created, so a failed report writes nothing. Run directories may be any
path `etils.epath` handles (``gs://...``); `--out` is a local directory.

Runs of one method whose configs differ in a key that changes results (an ablation such as
`--config.method_config.use_d=False`, another reading of an equation) are separate rows, named by
the differing keys: "imbalance (use_d=False)" (`label_variants`).
"""

import argparse
import collections
import csv
import io
import json
import math
import os
import sys
import textwrap
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from etils import epath

from mlrpl_jax import cli, run_dir
from mlrpl_jax.errors import ConfigError, InputError, MissingFileError, RunDirError

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
    config: dict[str, Any] | None = None  # config.json, flattened ('a.b': value)


def val_selected(records: Sequence[dict[str, Any]], dataset: str) -> dict[str, float]:
    """Test metrics (%) of the epoch with the highest validation mAP among `records`' evaluations.

    Raises:
        InputError (a ValueError): if no evaluation record has a validation mAP (no validation
        split).
    """
    prefix = f"eval/{dataset}/"
    val_key = prefix + "val/mAP"  # trainer._eval_record's name of the validation mAP
    evals = [r for r in records if val_key in r]
    if not evals:
        raise InputError(f"no validation mAP ({val_key}) in the metrics of this run")
    best = max(evals, key=lambda r: (r[val_key], -r["step"]))
    return {
        k[len(prefix):]: v for k, v in best.items()
        if k.startswith(prefix) and "/" not in k[len(prefix):]
    }  # fmt: skip


# How to repair a damaged file of a run directory.
FIX_CONFIG = "restore it, or leave this run directory out of the report"
FIX_RESULTS = (
    "delete it and rerun the run's `python -m mlrpl_jax.train` command, which evaluates the last "
    "checkpoint again and rewrites it, or leave this run directory out of the report"
)


def read_json(path: str, fix: str) -> Any:
    """The JSON value in `path`; an unreadable or damaged file is an InputError that says `fix`."""
    try:
        with epath.Path(path).open() as f:
            return json.load(f)
    except OSError as e:
        raise InputError(f"cannot read {path} ({e.strerror}); {fix}.") from None
    except ValueError as e:  # json.JSONDecodeError, UnicodeDecodeError
        detail = f"{e.msg}, line {e.lineno}" if isinstance(e, json.JSONDecodeError) else str(e)
        raise InputError(f"{path} is damaged (not JSON: {detail}); {fix}.") from None


def read_records(path: str) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl, [] if there is none; a damaged line is an InputError."""
    if not epath.Path(path).exists():
        return []
    records = []
    with epath.Path(path).open() as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                raise InputError(
                    f"{path} line {n} is damaged (not a JSON record); delete that line (the other "
                    "records are enough for the report) and run the report again."
                )
            records.append(record)
    return records


def field(tree: Any, key: str, path: str) -> Any:
    """`tree['a']['b']` for key 'a.b' of the JSON read from `path`; missing, an InputError."""
    node = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise InputError(
                f"{path} has no '{key}': it is not a file written by `python -m mlrpl_jax.train`, "
                f"or a damaged one; {FIX_RESULTS if path.endswith('results.json') else FIX_CONFIG}."
            )
        node = node[part]
    return node


def load_run(path: str, select: str = "final") -> Run | None:
    """The `Run` in `path`, or None if it has no results.json (unfinished). `select`: 'final'
    (last-epoch test metrics) or 'val' (`val_selected`). A damaged file is an InputError."""
    results_path = os.path.join(path, "results.json")
    if not epath.Path(results_path).exists():
        return None
    config_path = os.path.join(path, "config.json")
    config = read_json(config_path, FIX_CONFIG)
    results = read_json(results_path, FIX_RESULTS)
    records = read_records(os.path.join(path, "metrics.jsonl"))
    dataset = field(config, "data.name", config_path)
    if select == "final":
        final = field(results, "metrics", results_path)
    else:
        try:
            final = val_selected(records, dataset)
        except InputError as e:
            raise InputError(
                f"{path}: {e} (it was trained without a validation split); report it without "
                "--select val, which reports its final test metrics."
            ) from None
    return Run(
        path=path,
        method=field(config, "method", config_path),
        dataset=dataset,
        setting=config["data"].get("setting", "pal"),
        proportion=float(field(config, "data.known_proportion", config_path)),
        seed=int(field(config, "seed", config_path)),
        final=final,
        records=records,
        config=run_dir.flatten(config),
    )


def run_dirs(path: str) -> list[str]:
    """[`path`] if it is a run directory (holds config.json), else the run directories in it.

    Raises:
        MissingFileError: `path` does not exist. InputError: it is a file.
    """
    folder = epath.Path(path)
    if not folder.exists():
        raise MissingFileError(
            f"{path} does not exist; give run directories written by `python -m mlrpl_jax.train "
            "--workdir DIR` (or a sweep's workdir holding them)."
        )
    if not folder.is_dir():
        raise InputError(
            f"{path} is a file, not a run directory; give the directory that holds its config.json "
            "and results.json."
        )
    if (folder / "config.json").exists():
        return [path]
    children = sorted(os.path.join(path, child.name) for child in folder.iterdir())
    return [c for c in children if (epath.Path(c) / "config.json").exists()]


def _note(message: str) -> None:
    print(f"[report] {message}", file=sys.stderr)


def load_runs(paths: Sequence[str], select: str = "final") -> list[Run]:
    """The finished runs of `paths` (run directories, or directories of run directories).

    Raises:
        UserError: a path does not exist, a run's files are damaged, or no run is finished.
    """
    found = {path: run_dirs(path) for path in paths}  # every path exists before any run is read
    runs, unfinished = [], 0
    for path, dirs in found.items():
        if not dirs:
            _note(
                f"{path} holds no run directory (no config.json in it or in its folders); ignored"
            )
        for directory in dirs:
            run = load_run(directory, select)
            if run is None:
                _note(f"skipping {directory}: no results.json (unfinished)")
                unfinished += 1
            else:
                runs.append(run)
    if not runs and not unfinished:
        raise RunDirError(
            f"no run directory in {' '.join(paths)}: a run directory holds the config.json that "
            "`python -m mlrpl_jax.train --workdir DIR` writes; give such directories or a sweep's "
            "workdir holding them."
        )
    if not runs:
        raise RunDirError(
            f"no finished run in {' '.join(paths)}: {unfinished} run director"
            f"{'y' if unfinished == 1 else 'ies'} found, none with results.json (written when "
            "training ends); wait for the runs to finish, or give finished ones."
        )
    return label_variants(runs)


# Keys in which runs of one method may differ and still be one row: what a table's columns and
# seeds vary, and what does not change results (`run_dir.HARMLESS_KEYS`).
# (`data.val_labels` decides only which checkpoint is kept in best/, not the final metrics; PPL/SPL
# runs select on full validation labels where PAL runs use the partial ones.)
_NOT_A_VARIANT = {
    "seed", "data.label_seed", "data.known_proportion", "data.setting", "data.val_labels",
}  # fmt: skip


def label_variants(runs: list[Run]) -> list[Run]:
    """Runs of one method whose configs differ in a key that changes results (e.g. an ablation's
    `method_config.use_d=False`, another reading) become separate rows: the method name gets the
    keys where a run departs from the method's most common value, 'imbalance (use_d=False)', with
    `method_config.` left out. Runs that differ only in seeds, proportions, settings, validation
    labels or `run_dir.HARMLESS_KEYS` keep the plain method name."""
    ignored = _NOT_A_VARIANT | run_dir.HARMLESS_KEYS
    varying = {}
    for method in dict.fromkeys(r.method for r in runs):
        configs = [r.config or {} for r in runs if r.method == method]
        varying[method] = sorted(
            k
            for k in set().union(*configs)
            if k not in ignored and len({json.dumps(c.get(k)) for c in configs}) > 1
        )
    # A variant is named by the keys where it departs from its method's most common value (the
    # runs at the defaults keep the plain name when they are the majority of each key).
    common = {}
    for method, keys in varying.items():
        configs = [r.config or {} for r in runs if r.method == method]
        for k in keys:
            counts = collections.Counter(json.dumps(c.get(k)) for c in configs)
            common[method, k] = counts.most_common(1)[0][0]
    out = []
    for r in runs:
        c = r.config or {}
        own = [k for k in varying[r.method] if json.dumps(c.get(k)) != common[r.method, k]]
        if own:
            values = ", ".join(f"{k.removeprefix('method_config.')}={c.get(k)}" for k in own)
            r = r._replace(method=f"{r.method} ({values})")
        out.append(r)
    return out


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

    def rank(m: str) -> int:  # a variant, 'imbalance (use_d=False)', sits with its method
        base = m.split(" (")[0]
        return ROW_ORDER.index(base) if base in ROW_ORDER else len(ROW_ORDER)

    methods = sorted(found, key=rank)  # stable: run order within a rank
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


def table_from_csv(path: str) -> Table:
    """The `Table` a committed `table.csv` (`to_csv`) holds: each cell's mean and std as written
    and the seeds' values, so `to_markdown` rebuilds the table's rows without the runs. Raises
    MissingFileError / InputError naming the file."""
    file = epath.Path(path)
    if not file.exists():
        raise MissingFileError(f"{path} does not exist (--from-csv takes a table.csv that "
                               "report --out wrote).")  # fmt: skip
    methods: list[str] = []
    columns: set[Column] = set()
    cells: dict = {}
    try:
        for row in csv.DictReader(io.StringIO(file.read_text())):
            method, column = (
                row["method"],
                column_of(row["setting"], float(row["known_proportion"])),
            )
            if method not in methods:
                methods.append(method)
            columns.add(column)
            values = [float(v) for v in row["values"].split()]
            cells.setdefault(method, {}).setdefault(column, {})[row["metric"]] = (
                float(row["mean"]),
                float(row["std"]),
                values,
            )
    except (KeyError, ValueError, TypeError) as e:
        raise InputError(f"{path}: not a table.csv written by report ({e}).") from None
    if not methods:
        raise InputError(f"{path}: holds no row.")
    ordered = sorted(columns, key=lambda c: (SETTING_ORDER.index(c[0]), c[1]))
    return Table(methods, ordered, cells)


def groups(runs: Sequence[Run]) -> dict[tuple[str, Column], list[Run]]:
    """Runs by (method, column), methods in `ROW_ORDER`, columns as in the table."""
    table = summarize(runs, ())
    by: dict[tuple[str, Column], list[Run]] = {
        (m, c): [] for m in table.methods for c in table.columns
    }
    for r in sorted(runs, key=lambda r: r.seed):
        by[(r.method, column_of(r.setting, r.proportion))].append(r)
    return {k: v for k, v in by.items() if v}


def _series(run: Run, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(epoch, value) of the records of `run` holding `key`, by epoch; a value logged again for the
    same epoch (a resumed run re-logs the steps after its last checkpoint) replaces the earlier."""
    points = {float(r["epoch"]): float(r[key]) for r in run.records if key in r and "epoch" in r}
    xs = sorted(points)
    return np.asarray(xs, float), np.asarray([points[x] for x in xs], float)


def seed_curve(runs: Sequence[Run], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epochs, mean, sample std) over `runs` of `key` at every epoch any of them logged it; `key`
    may hold '{dataset}' (e.g. 'eval/{dataset}/mAP'). The std is NaN where one run logged it."""
    by_epoch: dict[float, list[float]] = {}
    for r in runs:
        for x, y in zip(*_series(r, key.format(dataset=r.dataset)), strict=True):
            by_epoch.setdefault(float(x), []).append(float(y))
    xs = sorted(by_epoch)
    stats = np.asarray([_mean_std(by_epoch[x]) for x in xs], float).reshape(-1, 2)
    return np.asarray(xs, float), stats[:, 0], stats[:, 1]


def logged_keys(runs: Sequence[Run], prefixes: Sequence[str]) -> list[str]:
    """The logged keys starting with one of `prefixes` (not the '/num', '/den' counts), sorted."""
    return sorted({
        k for r in runs for rec in r.records for k in rec
        if k.startswith(tuple(prefixes)) and not k.endswith(("/num", "/den"))
    })  # fmt: skip


def scope(runs: Sequence[Run]) -> str:
    """The datasets and columns of `runs`, e.g. 'synthetic_scenes, PAL 10%, 50%; SPL'."""
    by_setting: dict[str, list[str]] = {}
    for setting, p in sorted(
        {column_of(r.setting, r.proportion) for r in runs},
        key=lambda c: (SETTING_ORDER.index(c[0]), c[1]),
    ):
        by_setting.setdefault(setting, []).append(f"{p * 100:g}%")
    columns = [
        s.upper() if s in ("spl", "fal") else f"{s.upper()} {', '.join(ps)}"
        for s, ps in by_setting.items()
    ]
    return f"{', '.join(sorted({r.dataset for r in runs}))}, {'; '.join(columns)}"


def spread(runs: Sequence[Run], bars: str) -> str:
    """What each line of a figure of `runs` is and what its `bars` are."""
    seeds = sorted({r.seed for r in runs})
    if max(len(members) for members in groups(runs).values()) == 1:
        listed = ", ".join(map(str, seeds))
        return f"one run per line (seed{'s' if len(seeds) > 1 else ''} {listed}), no {bars}"
    return f"mean ± std over seeds {seeds} ({bars}: ± sample std)"


def selected_metric(metric: str, select: str) -> str:
    """Which test metric a run reports under `select`."""
    return f"Final test {metric}" if select == "final" else f"Test {metric} at the best val. epoch"


def title_lines(*lines: str, width: float) -> str:
    """A figure title: `lines`, each wrapped to a figure `width` inches wide."""
    return "\n".join(textwrap.fill(line, int(width * 12)) for line in lines)


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_map_vs_proportion(table: Table, path: str, title: str, metric: str = "mAP") -> None:
    """Mean +- std over seeds of `metric` against the known proportion of the 'pal' columns, one
    line per method, under `title`."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    for method in table.methods:
        ps = [p for p in table.pal_proportions if ("pal", p) in table.cells[method]]
        if not ps:
            continue
        mean = [table.cells[method][("pal", p)][metric][0] for p in ps]
        std = np.nan_to_num([table.cells[method][("pal", p)][metric][1] for p in ps])
        ax.errorbar([100 * p for p in ps], mean, yerr=std, marker="o", capsize=3, label=method)
    ax.set_xlabel("known labels (%)")
    ax.set_ylabel(f"{metric} (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# A panel of `plot_curves`: (logged key, which may hold '{dataset}'; panel title; y label).
Panel = tuple[str, str, str]
LEARNING_PANELS: tuple[Panel, ...] = (
    ("train/loss", "train loss", "loss"),
    ("eval/{dataset}/val/mAP", "validation mAP", "mAP (%)"),  # trainer._eval_record's names
    ("eval/{dataset}/mAP", "test mAP", "mAP (%)"),
)
MAX_LINES = 10  # learning curves are drawn for at most this many (method, column) lines


def curves_width(num_panels: int) -> float:
    """Width (inches) of a `plot_curves` figure of `num_panels` panels."""
    return max(3.6 * num_panels, 6.0)


def plot_curves(runs: Sequence[Run], panels: Sequence[Panel], path: str, title: str) -> None:
    """One panel per `Panel`, against the epoch: one line per (method, column), the mean over its
    seeds with a shaded ± sample std band where it has several, under `title`."""
    plt = pyplot()
    by_line = groups(runs)
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(curves_width(len(panels)), 3.4),
        squeeze=False,
        layout="constrained",
    )
    for ax, (key, name, ylabel) in zip(axes[0], panels, strict=True):
        for i, ((method, column), members) in enumerate(by_line.items()):
            xs, mean, std = seed_curve(members, key)
            if not len(xs):
                continue
            label = f"{method} {column_label(column)}" + (
                f" ({len(members)} seeds)" if len(members) > 1 else ""
            )
            marker = "o" if len(xs) <= 30 else None
            ax.plot(xs, mean, color=f"C{i}", marker=marker, ms=3, lw=1.2, label=label)
            if len(members) > 1:
                ax.fill_between(xs, mean - std, mean + std, color=f"C{i}", alpha=0.2, lw=0)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_figures(
    runs: Sequence[Run], table: Table, out: str, metric: str = "mAP", select: str = "final"
) -> dict[str, str]:
    """Draws into `out` the figures that `runs` support (module docstring) and notes on stderr
    why the others are not drawn. Returns {file name: title} of those drawn."""
    drawn = {}
    pal = [r for r in runs if r.setting == "pal"]
    if len(table.pal_proportions) >= 2:
        title = title_lines(
            f"{selected_metric(metric, select)} vs. known-label proportion",
            scope(pal), spread(pal, "error bars"), width=6,
        )  # fmt: skip
        plot_map_vs_proportion(table, os.path.join(out, "map_vs_proportion.png"), title, metric)
        drawn["map_vs_proportion.png"] = title
    else:
        _note("map_vs_proportion.png not drawn: fewer than two 'pal' proportions (see the table)")
    lines = len(groups(runs))
    panels = [p for p in LEARNING_PANELS if len(seed_curve(runs, p[0])[0])]
    if lines <= MAX_LINES and panels:
        what = ", ".join(name for _, name, _ in panels)
        title = title_lines(
            f"Learning curves: {what} per epoch", scope(runs), spread(runs, "shaded bands"),
            width=curves_width(len(panels)),
        )  # fmt: skip
        plot_curves(runs, panels, os.path.join(out, "learning_curves.png"), title)
        drawn["learning_curves.png"] = title
    elif panels:
        _note(
            f"learning_curves.png not drawn: {lines} method x column lines (more than {MAX_LINES}); "
            "report fewer run directories to see theirs"
        )
    for name, prefixes, ylabel, what in (
        ("pseudo_labels.png", ("train_epoch/pseudo_",), "fraction",
         "Pseudo-label precision and recall per epoch"),
        ("learned_scalars.png", ("train/theta_", "train/alpha_mean", "train/beta_mean"), "value",
         "Learned thresholds and blending weights over training"),
    ):  # fmt: skip
        keys = logged_keys(runs, prefixes)
        if keys:
            panels = [(k, k.split("/", 1)[1], ylabel) for k in keys]
            title = title_lines(
                what, scope(runs), spread(runs, "shaded bands"), width=curves_width(len(keys))
            )
            plot_curves(runs, panels, os.path.join(out, name), title)
            drawn[name] = title
    return drawn


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
    `compare_paper`) the published rows of that dataset beside them. Returns the markdown.

    Raises:
        UserError: before anything is written (module docstring).
    """
    if out is not None and os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"--out {out} is a file; give a directory (it is created if missing).")
    runs = load_runs(paths, select)
    if not any(metric in r.final for r in runs):
        known = sorted({k for r in runs for k in r.final})
        raise ConfigError(
            f"--metric {metric}: no run reports it; the runs have {', '.join(known)}."
        )
    table = summarize(runs, tuple(dict.fromkeys((metric, *AVERAGED))))
    datasets = sorted({r.dataset for r in runs})
    seeds = sorted({r.seed for r in runs})
    which = "Final test" if select == "final" else "Test (at the best validation epoch)"
    title = (
        f"{which} {metric} (%) on {', '.join(datasets)}, mean +- std over seeds {seeds} "
        f"({len(runs)} run{'s' if len(runs) > 1 else ''})"
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
        for name in ("table.md", "table.csv", *write_figures(runs, table, out, metric, select)):
            _note(f"wrote {os.path.join(out, name)}")
    return text


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mlrpl_jax.report", description=__doc__.split("\n")[0]
    )
    parser.add_argument("runs", nargs="*", help="run directories or directories of them")
    parser.add_argument(
        "--from-csv", default=None, metavar="TABLE_CSV",
        help="print the table's rows from a table.csv that --out wrote, without the runs (how "
        "scripts/check_published.py checks the committed tables whose runs are not archived)",
    )  # fmt: skip
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
    with cli.user_errors():
        if args.from_csv is not None:
            if args.runs or args.out:
                raise InputError("--from-csv prints a committed table's rows; give no run "
                                 "directories and no --out with it.")  # fmt: skip
            print(to_markdown(table_from_csv(args.from_csv), args.metric))
            return
        if not args.runs:
            raise InputError("give run directories (or --from-csv TABLE_CSV).")
        report(args.runs, args.out, args.metric, args.compare_paper, args.select)


if __name__ == "__main__":
    main()
