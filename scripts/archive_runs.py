"""Keeps the record of finished runs, without their checkpoints, where the repository holds it.

  python scripts/archive_runs.py runs/readings_imbalance --out docs/results/readings/runs

Copies `config.json`, `results.json`, `metrics.jsonl` and (when present) `events.jsonl` and
`config_changes.jsonl` of every finished run (a directory holding results.json) under the given
directories to `OUT/<directory name>/<run name>/`, which is what `python -m mlrpl_jax.report`
reads: the committed tables are rebuilt from the committed runs with the same command, and a
study spread over several sessions (whose `runs/` do not persist) accumulates its finished runs
there. A run already archived with identical files is skipped; one whose files differ (rerun) is
replaced. Unfinished runs are skipped with a note.
"""

import argparse
import filecmp
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mlrpl_jax import cli, errors

KEPT = ("config.json", "results.json", "metrics.jsonl", "events.jsonl", "config_changes.jsonl")


def finished_runs(path: str) -> list[str]:
    """The run directories with results.json at or directly under `path`."""
    if not os.path.isdir(path):
        raise errors.MissingFileError(f"{path} is not a directory of runs (a sweep's --workdir).")
    if os.path.exists(os.path.join(path, "results.json")):
        return [path]
    children = sorted(os.path.join(path, d) for d in os.listdir(path))
    return [c for c in children if os.path.exists(os.path.join(c, "results.json"))]


def archive(paths: list[str], out: str) -> tuple[int, int]:
    """Copies the records of the finished runs of `paths` to `out`. Returns (copied, unchanged)."""
    runs = {path: finished_runs(path) for path in paths}  # every path checked before any copy
    copied = unchanged = 0
    for path, dirs in runs.items():
        group = os.path.basename(os.path.normpath(path))
        for run in dirs:
            target = os.path.join(out, group, os.path.basename(os.path.normpath(run)))
            files = [f for f in KEPT if os.path.exists(os.path.join(run, f))]
            if os.path.isdir(target) and all(
                os.path.exists(os.path.join(target, f))
                and filecmp.cmp(os.path.join(run, f), os.path.join(target, f), shallow=False)
                for f in files
            ):
                unchanged += 1
                continue
            tmp = target + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            for f in files:
                shutil.copyfile(os.path.join(run, f), os.path.join(tmp, f))
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
            copied += 1
    return copied, unchanged


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="sweep workdirs (or run directories)")
    parser.add_argument("--out", required=True, help="where the records go (in the repository)")
    args = parser.parse_args(argv)
    with cli.user_errors():
        copied, unchanged = archive(args.runs, args.out)
    print(f"{copied} run(s) archived to {args.out}, {unchanged} already there.")


if __name__ == "__main__":
    main()
