"""`mlrpl_jax.report`: the papers' table (mean +- std over seeds, averages), CSV and figures from
run directories."""

import csv
import io
import json
import os

import numpy as np
import pytest

from mlrpl_jax import report
from mlrpl_jax.errors import RunDirError

FINAL = {  # (method, proportion, seed) -> mAP; OF1 = mAP - 10, CF1 = mAP - 20
    ("plain", 0.1, 0): 50.0, ("plain", 0.1, 1): 52.0, ("plain", 0.5, 0): 70.0,
    ("plain", 0.5, 1): 74.0, ("sst", 0.1, 0): 40.0, ("sst", 0.1, 1): 41.0,
    ("sst", 0.5, 0): 60.0, ("sst", 0.5, 1): 63.0,
}  # fmt: skip


SPE = 2  # steps per epoch of the hand-written runs


def write_run(root, method, proportion, seed, mAP, finished=True, setting=None, epochs=3, val=True):
    """A run directory as `mlrpl_jax.train` writes it: config.json, metrics.jsonl (train records
    per step, `train_epoch/` ratios and evaluations per epoch, as `trainer.run` writes them) and,
    if `finished`, results.json with final metrics mAP, OF1 = mAP - 10, CF1 = mAP - 20."""
    path = os.path.join(root, f"{method}_{setting or ''}p{proportion:g}_s{seed}")
    os.makedirs(path)
    data = {"name": "synthetic_scenes", "known_proportion": proportion}
    if setting is not None:  # configs written before the 'setting' key was read: 'pal'
        data["setting"] = setting
    config = {"method": method, "seed": seed, "data": data}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    records = [{"step": 0, "event": "start"}]  # records without metrics are ignored
    for e in range(1, epochs + 1):
        for step in range(SPE * (e - 1) + 1, SPE * e + 1):
            records.append({"step": step, "epoch": step / SPE, "train/loss": 1.0 / step + 0.01 * seed,
                            "train/theta_intra": 1.0 - 0.01 * step})  # fmt: skip
        if method == "sst":
            records.append({"step": SPE * e, "epoch": e,
                            "train_epoch/pseudo_intra_precision": 0.1 * e})  # fmt: skip
        test = mAP * e / epochs  # the final evaluation is the final metric
        evals = {"mAP": test, "OF1": test - 10, "CF1": test - 20, "val/known_fraction": 50.0}
        if val:
            evals["val/mAP"] = test + 5
        records.append({"step": SPE * e, "epoch": e,
                        **{f"eval/synthetic_scenes/{k}": v for k, v in evals.items()}})  # fmt: skip
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    if finished:
        metrics = {"mAP": mAP, "OF1": mAP - 10, "CF1": mAP - 20}
        with open(os.path.join(path, "results.json"), "w") as f:
            json.dump({"metrics": metrics, "epoch": float(epochs)}, f)
    return path


@pytest.fixture
def sweep(tmp_path):
    for (m, p, s), v in FINAL.items():
        write_run(str(tmp_path), m, p, s, v)
    write_run(str(tmp_path), "sst", 0.5, 2, 0.0, finished=False)  # still running: skipped
    return str(tmp_path)


def test_table_is_mean_and_std_over_seeds_with_averages(sweep):
    table = report.summarize(report.load_runs([sweep]))
    assert table.methods == ["plain", "sst"] and table.columns == [("pal", 0.1), ("pal", 0.5)]
    mean, std, values = table.cells["sst"][("pal", 0.5)]["mAP"]
    assert (
        values == [60.0, 63.0] and mean == 61.5 and std == pytest.approx(np.std([60, 63], ddof=1))
    )
    # Avg. mAP of plain: mean of (51, 72); its std: of the seed-wise averages (60, 63).
    avg, avg_std = table.average("plain", "mAP")
    assert avg == pytest.approx(61.5) and avg_std == pytest.approx(np.std([60.0, 63.0], ddof=1))
    assert table.average("plain", "CF1")[0] == pytest.approx(41.5)
    text = report.to_markdown(table)
    assert "| method | 10% | 50% | Avg. mAP | Avg. OF1 | Avg. CF1 |" in text
    assert "| sst | 40.5 +- 0.7 | 61.5 +- 2.1 | 51.0 +- 1.4 | 41.0 +- 1.4 | 31.0 +- 1.4 |" in text


