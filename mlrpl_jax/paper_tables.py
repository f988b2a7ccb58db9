"""The published rows of the papers' main tables, stored once as data (mAP %, average OF1/CF1 %).

Tables (`TABLES` describes each: paper, table number, caption, datasets, columns, metric):

* ``hst_table1_2``: HST paper (``shared/papers/000_*``) Table 1 (mAP at 10%..90% known labels and
  their average) with Table 2 (average OF1 and CF1), MS-COCO, VG-200 and VOC 2007: SSGRL, GCN-ML,
  KGGR, P-GCN, ASL, CL, Partial BCE, SST, HST;
* ``dsrb_table1``: DSRB paper (``shared/papers/001_*``, first version) Table 1: the DSRB rows. Its
  baseline rows (SSGRL .. Partial BCE) repeat the HST paper's exactly (all 21 rows compared when
  they were extracted), so they are stored once, under ``hst_table1_2``. 001 holds no row named
  SARB (the conference version is only cited); its ablation Table 2 has "Ours w/ RV-Mixup", which
  it describes as the preliminary version's blending, not stored here;
* ``trm_ml_table1``: TRM-ML paper (``shared/papers/003_*``) Table 1, mAP at 10%..90% known labels
  and their average (no OF1/CF1) on MS-COCO, VOC 2007 and VG-200: SARB, DualCoOp, DualCoOp*
  (reproduced by the TRM-ML authors), TaI-DPT+DualCoOp, SCPNet, HSPNet, TaI-Adapter+DualCoOp,
  TRM-ML, TaI-DPT+TRM-ML. Its 8 other rows (CL, Partial BCE, SST on COCO; Partial BCE, SST on VOC;
  SSGRL, GCN-ML, SST on VG) repeat the HST paper's exactly and are stored there (TRM-ML spells them
  "Curriculum labeling", "Patial-BCE", "ML-GCN": `ALIASES`). Its SARB row on VG equals DSRB's VG
  row digit for digit (its COCO and VOC SARB rows equal 001's Table 2 "Ours w/ RV-Mixup");
* ``imbalance_table3`` .. ``imbalance_table6``: the imbalance paper (``shared/papers/002_*``)
  Tables III-VI, mAP on COCO, NUS-WIDE and CUB in the FAL (III), PAL_0.3/0.6/0.9 (IV),
  PPL_0.3/0.6/0.9 (V) and SPL (VI) settings; "Ours" is the paper's (unnamed) method. Tables IV-VI
  repeat Table III's full-label BCE and BCE-LS rows (identical), stored once under Table III. Its
  Open Images results are a bar chart only (Fig. 2, no numbers in the text) and Table VII is an
  ablation: neither is stored;
* ``trm_ml_table2``: TRM-ML Table 2, single positive label, mAP on COCO, VOC 2012, NUS-WIDE, CUB
  and their average, under the LargeLoss and the SPLC setups (ResNet-50 backbones).

Rows of the 10%..90% layout (the first three tables) live in ``_CSV`` and are read by `rows`
(`PaperRow`); the other tables keep their paper's layout, one CSV text each in ``_WIDE_CSV`` with
its own header, and every table reads as dicts through `table`. "-" in the papers (not reported)
is None here. The rows were extracted from the papers' text files (numbers per row counted against
each header, printed averages compared with the means of the values they average, repeated rows
compared between tables and papers) and are checked against values read off the papers by hand in
``tests/test_paper_tables.py``, which also lists the papers' known inconsistencies.
`report --compare-paper coco` prints the 10%..90% rows beside a run's.
"""

import csv
import io
from typing import NamedTuple

PROPORTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DATASETS = ("coco", "vg", "voc")  # the datasets of the 10%..90% tables (`rows`); voc = VOC 2007
# Paper method name -> our method (the closest one; "Partial BCE" is the linear-head baseline).
# Names left out on purpose: "BCE" (paper 002's full-label reference row), "LargeLoss" (which of
# LL-R/LL-Ct/LL-Cp is not said), the prompt-tuning combinations (TaI-DPT+..., SCPNet, HSPNet).
METHOD_KEYS = {
    "SSGRL": "ssgrl", "SST": "sst", "HST": "hst", "DSRB": "dsrb", "Partial BCE": "plain",
    "SARB": "sarb", "CL": "cl", "ASL": "asl", "Focal": "focal", "BCE-LS": "bce_ls",
    "AN": "an", "WAN": "wan", "ROLE": "role", "Hill": "hill", "SPLC": "splc",
    "LSAN": "an_ls",  # TRM-ML Table 2, cited to Cole et al. 2021, whose label-smoothed AN is AN-LS
    "DualCoOp": "dualcoop", "DualCoOp*": "dualcoop",  # * reproduced by the TRM-ML authors
    "TRM-ML": "trm_ml", "TRM-ML*": "trm_ml",  # * in TRM-ML Table 2: frozen visual encoder
    "Ours": "imbalance",  # printed only by paper 002's tables (the others name their method)
}  # fmt: skip
# A paper's spelling of a method -> the name it is stored under (TRM-ML Table 1).
ALIASES = {"Curriculum labeling": "CL", "Patial-BCE": "Partial BCE", "ML-GCN": "GCN-ML"}


