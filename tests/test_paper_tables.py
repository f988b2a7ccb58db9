"""The stored published rows (`mlrpl_jax.paper_tables`): values read off the papers by hand,
consistency between the two papers, and `report --compare-paper`."""

import os

import pytest
from test_report import FINAL, write_run

from mlrpl_jax import paper_tables, report

# Read off the papers' tables (HST Table 1/2, DSRB Table 1) by hand: (dataset, method) -> values.
HAND = {
    ("coco", "HST"): {0.1: 70.6, 0.9: 80.4, "avg_map": 77.9, "avg_of1": 76.7, "avg_cf1": 72.6},
    ("coco", "SST"): {0.1: 68.1, 0.5: 78.1, "avg_map": 76.7, "avg_of1": 75.8, "avg_cf1": 71.2},
    ("vg", "Partial BCE"): {0.1: 27.4, 0.2: 38.1, "avg_map": 39.8, "avg_cf1": 25.7},
    ("voc", "HST"): {0.7: 92.5, 0.1: 84.3, "avg_map": 90.9, "avg_of1": 88.4},
    ("vg", "DSRB"): {0.1: 41.4, 0.9: 48.2, "avg_map": 46.0, "avg_of1": 45.1, "avg_cf1": 37.7},
    ("voc", "CL"): {0.1: 44.7, 0.3: 88.6, "avg_map": 84.1, "avg_cf1": 75.4},
}


def test_values_match_the_papers():
    by_key = {(r.dataset, r.method): r for r in paper_tables.rows()}
    for key, values in HAND.items():
        row = by_key[key]
        for k, v in values.items():
            got = row.map_by_proportion[k] if isinstance(k, float) else getattr(row, k)
            assert got == pytest.approx(v), (key, k)
    pgcn = by_key[("vg", "P-GCN")]
    assert pgcn.avg_map is None and set(pgcn.map_by_proportion.values()) == {None}
    assert by_key[("coco", "P-GCN")].avg_of1 is None  # not reported in HST Table 2


def test_rows_are_stored_once_and_averages_are_means():
    rows = paper_tables.rows()
    keys = [(r.dataset, r.method) for r in rows]
    assert len(keys) == len(set(keys)) == 3 * 10  # 9 HST-table methods + DSRB per dataset
    for r in rows:  # the printed average is the mean of the nine values (to rounding)
        values = list(r.map_by_proportion.values())
        if None not in values:
            assert sum(values) / 9 == pytest.approx(r.avg_map, abs=0.06), (r.dataset, r.method)
    assert {r.dataset for r in rows} == set(paper_tables.DATASETS)
    with pytest.raises(ValueError, match="coco"):
        paper_tables.rows("nus")


def test_report_prints_the_published_rows_beside_the_runs(tmp_path, capsys):
    for (m, p, s), v in FINAL.items():
        write_run(str(tmp_path), m, p, s, v)
    report.main([str(tmp_path), "--compare-paper", "coco"])
    out = capsys.readouterr().out
    assert "Published rows on coco" in out
    assert "| HST [hst] | 70.6 | 79.0 | 77.9 | 76.7 | 72.6 |" in out  # 10% and 50% columns
    assert "| P-GCN | 67.5 | 77.4 | 76.2 | - | - |" in out
    assert os.path.isdir(tmp_path)