def test_settings_are_columns_of_one_table(sweep, tmp_path):
    # One sweep workdir per label setting, reported together: 'pal' columns first, then PPL and SPL
    # (whose proportion does not matter), each with its own seeds.
    other = str(tmp_path / "other")
    write_run(other, "plain", 0.3, 0, 30.0, setting="ppl")
    write_run(other, "plain", 0.3, 1, 32.0, setting="ppl")
    write_run(other, "plain", 0.7, 0, 20.0, setting="spl")
    write_run(other, "sst", 1.0, 0, 22.0, setting="spl")
    table = report.summarize(report.load_runs([sweep, other]))
    assert table.columns == [("pal", 0.1), ("pal", 0.5), ("ppl", 0.3), ("spl", 0.0)]
    assert table.cells["plain"][("ppl", 0.3)]["mAP"][2] == [30.0, 32.0]
    assert table.cells["sst"][("spl", 0.0)]["mAP"][2] == [22.0]
    text = report.to_markdown(table)
    assert "| method | 10% | 50% | PPL 30% | SPL | Avg. mAP |" in text
    assert "| plain | 51.0 +- 1.4 | 72.0 +- 2.8 | 31.0 +- 1.4 | 20.0 | 43.5 |" in text
    assert table.pal_proportions == [0.1, 0.5]


