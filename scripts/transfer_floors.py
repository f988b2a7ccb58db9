"""Record the regression floors of the transfer benchmark from a finished study.

  python scripts/transfer_floors.py runs/synthetic_transfer \
      --out docs/results/synthetic_transfer_floors.json

For each guarded method (one per family: `plain`; the SSGRL family's `ssgrl`; the label-transfer
family's `hst`; the blending family's `dsrb`) and the guarded known proportion (50 %), the floor is

    min over the study's seeds of the final test mAP  -  max(1.0, 2 x their sample std)

(`--from-csv docs/results/synthetic_transfer/table.csv` recomputes them from the committed table),
so that a rerun of the study's seed-0 run (what `tests/test_transfer_guard.py` does) passes on any
machine where it reproduces the study within its own seed spread, and fails when a change costs
more than that. The floors are computed, never edited by hand; rerun this script after a new study.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from mlrpl_jax import cli, errors, report
from mlrpl_jax.metric_writer import atomic_write_json

GUARDED = ("plain", "ssgrl", "hst", "dsrb")


def floors(runs, methods=GUARDED, proportion: float = 0.5) -> dict:
    """{method: {'floor', 'study_values', 'rule'}} from the study's runs."""
    out = {}
    for method in methods:
        found = sorted(
            (r.seed, r.final["mAP"])
            for r in runs
            if r.method == method and r.setting == "pal" and r.proportion == proportion
        )
        if len(found) < 2:
            raise errors.RunDirError(
                f"{method} at {proportion:g}: {len(found)} finished seed(s) in the study; a floor "
                "needs 2 or more (run the sweep's other seeds first)."
            )
        values = [v for _, v in found]
        margin = max(1.0, 2.0 * float(np.std(values, ddof=1)))
        out[method] = {
            "floor": round(min(values) - margin, 2),
            "seeds": [s for s, _ in found],
            "study_values": [round(v, 2) for v in values],
        }
    return out


def floors_from_table(table, methods=GUARDED, proportion: float = 0.5) -> dict:
    """The floors of a committed table.csv's per-seed values (`report.table_from_csv`): the
    same rule on the values `report` wrote at 4 decimals; the seeds are not in the CSV, so the
    entries have 'floor' and 'study_values' only."""
    out = {}
    for method in methods:
        cell = table.cells.get(method, {}).get(("pal", proportion), {}).get("mAP")
        if cell is None or len(cell[2]) < 2:
            raise errors.InputError(f"{method} at {proportion:g}: fewer than 2 seeds in the table.")
        values = cell[2]
        margin = max(1.0, 2.0 * float(np.std(values, ddof=1)))
        out[method] = {"floor": round(min(values) - margin, 2),
                       "study_values": [round(v, 2) for v in values]}  # fmt: skip
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study", nargs="?", help="the sweep's workdir (run directories inside)")
    parser.add_argument(
        "--from-csv", default=None, metavar="TABLE_CSV",
        help="print the floors of a committed table.csv instead (docs/results/synthetic_transfer/"
        "table.csv; nothing is written): how scripts/check_published.py checks the floors file",
    )  # fmt: skip
    parser.add_argument("--out", default="docs/results/synthetic_transfer_floors.json")
    parser.add_argument("--proportion", type=float, default=0.5)
    args = parser.parse_args()
    with cli.user_errors():
        if args.from_csv is not None:
            table = report.table_from_csv(args.from_csv)
            print(json.dumps(floors_from_table(table, GUARDED, args.proportion), indent=2))
            return
        if args.study is None:
            raise errors.InputError("give the study's workdir (or --from-csv TABLE_CSV).")
        write_floors(args)


def write_floors(args: argparse.Namespace) -> None:
    """Computes the floors of the study and writes them (raises `errors.UserError`s)."""
    runs = report.load_runs([args.study])
    result = {
        "config": "configs/synthetic_transfer.py",
        "known_proportion": args.proportion,
        "seed": 0,
        "rule": "min over seeds of the final test mAP - max(1.0, 2 x sample std over seeds)",
        "floors": floors(runs, GUARDED, args.proportion),
    }
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
