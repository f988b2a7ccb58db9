"""The published rows of the papers' main tables, stored once as data (mAP %, average OF1/CF1 %).

* ``hst_table1_2``: HST paper (``shared/papers/000_*``) Table 1 (mAP at 10%..90% known labels and
  their average) with Table 2 (average OF1 and CF1), MS-COCO, VG-200 and VOC 2007: SSGRL, GCN-ML,
  KGGR, P-GCN, ASL, CL, Partial BCE, SST, HST;
* ``dsrb_table1``: DSRB paper (``shared/papers/001_*``, first version) Table 1: the DSRB rows. Its
  baseline rows (SSGRL .. Partial BCE) repeat the HST paper's exactly (all 21 rows compared when
  they were extracted), so they are stored once, under ``hst_table1_2``.

"-" in the papers (not reported) is None here. The rows were extracted from the papers' text files
and are checked against values read off the papers in ``tests/test_paper_tables.py``. Tables of the
imbalance (002) and TRM-ML (003) papers come with those methods. `report --compare-paper coco`
prints these rows beside a run's.
"""

import csv
import io
from typing import NamedTuple

PROPORTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DATASETS = ("coco", "vg", "voc")
# Paper method name -> our method (the closest one; "Partial BCE" is the linear-head baseline).
METHOD_KEYS = {"SSGRL": "ssgrl", "SST": "sst", "HST": "hst", "DSRB": "dsrb", "Partial BCE": "plain"}

_CSV = """\
table,dataset,method,10,20,30,40,50,60,70,80,90,avg_map,avg_of1,avg_cf1
hst_table1_2,coco,SSGRL,62.5,70.5,73.2,74.5,76.3,76.5,77.1,77.9,78.4,74.1,73.9,68.1
hst_table1_2,coco,GCN-ML,63.8,70.9,72.8,74.0,76.7,77.1,77.3,78.3,78.6,74.4,73.1,68.4
hst_table1_2,coco,KGGR,66.6,71.4,73.8,76.7,77.5,77.9,78.4,78.7,79.1,75.6,73.7,69.7
hst_table1_2,coco,P-GCN,67.5,71.6,73.8,75.5,77.4,78.4,79.5,80.7,81.5,76.2,-,-
hst_table1_2,coco,ASL,69.7,74.0,75.1,76.8,77.5,78.1,78.7,79.1,79.7,76.5,46.7,47.9
hst_table1_2,coco,CL,26.7,31.8,51.5,65.4,70.0,71.9,74.0,77.4,78.0,60.7,61.9,48.3
hst_table1_2,coco,Partial BCE,61.6,70.5,74.1,76.3,77.2,77.7,78.2,78.4,78.5,74.7,74.0,68.8
hst_table1_2,coco,SST,68.1,73.5,75.9,77.3,78.1,78.9,79.2,79.6,79.9,76.7,75.8,71.2
hst_table1_2,coco,HST,70.6,75.8,77.3,78.3,79.0,79.4,79.9,80.2,80.4,77.9,76.7,72.6
hst_table1_2,vg,SSGRL,34.6,37.3,39.2,40.1,40.4,41.0,41.3,41.6,42.1,39.7,37.8,26.1
hst_table1_2,vg,GCN-ML,32.0,37.8,38.8,39.1,39.6,40.0,41.9,42.3,42.5,39.3,38.7,25.6
hst_table1_2,vg,KGGR,36.0,40.0,41.2,41.5,42.0,42.5,43.3,43.6,43.8,41.5,41.2,33.6
hst_table1_2,vg,P-GCN,-,-,-,-,-,-,-,-,-,-,-,-
hst_table1_2,vg,ASL,38.4,39.5,40.6,40.6,41.1,41.4,41.4,41.6,41.6,40.7,24.9,23.3
hst_table1_2,vg,CL,12.1,19.1,25.1,26.7,30.0,31.7,35.3,36.8,38.5,28.4,23.6,10.9
hst_table1_2,vg,Partial BCE,27.4,38.1,40.2,40.9,41.5,42.1,42.4,42.7,42.7,39.8,36.1,25.7
hst_table1_2,vg,SST,38.8,39.4,41.1,41.8,42.7,42.9,43.0,43.2,43.5,41.8,39.9,30.8
hst_table1_2,vg,HST,40.6,41.6,43.3,44.6,45.2,45.8,46.8,47.2,47.8,44.8,46.3,37.9
hst_table1_2,voc,SSGRL,77.7,87.6,89.9,90.7,91.4,91.8,92.0,92.2,92.2,89.5,87.7,84.5
hst_table1_2,voc,GCN-ML,74.5,87.4,89.7,90.7,91.0,91.3,91.5,91.8,92.0,88.9,87.3,84.6
hst_table1_2,voc,KGGR,81.3,88.1,89.9,90.4,91.2,91.3,91.5,91.6,91.8,89.7,86.5,84.7
hst_table1_2,voc,P-GCN,82.5,85.4,88.2,89.8,90.0,90.9,91.6,92.5,93.1,89.3,-,-
hst_table1_2,voc,ASL,82.9,88.6,90.0,91.2,91.7,92.2,92.4,92.5,92.6,90.5,41.0,40.9
hst_table1_2,voc,CL,44.7,76.8,88.6,90.2,90.7,91.1,91.6,91.7,91.9,84.1,83.8,75.4
hst_table1_2,voc,Partial BCE,80.7,88.4,89.9,90.7,91.2,91.8,92.3,92.4,92.5,90.0,87.9,84.8
hst_table1_2,voc,SST,81.5,89.0,90.3,91.0,91.6,92.0,92.5,92.6,92.7,90.4,88.2,85.6
hst_table1_2,voc,HST,84.3,89.1,90.5,91.6,92.1,92.4,92.5,92.8,92.8,90.9,88.4,86.1
dsrb_table1,coco,DSRB,72.5,76.0,77.6,78.7,79.6,79.8,80.0,80.5,80.8,78.4,76.8,72.7
dsrb_table1,vg,DSRB,41.4,44.0,44.8,45.5,46.6,47.5,47.8,48.0,48.2,46.0,45.1,37.7
dsrb_table1,voc,DSRB,85.7,89.8,91.8,92.0,92.3,92.7,92.9,93.1,93.2,91.5,88.3,86.0
"""


class PaperRow(NamedTuple):
    """One published row: mAP per proportion (None where not reported) and the averages."""

    table: str
    dataset: str
    method: str
    map_by_proportion: dict[float, float | None]
    avg_map: float | None
    avg_of1: float | None
    avg_cf1: float | None


def _value(text: str) -> float | None:
    return None if text == "-" else float(text)


def _row(r: dict) -> PaperRow:
    return PaperRow(
        table=r["table"],
        dataset=r["dataset"],
        method=r["method"],
        map_by_proportion={p: _value(r[f"{round(p * 100)}"]) for p in PROPORTIONS},
        avg_map=_value(r["avg_map"]),
        avg_of1=_value(r["avg_of1"]),
        avg_cf1=_value(r["avg_cf1"]),
    )


def rows(dataset: str | None = None) -> list[PaperRow]:
    """The stored rows (of `dataset`: 'coco', 'vg' or 'voc'), one per (dataset, method)."""
    if dataset is not None and dataset not in DATASETS:
        raise ValueError(f"paper tables exist for {DATASETS}, not {dataset!r}.")
    every = [_row(r) for r in csv.DictReader(io.StringIO(_CSV))]
    return [r for r in every if dataset is None or r.dataset == dataset]