def test_csv_and_figures_are_written(sweep, tmp_path, capsys):
    out = str(tmp_path / "report")
    report.main([sweep, "--out", out])
    assert "| plain | 51.0 +- 1.4 | 72.0 +- 2.8 |" in capsys.readouterr().out
    with open(os.path.join(out, "table.csv")) as f:
        rows = list(csv.DictReader(io.StringIO(f.read())))
    row = [
        r
        for r in rows
        if (r["method"], r["setting"], r["known_proportion"], r["metric"])
        == ("plain", "pal", "0.5", "mAP")
    ]
    assert (
        row[0]["mean"] == "72.0000" and row[0]["n"] == "2" and row[0]["values"] == "70.0000 74.0000"
    )
    for name in (
        "map_vs_proportion.png", "learning_curves.png", "pseudo_labels.png", "learned_scalars.png"
    ):  # fmt: skip
        with open(os.path.join(out, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
    with open(os.path.join(out, "table.md")) as f:
        assert f.read().startswith("Final test mAP (%) on synthetic_scenes")


def test_no_finished_run_is_a_clear_error(tmp_path):
    write_run(str(tmp_path), "plain", 0.1, 0, 0.0, finished=False)
    with pytest.raises(RunDirError, match="no finished run in .*1 run directory found"):
        report.report([str(tmp_path)], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def _saved_titles(monkeypatch) -> dict[str, str]:
    """{file name: suptitle} of every matplotlib figure saved from now on."""
    from matplotlib.figure import Figure

    titles, save = {}, Figure.savefig

    def savefig(fig, path, *args, **kwargs):
        titles[os.path.basename(path)] = fig.get_suptitle()
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return titles


def test_every_figure_is_titled_with_data_setting_metric_and_seeds(sweep, tmp_path, monkeypatch):
    saved = _saved_titles(monkeypatch)
    runs = report.load_runs([sweep])
    drawn = report.write_figures(runs, report.summarize(runs), str(tmp_path))
    assert set(drawn) == {
        "map_vs_proportion.png", "learning_curves.png", "pseudo_labels.png", "learned_scalars.png"
    }  # fmt: skip
    assert saved == drawn  # the returned titles are the figures' own
    for name, title in drawn.items():
        flat = " ".join(title.split())
        assert "synthetic_scenes, PAL 10%, 50%" in flat, name
        assert "mean ± std over seeds [0, 1]" in flat, name
    assert drawn["map_vs_proportion.png"].startswith("Final test mAP vs. known-label proportion")
    assert "(error bars: ± sample std)" in " ".join(drawn["map_vs_proportion.png"].split())
    curves = drawn["learning_curves.png"]
    assert curves.startswith("Learning curves: train loss, validation mAP, test mAP per epoch")
    assert "(shaded bands: ± sample std)" in " ".join(curves.split())
    # --select val names the validation-selected metric.
    runs = report.load_runs([sweep], select="val")
    val = report.write_figures(runs, report.summarize(runs), str(tmp_path), select="val")
    assert val["map_vs_proportion.png"].startswith("Test mAP at the best val. epoch")


def test_a_single_run_draws_its_learning_curves_not_a_single_dot(tmp_path, monkeypatch):
    """One run (one 'pal' proportion): no map_vs_proportion.png, but its train loss, validation
    and test mAP per epoch; the validation panel is left out for a run without validation."""
    saved = _saved_titles(monkeypatch)
    runs = report.load_runs([write_run(str(tmp_path), "hst", 0.5, 3, 60.0)])
    out = tmp_path / "out"
    out.mkdir()
    drawn = report.write_figures(runs, report.summarize(runs), str(out))
    assert set(drawn) == {"learning_curves.png", "learned_scalars.png"} and saved == drawn
    assert sorted(os.listdir(out)) == sorted(drawn)
    title = " ".join(drawn["learning_curves.png"].split())
    assert title == (
        "Learning curves: train loss, validation mAP, test mAP per epoch "
        "synthetic_scenes, PAL 50% one run per line (seed 3), no shaded bands"
    )
    runs = report.load_runs([write_run(str(tmp_path / "noval"), "plain", 0.1, 0, 40.0, val=False)])
    drawn = report.write_figures(runs, report.summarize(runs), str(out))
    assert drawn["learning_curves.png"].startswith("Learning curves: train loss, test mAP per")


def test_learning_curves_are_left_out_beyond_max_lines(tmp_path):
    for i in range(report.MAX_LINES + 1):
        write_run(str(tmp_path), "plain", 0.1 + 0.05 * i, 0, 40.0)
    runs = report.load_runs([str(tmp_path)])
    drawn = report.write_figures(runs, report.summarize(runs), str(tmp_path))
    assert set(drawn) == {"map_vs_proportion.png", "learned_scalars.png"}


def test_curves_are_means_over_seeds_of_the_last_value_logged_per_epoch():
    """A resumed run logs the steps after its last checkpoint again: the later value counts; records
    without the key (events, other metrics) are ignored."""
    records = [
        {"step": 1, "epoch": 0.5, "train/loss": 9.0},
        {"step": 2, "event": "resume"},
        {"step": 1, "epoch": 0.5, "train/loss": 1.0},
        {"step": 2, "epoch": 1.0, "train/loss": 3.0},
        {"step": 2, "epoch": 1, "eval/d/mAP": 50.0},
    ]  # fmt: skip

    def run(seed, records):
        return report.Run("r", "plain", "d", "pal", 0.5, seed, {}, records)

    other = [{"step": 1, "epoch": 0.5, "train/loss": 2.0}]
    xs, mean, std = report.seed_curve([run(0, records), run(1, other)], "train/loss")
    np.testing.assert_allclose(xs, [0.5, 1.0])
    np.testing.assert_allclose(mean, [1.5, 3.0])
    assert std[0] == pytest.approx(np.std([1.0, 2.0], ddof=1)) and np.isnan(std[1])
    xs, mean, _ = report.seed_curve([run(0, records)], "eval/{dataset}/mAP")
    assert list(xs) == [1.0] and list(mean) == [50.0]


def test_report_maps_rebuilds_the_run_config_from_config_json(tmp_path):
    from helpers import tiny_run_config

    from mlrpl_jax import report_maps
    from mlrpl_jax.metric_writer import atomic_write_json

    config = tiny_run_config(tmp_path / "tfds", method="sst", **{"data.known_proportion": 0.3})
    config.method_config.bank_size = 7
    atomic_write_json(str(tmp_path / "config.json"), config.to_dict())
    assert report_maps.load_config(str(tmp_path)).to_dict() == config.to_dict()


def test_val_selection_reports_test_metrics_of_the_best_validation_epoch(tmp_path, capsys):
    """--select val: the test metrics of the epoch with the highest validation mAP (ties: the
    earlier epoch); a run without a validation split is an error that says so."""
    records = [
        {"step": 10, "eval/coco/2014/mAP": 50.0, "eval/coco/2014/OF1": 1.0,
         "eval/coco/2014/val/mAP": 30.0, "eval/coco/2014/test/ema/mAP": 99.0},
        {"step": 20, "eval/coco/2014/mAP": 55.0, "eval/coco/2014/OF1": 2.0,
         "eval/coco/2014/val/mAP": 40.0},
        {"step": 25, "train/loss": 1.0},
        {"step": 30, "eval/coco/2014/mAP": 70.0, "eval/coco/2014/OF1": 3.0,
         "eval/coco/2014/val/mAP": 40.0},
        {"step": 40, "eval/coco/2014/mAP": 75.0, "eval/coco/2014/OF1": 4.0,
         "eval/coco/2014/val/mAP": 35.0},
    ]  # fmt: skip
    assert report.val_selected(records, "coco/2014") == {"mAP": 55.0, "OF1": 2.0}
    with pytest.raises(ValueError, match="no validation mAP"):
        report.val_selected([r for r in records if "train/loss" in r], "coco/2014")
    run = write_run(str(tmp_path), "plain", 0.5, 0, 75.0)
    with open(os.path.join(run, "metrics.jsonl"), "w") as f:
        for r in records:
            r = {k.replace("coco/2014", "synthetic_scenes"): v for k, v in r.items()}
            r.update({k.replace("OF1", "CF1"): v for k, v in r.items() if k.endswith("OF1")})
            f.write(json.dumps(r) + "\n")
    report.main([str(tmp_path), "--select", "val"])
    out = capsys.readouterr().out
    assert "Test (at the best validation epoch) mAP" in out and "| plain | 55.0 |" in out


def test_runs_of_one_method_with_different_settings_are_separate_rows(tmp_path):
    """An ablation or another reading of a method (a results-changing config key that differs
    between its runs) is its own row, named by the differing key; seeds, proportions and harmless
    keys (worker counts) do not split a row."""
    for variant, use_d in (("a", True), ("b", False)):
        for seed in (0, 1):
            path = write_run(str(tmp_path / variant), "imbalance", 0.5, seed, 60.0 + 10 * use_d)
            with open(os.path.join(path, "config.json")) as f:
                config = json.load(f)
            config["method_config"] = {"use_d": use_d, "q": 0.1}
            config["data"]["worker_count"] = seed  # harmless: not a variant
            with open(os.path.join(path, "config.json"), "w") as f:
                json.dump(config, f)
    write_run(str(tmp_path / "a"), "plain", 0.5, 0, 50.0)
    runs = report.load_runs([str(tmp_path / "a"), str(tmp_path / "b")])
    table = report.summarize(runs, ("mAP",))
    # Named by where they depart from the most common value (a tie: the first run's value).
    assert table.methods == ["plain", "imbalance", "imbalance (use_d=False)"]
    column = ("pal", 0.5)
    assert table.cells["imbalance"][column]["mAP"][0] == pytest.approx(70.0)
    assert table.cells["imbalance (use_d=False)"][column]["mAP"][0] == pytest.approx(60.0)