class Table(NamedTuple):
    """How one stored table reads. `keys`: the columns naming a row; `columns`: its value columns
    (numbers, None where the paper prints "-"); `repeats`: rows the paper prints in this table that
    are stored under another table, as (that table, that table's key values)."""

    paper: str
    number: str
    caption: str
    datasets: tuple[str, ...]
    keys: tuple[str, ...]
    columns: tuple[str, ...]
    metric: str
    repeats: tuple[tuple[str, tuple[str, ...]], ...] = ()


_MAP_COLUMNS = tuple(f"{round(p * 100)}" for p in PROPORTIONS) + ("avg_map",)
_HST_BASELINES = ("SSGRL", "GCN-ML", "KGGR", "P-GCN", "ASL", "CL", "Partial BCE")
_FAL_REFERENCE = (("imbalance_table3", ("BCE",)), ("imbalance_table3", ("BCE-LS",)))


def _per_setting(setting: str) -> tuple[str, ...]:
    return tuple(
        f"{d}_{setting}_{q}" for d in ("coco", "nus", "cub") for q in ("0.3", "0.6", "0.9")
    )


TABLES: dict[str, Table] = {
    "hst_table1_2": Table(
        paper="000 HST", number="Tables 1 and 2",
        caption="MLR-PL, ResNet-101: mAP at 10%..90% known labels and their average (Table 1); "
        "OF1 and CF1 averaged over the nine proportions (Table 2)",
        datasets=DATASETS, keys=("dataset", "method"),
        columns=_MAP_COLUMNS + ("avg_of1", "avg_cf1"), metric="mAP, OF1, CF1 (%)",
    ),
    "dsrb_table1": Table(
        paper="001 DSRB (first version)", number="Table 1 (Tables I-II of the second version)",
        caption="MLR-PL, ResNet-101: mAP at 10%..90% known labels, average mAP, OF1 and CF1",
        datasets=DATASETS, keys=("dataset", "method"),
        columns=_MAP_COLUMNS + ("avg_of1", "avg_cf1"), metric="mAP, OF1, CF1 (%)",
        repeats=tuple(("hst_table1_2", (d, m)) for d in DATASETS for m in _HST_BASELINES),
    ),
    "trm_ml_table1": Table(
        paper="003 TRM-ML", number="Table 1",
        caption="MLR-PL (positive and negative labels kept at 10%..90%), ResNet-101: ImageNet "
        "weights for CL, Partial BCE, SSGRL, GCN-ML, SST, SARB; CLIP weights from DualCoOp on",
        datasets=DATASETS, keys=("dataset", "method"), columns=_MAP_COLUMNS, metric="mAP (%)",
        repeats=tuple(("hst_table1_2", k) for k in (
            ("coco", "CL"), ("coco", "Partial BCE"), ("coco", "SST"), ("voc", "Partial BCE"),
            ("voc", "SST"), ("vg", "SSGRL"), ("vg", "GCN-ML"), ("vg", "SST"))),
    ),
    "imbalance_table3": Table(
        paper="002 imbalance", number="Table III",
        caption="FAL (all labels known), ResNet-50", datasets=("coco", "nus", "cub"),
        keys=("method",), columns=("coco", "nus", "cub"), metric="mAP (%)",
    ),
    "imbalance_table4": Table(
        paper="002 imbalance", number="Table IV",
        caption="PAL_q: a proportion q of all labels (positive or negative) kept, ResNet-50; "
        "the full-label BCE and BCE-LS rows of Table III printed above",
        datasets=("coco", "nus", "cub"), keys=("method",), columns=_per_setting("pal"),
        metric="mAP (%)", repeats=_FAL_REFERENCE,
    ),
    "imbalance_table5": Table(
        paper="002 imbalance", number="Table V",
        caption="PPL_q: a proportion q of the positive labels kept, no negatives, ResNet-50; "
        "the full-label BCE and BCE-LS rows of Table III printed above",
        datasets=("coco", "nus", "cub"), keys=("method",), columns=_per_setting("ppl"),
        metric="mAP (%)", repeats=_FAL_REFERENCE,
    ),
    "imbalance_table6": Table(
        paper="002 imbalance", number="Table VI",
        caption="SPL: one positive label per image, ResNet-50; the full-label BCE and BCE-LS "
        "rows of Table III printed above",
        datasets=("coco", "nus", "cub"), keys=("method",), columns=("coco", "nus", "cub"),
        metric="mAP (%)", repeats=_FAL_REFERENCE,
    ),
    "trm_ml_table2": Table(
        paper="003 TRM-ML", number="Table 2",
        caption="single positive label, ResNet-50 (ImageNet: LSAN..SPLC; CLIP: HSPNet, SCPNet, "
        "TRM-ML* with a frozen visual encoder), LargeLoss and SPLC setups; avg over the four "
        "datasets; voc2012 is VOC 2012",
        datasets=("coco", "voc2012", "nus", "cub"), keys=("method",),
        columns=tuple(f"{s}_{d}" for s in ("largeloss", "splc")
                      for d in ("coco", "voc2012", "nus", "cub", "avg")),
        metric="mAP (%)",
    ),
}  # fmt: skip

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
trm_ml_table1,coco,SARB,71.2,75.0,77.1,78.3,78.9,79.6,79.8,80.5,80.5,77.9,-,-
trm_ml_table1,coco,DualCoOp,78.7,80.9,81.7,82.0,82.5,82.7,82.8,83.0,83.1,81.9,-,-
trm_ml_table1,coco,DualCoOp*,81.5,82.7,83.3,83.8,84.0,84.2,84.4,84.4,84.5,83.6,-,-
trm_ml_table1,coco,TaI-DPT+DualCoOp,81.5,82.6,83.3,83.7,83.9,84.0,84.2,84.4,84.5,83.6,-,-
trm_ml_table1,coco,SCPNet,80.3,82.2,82.8,83.4,83.8,83.9,84.0,84.1,84.2,83.2,-,-
trm_ml_table1,coco,HSPNet,78.3,81.4,82.2,83.6,84.3,84.8,85.0,85.4,85.6,83.4,-,-
trm_ml_table1,coco,TaI-Adapter+DualCoOp,82.1,82.9,83.5,84.0,84.4,84.7,84.9,85.1,85.1,84.1,-,-
trm_ml_table1,coco,TRM-ML,83.3,84.5,85.0,85.3,85.6,85.8,86.1,86.4,86.5,85.4,-,-
trm_ml_table1,voc,SARB,83.5,88.6,90.7,91.4,91.9,92.2,92.6,92.8,92.9,90.7,-,-
trm_ml_table1,voc,DualCoOp,90.3,92.2,92.8,93.3,93.6,93.9,94.0,94.1,94.2,93.2,-,-
trm_ml_table1,voc,DualCoOp*,91.8,93.3,93.7,94.2,94.2,94.7,94.8,94.8,94.9,94.0,-,-
trm_ml_table1,voc,TaI-DPT+DualCoOp,93.3,94.6,94.8,94.9,95.1,95.0,95.1,95.3,95.5,94.8,-,-
trm_ml_table1,voc,SCPNet,91.1,92.8,93.5,93.6,93.8,94.0,94.1,94.2,94.3,93.5,-,-
trm_ml_table1,voc,TaI-Adapter+DualCoOp,93.8,94.7,95.1,95.2,95.3,95.3,95.4,95.6,95.7,95.1,-,-
trm_ml_table1,voc,TRM-ML,93.9,94.6,94.9,95.3,95.4,95.6,95.6,95.6,95.7,95.2,-,-
trm_ml_table1,voc,TaI-DPT+TRM-ML,94.5,95.0,95.3,95.4,95.6,95.7,95.7,95.8,95.9,95.4,-,-
trm_ml_table1,vg,SARB,41.4,44.0,44.8,45.5,46.6,47.5,47.8,48.0,48.2,46.0,-,-
trm_ml_table1,vg,SCPNet,43.8,46.4,48.2,49.6,50.4,50.9,51.3,51.6,52.0,49.4,-,-
trm_ml_table1,vg,TRM-ML,50.5,51.9,52.0,53.0,53.3,53.5,53.6,53.7,53.9,52.8,-,-
"""


_WIDE_CSV = {
    "imbalance_table3": """\
