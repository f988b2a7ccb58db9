"""`python -m mlrpl_jax.report` and `python -m mlrpl_jax.report_maps` as the README types them, run
as subprocesses: the documented commands work, and each user error is one `error: ...` message on
stderr with exit status 2, no traceback and no `--out` folder."""

import json
import os
import subprocess
import sys

import pytest
from test_report import FINAL, write_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """Status 2 and one `error: ...` line holding `fragments`, without a traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "sweep"
    for (m, p, s), v in FINAL.items():
        write_run(str(root), m, p, s, v)
    write_run(str(root), "sst", 0.5, 2, 0.0, finished=False)  # still running: skipped
    return root


def test_report_as_the_readme_types_it(sweep):
    out = sweep / "report"
    proc = run_module("mlrpl_jax.report", str(sweep), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "| plain | 51.0 +- 1.4 | 72.0 +- 2.8 |" in proc.stdout
    assert "skipping" in proc.stderr and "sst_p0.5_s2" in proc.stderr
    assert sorted(os.listdir(out)) == [
        "learned_scalars.png", "learning_curves.png", "map_vs_proportion.png",
        "pseudo_labels.png", "table.csv", "table.md",
    ]  # fmt: skip
    for name in os.listdir(out):
        assert f"wrote {out / name}" in proc.stderr
    proc = run_module("mlrpl_jax.report", str(sweep), "--compare-paper", "coco", "--select", "val")
    assert proc.returncode == 0, proc.stderr
    assert "Test (at the best validation epoch) mAP" in proc.stdout
    assert "Published rows on coco" in proc.stdout


def test_report_of_one_run_draws_its_learning_curves(tmp_path):
    run = write_run(str(tmp_path), "plain", 0.5, 0, 60.0)
    out = tmp_path / "report"
    proc = run_module("mlrpl_jax.report", run, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(out)) == [
        "learned_scalars.png", "learning_curves.png", "table.csv", "table.md"
    ]  # fmt: skip
    assert "map_vs_proportion.png not drawn: fewer than two 'pal' proportions" in proc.stderr
    with open(out / "learning_curves.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def _damage(path, text="{not json", mode="w"):
    with open(path, mode) as f:
        f.write(text)


def _drop_validation(run):
    """Rewrites the run's metrics.jsonl as a run without a validation split logs it."""
    path = os.path.join(run, "metrics.jsonl")
    with open(path) as f:
        records = [json.loads(line) for line in f]
    with open(path, "w") as f:
        f.writelines(
            json.dumps({k: v for k, v in r.items() if "/val/" not in k}) + "\n" for r in records
        )


