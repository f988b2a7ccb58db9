"""`mlrpl_jax.report`: the papers' table (mean +- std over seeds, averages), CSV and figures from
run directories."""

import csv
import io
import json
import os

import numpy as np
import pytest

from mlrpl_jax import report

FINAL = {  # (method, proportion, seed) -> mAP; OF1 = mAP - 10, CF1 = mAP - 20
    ("plain", 0.1, 0): 50.0, ("plain", 0.1, 1): 52.0, ("plain", 0.5, 0): 70.0,
    ("plain", 0.5, 1): 74.0, ("sst", 0.1, 0): 40.0, ("sst", 0.1, 1): 41.0,
    ("sst", 0.5, 0): 60.0, ("sst", 0.5, 1): 63.0,
}  # fmt: skip


def write_run(root, method, proportion, seed, mAP, finished=True, setting=None):
    path = os.path.join(root, f"{method}_{setting or ''}p{proportion:g}_s{seed}")
    os.makedirs(path)
    data = {"name": "synthetic_scenes", "known_proportion": proportion}
    if setting is not None:  # configs written before the 'setting' key was read: 'pal'
        data["setting"] = setting
    config = {"method": method, "seed": seed, "data": data}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    records = [
        {"step": 10 * e, "epoch": e, "train/loss": 1.0 / e, "train/theta_intra": 1.0 - 0.01 * e}
        for e in (1, 2, 3)
    ]
    if method == "sst":
        records += [{"step": 10 * e, "epoch": e, "train_epoch/pseudo_intra_precision": 0.1 * e}
                    for e in (1, 2, 3)]  # fmt: skip
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    if finished:
        metrics = {"mAP": mAP, "OF1": mAP - 10, "CF1": mAP - 20}
        with open(os.path.join(path, "results.json"), "w") as f:
            json.dump({"metrics": metrics}, f)
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
    for name in ("map_vs_proportion.png", "pseudo_labels.png", "learned_scalars.png"):
        with open(os.path.join(out, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
    with open(os.path.join(out, "table.md")) as f:
        assert f.read().startswith("Final test mAP (%) on synthetic_scenes")


def test_no_finished_run_is_a_clear_error(tmp_path):
    write_run(str(tmp_path), "plain", 0.1, 0, 0.0, finished=False)
    with pytest.raises(SystemExit, match="No finished runs"):
        report.report([str(tmp_path)], None)


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