method,coco,nus,cub
BCE,75.8,52.6,32.1
BCE-LS,76.8,53.5,32.6
Focal,79.6,55.3,34.8
ASL,80.1,55.9,34.7
Ours,81.1,56.2,35.9
""",
    "imbalance_table4": """\
method,coco_pal_0.3,coco_pal_0.6,coco_pal_0.9,nus_pal_0.3,nus_pal_0.6,nus_pal_0.9,cub_pal_0.3,cub_pal_0.6,cub_pal_0.9
AN,50.1,65.6,72.7,29.4,40.5,50.1,13.2,19.2,27.4
WAN,54.7,69.9,77.0,31.2,44.8,52.6,18.1,25.9,30.3
ROLE,53.6,68.1,77.2,30.9,45.1,52.0,17.6,25.4,31.9
Focal,62.1,71.6,78.8,37.6,45.9,55.0,19.0,26.7,34.2
ASL,60.9,72.8,79.9,35.9,47.0,54.3,20.1,29.6,34.0
Ours,65.6,76.3,81.0,42.3,49.7,56.0,24.7,32.2,36.0
""",
    "imbalance_table5": """\
method,coco_ppl_0.3,coco_ppl_0.6,coco_ppl_0.9,nus_ppl_0.3,nus_ppl_0.6,nus_ppl_0.9,cub_ppl_0.3,cub_ppl_0.6,cub_ppl_0.9
AN,63.2,67.0,69.8,44.2,48.3,50.6,18.6,26.3,31.7
WAN,68.1,70.8,71.6,46.3,48.5,51.0,21.6,28.9,32.9
ROLE,71.8,75.4,77.4,47.3,50.4,52.5,21.5,29.6,33.1
Focal,72.3,75.0,76.2,48.1,51.2,52.1,22.7,30.2,34.6
ASL,71.9,75.4,76.8,47.9,52.0,52.9,22.4,29.8,34.5
Ours,73.1,80.1,83.6,50.2,54.7,59.9,26.4,33.8,37.9
""",
    "imbalance_table6": """\