# name -> (how to break a finished run `run` (a path), extra arguments, fragments of the message)
REPORT_ERRORS = {
    "missing_path": (None, ["does-not-exist"], ["does-not-exist does not exist"]),
    "no_finished_run": (
        lambda run: os.remove(os.path.join(run, "results.json")), [],
        ["no finished run in", "1 run directory found, none with results.json"],
    ),
    "no_run_dir": (
        lambda run: os.remove(os.path.join(run, "config.json")), [], ["no run directory in"]
    ),
    "damaged_results": (
        lambda run: _damage(os.path.join(run, "results.json")), [],
        ["results.json is damaged (not JSON", "delete it and rerun"],
    ),
    "results_without_metrics": (
        lambda run: _damage(os.path.join(run, "results.json"), "{}"), [],
        ["results.json has no 'metrics'"],
    ),
    "damaged_config": (
        lambda run: _damage(os.path.join(run, "config.json"), "[1, 2"), [],
        ["config.json is damaged (not JSON"],
    ),
    "config_without_data": (
        lambda run: _damage(os.path.join(run, "config.json"), '{"method": "plain"}'), [],
        ["config.json has no 'data.name'"],
    ),
    "damaged_metrics_line": (
        lambda run: _damage(os.path.join(run, "metrics.jsonl"), '{"step": 9, "tr\n', "a"),
        [], ["metrics.jsonl line 11 is damaged", "delete that line"],
    ),
    "select_val_without_validation": (
        _drop_validation, ["--select", "val"],
        ["no validation mAP", "without --select val"],
    ),
    "unknown_metric": (None, ["--metric", "mAp"], ["--metric mAp: no run reports it", "CF1"]),
    "out_is_a_file": (
        lambda run: _damage(os.path.join(os.path.dirname(run), "report"), ""), [],
        ["report is a file"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(REPORT_ERRORS))
def test_report_user_errors(tmp_path, case):
    breaks, extra, fragments = REPORT_ERRORS[case]
    run = write_run(str(tmp_path / "runs"), "plain", 0.5, 0, 60.0)
    if breaks is not None:
        breaks(run)
    out = tmp_path / "runs" / "report"
    paths = [str(tmp_path / e) if e == "does-not-exist" else e for e in extra]
    args = paths if case == "missing_path" else [str(tmp_path / "runs"), *paths]
    proc = run_module("mlrpl_jax.report", *args, "--out", str(out))
    assert_user_error(proc, *fragments)
    assert case == "out_is_a_file" or not out.exists()


def test_report_from_csv_prints_the_rows_and_its_errors_are_messages(tmp_path):
    proc = run_module("mlrpl_jax.report", "--from-csv", "docs/results/synthetic_transfer/table.csv")
    assert proc.returncode == 0, proc.stderr
    assert (
        proc.stdout.startswith("| method | 10% | 30% |") and "| dsrb | 75.4 +- 1.1 |" in proc.stdout
    )
    assert_user_error(run_module("mlrpl_jax.report", "--from-csv", str(tmp_path / "no.csv")),
                      "no.csv does not exist")  # fmt: skip
    bad = tmp_path / "bad.csv"
    bad.write_text("method,setting\nplain,pal\n")
    assert_user_error(run_module("mlrpl_jax.report", "--from-csv", str(bad)),
                      "bad.csv: not a table.csv written by report")  # fmt: skip
    assert_user_error(run_module("mlrpl_jax.report"), "give run directories")
    assert_user_error(run_module("mlrpl_jax.report", str(tmp_path), "--from-csv", str(bad)),
                      "give no run directories")  # fmt: skip


# ---- report_maps


@pytest.mark.slow
def test_report_maps_user_errors_without_a_model(tmp_path):
    """A missing or non-run directory, a run without (that) checkpoint, a damaged config.json, an
    --out that is a file: found before anything is written."""
    out = tmp_path / "maps"
    assert_user_error(
        run_module("mlrpl_jax.report_maps", str(tmp_path / "nope"), "--out", str(out)),
        "run directory", "nope does not exist", "--workdir DIR",
    )  # fmt: skip
    assert_user_error(
        run_module("mlrpl_jax.report_maps", str(tmp_path), "--out", str(out)),
        "is not a run directory (no config.json)",
    )  # fmt: skip
    run = write_run(str(tmp_path), "sst", 0.5, 0, 60.0)
    assert_user_error(
        run_module("mlrpl_jax.report_maps", run, "--out", str(out)),
        "has no checkpoint yet", "train it first",
    )  # fmt: skip
    os.makedirs(os.path.join(run, "checkpoints", "8"))
    assert_user_error(
        run_module("mlrpl_jax.report_maps", run, "--out", str(out)),
        "has no best checkpoint", "--checkpoint latest",
    )  # fmt: skip
    _damage(os.path.join(run, "config.json"))
    assert_user_error(
        run_module("mlrpl_jax.report_maps", run, "--out", str(out), "--checkpoint", "latest"),
        "config.json is damaged",
    )  # fmt: skip
    _damage(str(out), "")
    assert_user_error(
        run_module("mlrpl_jax.report_maps", run, "--out", str(out), "--checkpoint", "latest"),
        "is a file",
    )  # fmt: skip
    os.remove(out)
    assert sorted(os.listdir(run)) == [
        "checkpoints",
        "config.json",
        "metrics.jsonl",
        "results.json",
    ]
    assert not out.exists()


@pytest.fixture(scope="module")
def trained_sst(tmp_path_factory):
    """A tiny SST run (1 epoch of 4 steps) with its best and latest checkpoints."""
    from helpers import tiny_run_config

    from mlrpl_jax import trainer

    root = tmp_path_factory.mktemp("sst")
    overrides = {
        "model.feature_dim": 16, "model.attention_dim": 8, "method_config.ist_hidden_dim": 8,
        "method_config.ist_pair_dim": 12, "method_config.bank_size": 4, "train.num_epochs": 1,
        "data.cache_dir": str(root / "cache"),
    }  # fmt: skip
    config = tiny_run_config(root / "tfds", method="sst", **overrides)
    trainer.run(config, str(root / "run"))
    return root


@pytest.mark.slow
def test_report_maps_as_the_readme_types_it(trained_sst):
    out = trained_sst / "figs"
    proc = run_module("mlrpl_jax.report_maps", str(trained_sst / "run"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(out)) == ["attention.png", "cooccurrence.png"]
    written = proc.stdout.splitlines()[-2:]  # after the library's own log lines
    assert written == [str(out / "cooccurrence.png"), str(out / "attention.png")]


@pytest.mark.slow
def test_report_maps_of_a_method_without_maps_is_an_error(trained_sst):
    """A `plain` run: the model's outputs are checked (by shape, before its checkpoint is restored,
    so an empty checkpoint folder stands in for one) before --out is created."""
    from helpers import tiny_run_config

    run = trained_sst / "plain"
    os.makedirs(run / "best" / "4")
    config = tiny_run_config(trained_sst / "tfds", **{"data.cache_dir": str(trained_sst / "cache")})
    with open(run / "config.json", "w") as f:
        json.dump(config.to_dict(), f)
    out = trained_sst / "plain_figs"
    proc = run_module("mlrpl_jax.report_maps", str(run), "--out", str(out))
    assert_user_error(proc, "the plain model has no maps to draw", "python -m mlrpl_jax.report")
    assert not out.exists()
