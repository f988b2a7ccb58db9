"""Checks that the committed result tables are what their documented commands produce.

    python scripts/check_published.py            # every check; exit status 1 on a difference

Published numbers are regenerated, not typed. For each committed table this runs the command that
makes it, in a subprocess as a user types it, and compares with the committed file:

* a study whose runs are archived in the repository (`docs/results/readings/runs`, written by
  `scripts/archive_runs.py`): `python -m mlrpl_jax.report <its runs> --out TMP`, and TMP's
  table.md and table.csv must equal the committed ones byte for byte;
* a table whose runs were not kept (the earlier studies: `synthetic_transfer`,
  `synthetic_transfer_baselines`, `clip_synthetic`): its table.csv holds every seed's value, so
  `python -m mlrpl_jax.report --from-csv <table.csv>` must print the committed table.md's rows
  (header and every cell; the title line, which names the runs, is not in the CSV);
* the regression floors: `python scripts/transfer_floors.py --from-csv
  docs/results/synthetic_transfer/table.csv` must give the committed floors and study values of
  `docs/results/synthetic_transfer_floors.json`;
* the learning margins: `python scripts/learning_margins.py --from-json --out
  docs/results/learning_margins.json` must give the committed margins from the runs recorded
  beside them;
* the paper configs' dry run: `python scripts/dry_run_configs.py --doc_only --results
  docs/results/paper_configs --doc TMP` must write the committed `paper_configs.md` byte for byte
  from the per-config results committed beside it.

Prints one line per check (`ok` or what differs) and exits with status 1 when any differs.
"""

import argparse
import difflib
import glob
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = REPO  # where docs/results is read (--root)
RESULTS = os.path.join("docs", "results")
# Committed tables whose runs are archived: (table directory, run directory globs).
ARCHIVED = (
    (os.path.join(RESULTS, "readings", "imbalance"),
     (os.path.join(RESULTS, "readings", "runs", "imbalance_*"),)),
    (os.path.join(RESULTS, "readings", "clip"),
     (os.path.join(RESULTS, "readings", "runs", "clip_*"),)),
)  # fmt: skip
FROM_CSV = ("synthetic_transfer", "synthetic_transfer_baselines", "clip_synthetic")
FLOORS = (os.path.join(RESULTS, "synthetic_transfer_floors.json"),
          os.path.join(RESULTS, "synthetic_transfer", "table.csv"))  # fmt: skip
MARGINS = os.path.join(RESULTS, "learning_margins.json")
PAPER_CONFIGS = (os.path.join(RESULTS, "paper_configs.md"), os.path.join(RESULTS, "paper_configs"))


def _run(*args: str) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          check=False)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def _read(path: str) -> str:
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def _diff(expected: str, got: str, name: str) -> str:
    lines = difflib.unified_diff(expected.splitlines(), got.splitlines(), f"committed {name}",
                                 "regenerated", lineterm="", n=0)  # fmt: skip
    return "\n".join(list(lines)[:20])


def check_archived(table_dir: str, globs: tuple[str, ...]) -> list[str]:
    """report over the archived runs into a temporary directory; table.md and table.csv equal."""
    if not os.path.exists(os.path.join(ROOT, table_dir, "table.md")):
        return [f"{table_dir}: no committed table.md"]
    runs = sorted(p for g in globs for p in glob.glob(os.path.join(ROOT, g)))
    with tempfile.TemporaryDirectory() as out:
        _run("-m", "mlrpl_jax.report", *runs, "--out", out)
        problems = []
        for name in ("table.md", "table.csv"):
            with open(os.path.join(out, name)) as f:
                got = f.read()
            expected = _read(os.path.join(table_dir, name))
            if got != expected:
                problems.append(f"{table_dir}/{name}:\n{_diff(expected, got, name)}")
    return problems


def check_from_csv(name: str) -> list[str]:
    """The committed table.md's rows rebuilt from its table.csv."""
    table_dir = os.path.join(RESULTS, name)
    got = _run("-m", "mlrpl_jax.report", "--from-csv", os.path.join(ROOT, table_dir, "table.csv"))
    committed = _read(os.path.join(table_dir, "table.md")).splitlines()
    rows = "\n".join(line for line in committed if line.startswith("|"))
    if got.strip() != rows.strip():
        return [f"{table_dir}/table.md:\n{_diff(rows, got, 'table.md rows')}"]
    return []


def check_floors() -> list[str]:
    floors_file, table_csv = FLOORS
    got = json.loads(
        _run("scripts/transfer_floors.py", "--from-csv", os.path.join(ROOT, table_csv))
    )
    committed = json.loads(_read(floors_file))["floors"]
    problems = []
    for method, entry in committed.items():
        expected = {"floor": entry["floor"], "study_values": entry["study_values"]}
        if got.get(method) != expected:
            problems.append(f"{floors_file}: {method} committed {expected}, regenerated "
                            f"{got.get(method)}")  # fmt: skip
    return problems


def check_margins() -> list[str]:
    path = os.path.join(ROOT, MARGINS)
    got = json.loads(_run("scripts/learning_margins.py", "--from-json", "--out", path))
    committed = json.loads(_read(MARGINS))["margins"]
    if got != committed:
        return [f"{MARGINS}: committed {committed}, regenerated {got}"]
    return []


def check_paper_configs() -> list[str]:
    doc, results = PAPER_CONFIGS
    with tempfile.TemporaryDirectory() as out:
        got_path = os.path.join(out, "paper_configs.md")
        _run("scripts/dry_run_configs.py", "--doc_only", "--results",
             os.path.join(ROOT, results), "--doc", got_path)  # fmt: skip
        with open(got_path) as f:
            got = f.read()
    expected = _read(doc)
    if got != expected:
        return [f"{doc}:\n{_diff(expected, got, 'paper_configs.md')}"]
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=REPO,
                        help="the directory holding docs/results (default: this repository)")  # fmt: skip
    global ROOT
    ROOT = parser.parse_args().root
    checks = [(f"{d} (from its archived runs)", lambda d=d, g=g: check_archived(d, g))
              for d, g in ARCHIVED]  # fmt: skip
    checks += [(f"{RESULTS}/{n} (from its table.csv)", lambda n=n: check_from_csv(n))
               for n in FROM_CSV]  # fmt: skip
    checks.append((f"{FLOORS[0]} (from {FLOORS[1]})", check_floors))
    checks.append((f"{MARGINS} (from its recorded runs)", check_margins))
    checks.append((f"{PAPER_CONFIGS[0]} (from {PAPER_CONFIGS[1]})", check_paper_configs))
    failed = 0
    for name, check in checks:
        problems = check()
        print(f"{'ok' if not problems else 'DIFFERS'}  {name}", flush=True)
        for problem in problems:
            print("    " + problem.replace("\n", "\n    "))
        failed += bool(problems)
    if failed:
        print(f"{failed} of {len(checks)} published files differ from what their commands make.")
        sys.exit(1)


if __name__ == "__main__":
    main()