method,coco,nus,cub
AN,64.1,42.0,19.1
WAN,64.8,46.3,20.3
ROLE,66.3,43.1,15.0
Ours,72.0,48.3,24.7
""",
    "trm_ml_table2": """\
method,largeloss_coco,largeloss_voc2012,largeloss_nus,largeloss_cub,largeloss_avg,splc_coco,splc_voc2012,splc_nus,splc_cub,splc_avg
LSAN,69.2,86.7,50.5,17.9,56.1,70.5,87.2,52.5,18.9,57.3
ROLE,69.0,88.2,51.0,16.8,56.3,70.9,89.0,50.6,20.4,57.7
LargeLoss,71.6,89.3,49.6,21.8,58.1,-,-,-,-,-
Hill,-,-,-,-,-,73.2,87.8,55.0,18.8,58.7
SPLC,72.0,87.7,49.8,18.0,56.9,73.2,88.1,55.2,20.0,59.1
HSPNet,74.8,89.4,56.3,23.4,61.0,75.7,90.4,61.8,24.3,63.1
SCPNet,75.4,90.1,55.7,25.4,61.7,76.4,91.2,62.0,25.7,63.8
TRM-ML*,78.6,91.8,57.3,26.9,63.7,79.2,92.2,63.4,27.6,65.6
""",
}  # fmt: skip


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
    """The stored rows of the 10%..90% tables (of `dataset`: 'coco', 'vg' or 'voc'), one per
    (dataset, method); avg_of1/avg_cf1 are None for tables that print no OF1/CF1."""
    if dataset is not None and dataset not in DATASETS:
        raise ValueError(f"paper tables exist for {DATASETS}, not {dataset!r}.")
    every = [_row(r) for r in csv.DictReader(io.StringIO(_CSV))]
    return [r for r in every if dataset is None or r.dataset == dataset]


def _stored(name: str) -> list[dict]:
    info = TABLES[name]
    if name in _WIDE_CSV:
        reader = csv.DictReader(io.StringIO(_WIDE_CSV[name]))
        if tuple(reader.fieldnames or ()) != info.keys + info.columns:
            raise ValueError(f"{name}: CSV header {reader.fieldnames} != TABLES' columns.")
        records = list(reader)
    else:
        records = [r for r in csv.DictReader(io.StringIO(_CSV)) if r["table"] == name]
    return [
        {"table": name, **{k: r[k] for k in info.keys}, **{c: _value(r[c]) for c in info.columns}}
        for r in records
    ]


def table(name: str, repeats: bool = False) -> list[dict]:
    """The rows stored under table `name` (see `TABLES`), in the paper's order, each a dict:
    "table", the key columns (strings) and the value columns (float, None for "-"). With
    `repeats`, the rows the paper also prints but that are stored under another table follow,
    as stored there (their "table" and columns are that table's)."""
    if name not in TABLES:
        raise ValueError(f"Unknown paper table {name!r}; known: {sorted(TABLES)}.")
    out = _stored(name)
    if repeats:
        for where, key in TABLES[name].repeats:
            found = [r for r in _stored(where) if tuple(r[k] for k in TABLES[where].keys) == key]
            if len(found) != 1:
                raise LookupError(f"{name} repeats {key} of {where}: {len(found)} rows found.")
            out.extend(found)
    return out
