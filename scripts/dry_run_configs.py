"""Dry run of every paper config at its real shapes, on fake data in each dataset's real format.

  python scripts/dry_run_configs.py               # every paper config (resumes); about a day
  python scripts/dry_run_configs.py --batch 8     # batch at most 8: about 12 hours
  python scripts/dry_run_configs.py --only configs/sst_coco.py 'baselines_coco.py:*'
  python scripts/dry_run_configs.py --list        # the 163 paper configs it knows

(Durations on this 2-core CPU, extrapolated from validation runs of 3-10 minutes per config at
batch 8 and 7 minutes for SSGRL at batch 32; the CLIP configs' batch of 128 and the LargeLoss /
SPLC setups' ResNet-50 trained end to end dominate.)

The paper configs are every `configs/*.py` on a real dataset (not tiny, quickstart, the synthetic
and pretraining ones), each variant its docstring documents run as `configs/FILE.py:VARIANT`
(`VARIANTS`). For each, the script

1. builds the config's dataset once (cached in `--workdir`/data): fake raw files in the dataset's
   real layout (the real class names and counts, except VG-200's and Open Images', whose names are
   placeholders; JPEGs of about the dataset's typical size, `FAKE`; every image with a positive
   label), prepared by the user's command `scripts/prepare_data.py NAME --manual_dir RAW
   --data_dir DIR`. For the TFDS catalogue datasets (coco/2014, voc/2007, voc/2012) that command
   runs with TFDS's download patched to return the fake raw tree, so TFDS's own builders write
   real array_record files (this needs TensorFlow, as preparing them always does);
2. runs `mlrpl_jax.plan` on the config (parameters, GFLOPs per image, memory per device at the
   paper's batch, the largest batch in `--memory`);
3. trains through the real command line, `python -m mlrpl_jax.train --config CFG --workdir W
   --config.KEY=VALUE ...`, from random initialisation (no weight file is read) for two epochs
   of `--steps` steps, at the config's image size and the paper's batch where it fits in
   `--memory` (plan's train-step memory + `HOST_OVERHEAD`), else the largest batch that fits
   (`--batch N` caps it at N; the evaluation batch is the same). Epoch 1 ends with an evaluation
   and a checkpoint; then SIGTERM (a preemption notice: a checkpoint at the next step, exit
   status 75), and the same command again, which resumes there and ends epoch 2 (evaluation,
   checkpoint, results.json). Epoch-gated phases (pseudo labels, blending, prototypes, CL
   rounds, TRM-ML's stage 2, Cole et al.'s linear init) start at epoch 1 instead of the
   paper's epoch (`PHASE_KEYS`), so that the resume runs them; `--paper_phases` keeps the
   paper's epochs;
4. writes `--results`/<config>.json (docs/results/paper_configs/, committed) and regenerates
   `--doc` from every result so far.

A config already in `--results` is skipped unless `--force` (or `--retry_failed` for one
with a failed stage), so an interrupted run continues where it stopped. The train and resume
commands share a persistent XLA compilation cache (`--workdir`/jax_cache). Each config's logs are
in `--workdir`/logs; a passed config's checkpoints are deleted afterwards (1-3 GB each; its
metrics, results.json and logs stay; `--keep_runs` keeps them). Seconds per step are the train
steps' own (from metrics.jsonl, input pipeline included: `--workers` grain processes, default 0),
without the first step of each run (compile).
"""

import argparse
import fnmatch
import glob
import importlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from typing import NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(1, os.path.join(ROOT, "scripts"))

from mlrpl_jax import cli, errors

DOC = os.path.join("docs", "results", "paper_configs.md")
RESULTS = os.path.join("docs", "results", "paper_configs")
EPOCHS = 2
PREEMPTED = 75  # mlrpl_jax.preemption.EXIT_PREEMPTED

# configs/*.py stems that are not paper configs (beside *_synthetic and pretrain_*).
NOT_PAPER = ("__init__", "base", "recipes", "tiny", "quickstart", "synthetic_transfer",
             "clip_synthetic")  # fmt: skip
BASELINES = ("partial_bce", "asl", "focal", "bce_ls", "an", "an_ls", "wan", "epr", "role", "splc",
             "hill", "ll_r", "ll_ct", "ll_cp", "cl")  # fmt: skip
PAPER002 = ("imbalance", "an", "wan", "role", "epr", "focal", "asl", "bce_ls")
# The variants each config's docstring documents (the argument after ':'), first match wins.
VARIANTS = {
    "baselines_*": BASELINES,
    "dualcoop_*": ("official", "author"),
    "trm_ml_*_spl": ("largeloss", "splc"),
    "imbalance_coco": PAPER002,
    "imbalance_nus": PAPER002,
    "imbalance_cub": PAPER002,
    "imbalance_voc": ("imbalance", "an", "wan", "focal", "asl", "bce_ls"),
    "imbalance_vg": ("imbalance", "an", "wan", "focal", "asl", "bce_ls"),
    "imbalance_openimages": ("imbalance", "plain", "bce_ls", "focal", "asl"),
    "largeloss_*": ("ll_r", "ll_ct", "ll_cp", "an", "an_ls", "wan", "epr", "role"),
    "splc_*": ("splc", "hill", "asl", "an"),
}
# Method keys naming the epoch a phase starts at (or its period): set to 1 unless --paper_phases.
PHASE_KEYS = ("generate_label_epoch", "blend_epoch", "prototype_every_epochs", "first_round",
              "round_every", "stage2_epoch", "linear_init_epochs")  # fmt: skip
# What a train process holds beyond plan's compiled train step (the eval step, host data, XLA,
# Python): `--memory` less this is the device memory plan's largest batch is asked for. Measured
# here as peak RSS minus plan's train-step memory at batch 8: 2.6-2.8 GB (SST, DualCoOp), 4.5 GB
# (TRM-ML, 312 classes), 6.9 GB with HST's K-means refresh pass (which plan does not compile).
HOST_OVERHEAD = 6 * 2**30
# EPR / ROLE where no expected number of positives is published (the run refuses without one).
EXPECTED_POSITIVES_PLACEHOLDER = 3.0

FAMILIES = {"ssgrl": "HCP", "sst": "HCP", "hst": "HCP", "hst_fb": "HCP", "sarb": "HCP",
            "dsrb": "HCP", "imbalance": "paper 002", "dualcoop": "CLIP", "trm_ml": "CLIP"}  # fmt: skip


class Fake(NamedTuple):
    """How a dataset is faked: folder, format, typical image size (w, h), classes, positives per
    image (min, max), and the prepare command's name."""

    folder: str
    kind: str
    size: tuple[int, int]
    classes: int
    positives: tuple[int, int]


FAKE = {
    "coco/2014": Fake("coco2014", "TFDS catalogue (raw tree, download patched)", (640, 480), 80,
                      (1, 4)),
    "voc/2007": Fake("voc2007", "TFDS catalogue (raw tree, download patched)", (500, 375), 20,
                     (1, 2)),
    "voc/2012": Fake("voc2012", "TFDS catalogue (raw tree, download patched)", (500, 375), 20,
                     (1, 2)),
    "vg200": Fake("vg200", "manual directory (our builder)", (800, 600), 200, (1, 6)),
    "cub": Fake("cub", "manual directory (our builder)", (500, 375), 312, (0, 0)),
    "nus_wide": Fake("nus_wide", "manual directory (our builder)", (500, 375), 81, (1, 3)),
    "open_images/boxable": Fake("open_images_boxable", "manual directory (streaming writer)",
                                (1024, 768), 601, (1, 3)),
}  # fmt: skip

# NUS-WIDE's Concepts81.txt, in label order.
NUS_CONCEPTS = (
    "airport", "animal", "beach", "bear", "birds", "boats", "book", "bridge", "buildings", "cars",
    "castle", "cat", "cityscape", "clouds", "computer", "coral", "cow", "dancing", "dog",
    "earthquake", "elk", "fire", "fish", "flags", "flowers", "food", "fox", "frost", "garden",
    "glacier", "grass", "harbor", "horses", "house", "lake", "leaf", "map", "military", "moon",
    "mountain", "nighttime", "ocean", "person", "plane", "plants", "police", "protest", "railroad",
    "rainbow", "reflection", "road", "rocks", "running", "sand", "sign", "sky", "snow", "soccer",
    "sports", "statue", "street", "sun", "sunset", "surf", "swimmers", "tattoo", "temple", "tiger",
    "tower", "town", "toy", "train", "tree", "valley", "vehicle", "water", "waterfall", "wedding",
    "whales", "window", "zebra",
)  # fmt: skip
_COLOURS = "blue brown iridescent purple rufous grey yellow olive green pink orange black white red"
_COLOURS += " buff"
_PATTERNS = "solid spotted striped multi-colored"
# CUB-200-2011's attributes.txt: (group, values) in attribute-id order (312 in all).
CUB_GROUPS = (
    ("bill_shape", ("curved_(up_or_down) dagger hooked needle hooked_seabird spatulate "
                    "all-purpose cone specialized")),
    ("wing_color", _COLOURS), ("upperparts_color", _COLOURS), ("underparts_color", _COLOURS),
    ("breast_pattern", _PATTERNS), ("back_color", _COLOURS),
    ("tail_shape", ("forked_tail rounded_tail notched_tail fan-shaped_tail pointed_tail "
                    "squared_tail")),
    ("upper_tail_color", _COLOURS),
    ("head_pattern", ("spotted malar crested masked unique_pattern eyebrow eyering plain "
                      "eyeline striped capped")),
    ("breast_color", _COLOURS), ("throat_color", _COLOURS),
    ("eye_color", _COLOURS.replace("iridescent ", "")),
    ("bill_length", "about_the_same_as_head longer_than_head shorter_than_head"),
    ("forehead_color", _COLOURS), ("under_tail_color", _COLOURS), ("nape_color", _COLOURS),
    ("belly_color", _COLOURS),
    ("wing_shape", "rounded-wings pointed-wings broad-wings tapered-wings long-wings"),
    ("size", ("large_(16_-_32_in) small_(5_-_9_in) very_large_(32_-_72_in) medium_(9_-_16_in) "
              "very_small_(3_-_5_in)")),
    ("shape", ("upright-perching_water-like chicken-like-marsh long-legged-like duck-like "
               "owl-like gull-like hummingbird-like pigeon-like tree-clinging-like hawk-like "
               "sandpiper-like upland-ground-like swallow-like perching-like")),
    ("back_pattern", _PATTERNS), ("tail_pattern", _PATTERNS), ("belly_pattern", _PATTERNS),
    ("primary_color", _COLOURS), ("leg_color", _COLOURS), ("bill_color", _COLOURS),
    ("crown_color", _COLOURS), ("wing_pattern", _PATTERNS),
)  # fmt: skip
CUB_ATTRIBUTES = tuple(f"has_{g}::{v}" for g, values in CUB_GROUPS for v in values.split())


# --- the paper configs ----------------------------------------------------------------------------


def paper_configs() -> list[str]:
    """Every paper config as `configs/FILE.py` or `configs/FILE.py:VARIANT`, in file order."""
    names = []
    for path in sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))):
        stem = os.path.basename(path)[:-3]
        if stem in NOT_PAPER or stem.endswith("_synthetic") or stem.startswith("pretrain_"):
            continue
        variants = next((v for pattern, v in VARIANTS.items() if fnmatch.fnmatch(stem, pattern)),
                        None)  # fmt: skip
        names += (
            [f"configs/{stem}.py:{v}" for v in variants] if variants else [f"configs/{stem}.py"]
        )
    return names


def normalize(name: str) -> str:
    """'sst_coco', 'sst_coco.py', 'configs/sst_coco.py' (':VARIANT' kept) -> 'configs/sst_coco.py'."""
    path, _, variant = name.partition(":")
    stem = os.path.basename(path)
    stem = stem.removesuffix(".py")
    return f"configs/{stem}.py" + (f":{variant}" if variant else "")


def select(only: list[str] | None) -> list[str]:
    """The paper configs named by `only` (names or fnmatch patterns; a file with variants named
    without one stands for all of them), in file order."""
    known = paper_configs()
    if not only:
        return known
    chosen = set()
    for pattern in only:
        matches = fnmatch.filter(known, normalize(pattern))
        if not matches and ":" not in pattern:  # a file with variants: all of them
            matches = fnmatch.filter(known, normalize(pattern) + ":*")
        if not matches:
            raise errors.ConfigError(
                f"--only {pattern}: no paper config of that name (`python "
                "scripts/dry_run_configs.py --list` lists them, e.g. configs/sst_coco.py, "
                "configs/baselines_coco.py:asl)."
            )
        chosen.update(matches)
    return [n for n in known if n in chosen]


def slug(name: str) -> str:
    """'configs/baselines_coco.py:asl' -> 'baselines_coco.asl'."""
    path, _, variant = name.partition(":")
    return os.path.basename(path)[:-3] + (f".{variant}" if variant else "")


def load_config(name: str):
    """The config `name` builds (its get_config, with the variant when there is one)."""
    path, _, variant = name.partition(":")
    module = importlib.import_module(f"configs.{os.path.basename(path)[:-3]}")
    return module.get_config(variant) if variant else module.get_config()


def describe(name: str, args) -> dict:
    """What the table needs from the config itself, and the overrides of the dry run."""
    from mlrpl_jax.data import pipeline

    config = load_config(name)
    data, mc = config.data, config.method_config
    if data.name not in FAKE:
        raise errors.ConfigError(f"{name}: dataset {data.name!r} has no fake data here.")
    config.data.size_factor = args.size_factor
    paper_batch = config.train.batch_size
    batch = min(paper_batch, args.batch) if args.batch > 0 else paper_batch
    method_overrides, notes = {}, []
    if not args.paper_phases:
        for key in PHASE_KEYS:
            if key in mc and mc[key] is not None and mc[key] > 1:
                method_overrides[key] = 1
        if method_overrides:
            notes.append("phases from epoch 1: " + ", ".join(
                f"{k} {mc[k]} -> 1" for k in method_overrides))  # fmt: skip
    if (
        "expected_positives" in mc
        and mc.expected_positives is None
        and config.method in ("epr", "role")
    ):
        method_overrides["expected_positives"] = EXPECTED_POSITIVES_PLACEHOLDER
        notes.append(f"expected_positives={EXPECTED_POSITIVES_PLACEHOLDER} (none published for "
                     f"{data.name}; the run refuses without one)")  # fmt: skip
    return {
        "name": name,
        "method": config.method,
        "family": FAMILIES.get(config.method, "loss baseline"),
        "dataset": data.name,
        "classes": FAKE[data.name].classes,
        "image_size": pipeline.image_size(config.data),
        "paper_batch": paper_batch,
        "paper_eval_batch": config.train.eval_batch_size,
        "batch_cap": batch,
        "val_fraction": 0.0 if data.val_split is not None else float(data.val_fraction),
        "clip": "clip_weights" in mc,
        "method_overrides": method_overrides,
        "notes": notes,
    }


# --- fake data in the real formats ---------------------------------------------------------------


def _size(fake: Fake, k: int) -> tuple[int, int]:
    """Every fourth image in portrait orientation."""
    w, h = fake.size
    return (h, w) if k % 4 == 3 else (w, h)


def _positives(rng, fake: Fake, classes: int) -> list[int]:
    lo, hi = fake.positives
    return sorted(rng.choice(classes, size=int(rng.integers(lo, hi + 1)), replace=False).tolist())


def write_voc(raw: str, year: str, sets: dict[str, int], fake: Fake, rng, jpeg) -> None:
    """VOCdevkit/VOC<year>: ImageSets/Main/<set>.txt, JPEGImages/, Annotations/ (TFDS's `voc`)."""
    from mlrpl_jax.data import sources

    voc = os.path.join(raw, "VOCdevkit", f"VOC{year}")
    for sub in ("ImageSets/Main", "JPEGImages", "Annotations"):
        os.makedirs(os.path.join(voc, sub), exist_ok=True)
    k = 0
    for set_name, n in sets.items():
        ids = []
        for _ in range(n):
            k += 1
            image_id = f"{k:06d}" if year == "2007" else f"{year}_{k:06d}"
            ids.append(image_id)
            w, h = _size(fake, k)
            jpeg(os.path.join(voc, "JPEGImages", f"{image_id}.jpg"), rng, (w, h))
            objects = [(c, 0) for c in _positives(rng, fake, 20)]
            if k % 3 == 0:
                objects.append((int(rng.integers(20)), 1))  # a difficult object
            xml = [f"<annotation><size><width>{w}</width><height>{h}</height></size>"]
            for c, difficult in objects:
                x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
                xml.append(
                    f"<object><name>{sources.VOC_CLASS_NAMES[c]}</name><pose>Unspecified</pose>"
                    f"<truncated>0</truncated><difficult>{difficult}</difficult><bndbox><xmin>"
                    f"{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x0 + w // 3}</xmax><ymax>"
                    f"{y0 + h // 3}</ymax></bndbox></object>"
                )
            xml.append("</annotation>")
            with open(os.path.join(voc, "Annotations", f"{image_id}.xml"), "w") as f:
                f.write("".join(xml))
        with open(os.path.join(voc, "ImageSets", "Main", f"{set_name}.txt"), "w") as f:
            f.writelines(f"{i}\n" for i in ids)


def write_coco(raw: str, sets: dict[str, int], fake: Fake, rng, jpeg) -> None:
    """annotations/instances_{train,val}2014.json, image_info_test{2014,2015}.json + image folders
    (TFDS's `coco/2014`); the 80 categories with their real ids and names."""
    from mlrpl_jax.data import sources

    categories = [{"id": i, "name": n, "supercategory": "thing"}
                  for i, n in zip(sources.COCO_CATEGORY_IDS, sources.COCO_CLASS_NAMES)]  # fmt: skip
    os.makedirs(os.path.join(raw, "annotations"), exist_ok=True)
    image_id = ann_id = 0
    for image_set, n in sets.items():
        os.makedirs(os.path.join(raw, image_set), exist_ok=True)
        infos, annotations = [], []
        for _ in range(n):
            image_id += 1
            w, h = _size(fake, image_id)
            name = f"COCO_{image_set}_{image_id:012d}.jpg"
            jpeg(os.path.join(raw, image_set, name), rng, (w, h))
            infos.append({"id": image_id, "file_name": name, "height": h, "width": w})
            for c in _positives(rng, fake, 80):
                ann_id += 1
                bw, bh = int(rng.integers(8, w // 2)), int(rng.integers(8, h // 2))
                annotations.append({
                    "id": ann_id, "image_id": image_id, "category_id": sources.COCO_CATEGORY_IDS[c],
                    "iscrowd": int(ann_id % 17 == 0), "bbox": [1, 1, bw, bh], "area": bw * bh,
                })  # fmt: skip
        if image_set.startswith("test"):
            filename, data = f"image_info_{image_set}.json", {}
        else:
            filename, data = f"instances_{image_set}.json", {"annotations": annotations}
        data.update(images=infos, categories=categories)
        with open(os.path.join(raw, "annotations", filename), "w") as f:
            json.dump(data, f)


def write_vg200(raw: str, sets: dict[str, int], fake: Fake, rng, jpeg) -> None:
    """VG_100K/, train_list_500.txt, test_list_500.txt, vg_category_200_labels_index.json (no names
    file: the authors distribute none, so the class names are the builder's placeholders)."""
    from mlrpl_jax.data.tfds_builders import vg200

    index, k = {}, 0
    for split, n in sets.items():
        names = []
        for _ in range(n):
            k += 1
            name = f"{2300000 + k}.jpg"
            jpeg(os.path.join(raw, "VG_100K", name), rng, _size(fake, k))
            index[name] = _positives(rng, fake, 200)
            names.append(name)
        with open(os.path.join(raw, vg200.SPLIT_LISTS[split]), "w") as f:
            f.writelines(f"{name}\n" for name in names)
    with open(os.path.join(raw, vg200.LABELS_JSON), "w") as f:
        json.dump(index, f)


def write_cub(raw: str, sets: dict[str, int], fake: Fake, rng, jpeg) -> None:
    """CUB_200_2011.tgz extracted (scripts/benchmark_data.py's fake: half train, half test,
    ~10 % of the 312 attributes present) with the real attributes.txt."""
    import benchmark_data

    benchmark_data.fake_cub(raw, sets["train"] + sets["test"], fake.size, rng)
    with open(os.path.join(raw, "attributes.txt"), "w") as f:
        f.writelines(f"{a} {name}\n" for a, name in enumerate(CUB_ATTRIBUTES, 1))


def write_nus(raw: str, sets: dict[str, int], fake: Fake, rng, jpeg) -> None:
    """Concepts81.txt, ImageList/, Groundtruth/TrainTestLabels/, Flickr/ (the official layout)."""
    os.makedirs(os.path.join(raw, "ImageList"), exist_ok=True)
    os.makedirs(os.path.join(raw, "Groundtruth", "TrainTestLabels"), exist_ok=True)
    with open(os.path.join(raw, "Concepts81.txt"), "w") as f:
        f.writelines(f"{c}\n" for c in NUS_CONCEPTS)
    k = 0
    for split, n in sets.items():
        tag = {"train": "Train", "test": "Test"}[split]
        paths, labels = [], []
        for _ in range(n):
            k += 1
            path = f"{NUS_CONCEPTS[k % 81]}\\{k:04d}_{2124494179 + k}.jpg"
            jpeg(os.path.join(raw, "Flickr", *path.split("\\")), rng, _size(fake, k))
            paths.append(path)
            labels.append(_positives(rng, fake, 81))
        with open(os.path.join(raw, "ImageList", f"{tag}Imagelist.txt"), "w") as f:
            f.writelines(f"{p}\n" for p in paths)
        for c, concept in enumerate(NUS_CONCEPTS):
            name = os.path.join(
                raw, "Groundtruth", "TrainTestLabels", f"Labels_{concept}_{tag}.txt"
            )
            with open(name, "w") as f:
                f.writelines(f"{int(c in y)}\n" for y in labels)


def write_open_images(raw: str, sets: dict[str, int], fake: Fake, rng, jpeg) -> None:
    """The V6 boxable class list (601 classes, placeholder MIDs and names), the three human-verified
    image-label CSVs (5 verified labels per image, 1-3 present) and train/, validation/, test/."""
    os.makedirs(raw, exist_ok=True)
    with open(os.path.join(raw, "oidv6-class-descriptions-boxable.csv"), "w") as f:
        f.writelines(f"/m/0dry{c:04d},Class {c}\n" for c in range(fake.classes))
    files = {"train": "oidv6-train-annotations-human-imagelabels.csv",
             "validation": "validation-annotations-human-imagelabels.csv",
             "test": "test-annotations-human-imagelabels.csv"}  # fmt: skip
    k = 0
    for split, n in sets.items():
        os.makedirs(os.path.join(raw, split), exist_ok=True)
        with open(os.path.join(raw, files[split]), "w") as f:
            f.write("ImageID,Source,LabelName,Confidence\n")
            for _ in range(n):
                k += 1
                image_id = f"{k:016x}"
                jpeg(os.path.join(raw, split, f"{image_id}.jpg"), rng, _size(fake, k))
                verified = rng.choice(fake.classes, size=5, replace=False)
                present = int(rng.integers(1, 4))
                f.writelines(f"{image_id},verification,/m/0dry{c:04d},{int(j < present)}\n"
                             for j, c in sorted(enumerate(verified), key=lambda t: t[1]))  # fmt: skip


def raw_sets(dataset: str, n_train: int, n_eval: int) -> dict[str, int]:
    """Images per raw split (the file sets the builders read) for `n_train` train and `n_eval`
    evaluation images in the splits the configs use."""
    return {
        "coco/2014": {"train2014": n_train, "val2014": n_eval, "test2014": 1, "test2015": 1},
        "voc/2007": {"train": n_train - n_train // 2, "val": n_train // 2, "test": n_eval},
        "voc/2012": {"train": n_train, "val": n_eval, "test": 1},
        "vg200": {"train": n_train, "test": n_eval},
        "cub": {"train": max(n_train, n_eval), "test": max(n_train, n_eval)},
        "nus_wide": {"train": n_train, "test": n_eval},
        "open_images/boxable": {"train": n_train, "validation": n_eval, "test": n_eval},
    }[dataset]


def build_dataset(dataset: str, n_train: int, n_eval: int, workdir: str) -> dict:
    """The prepared fake `dataset` with at least `n_train` / `n_eval` images (built, or reused from
    `workdir`/data). Returns its manifest: data_dir, counts, image size, seconds."""
    import benchmark_data
    import numpy as np

    fake = FAKE[dataset]
    folder = os.path.join(workdir, "data", fake.folder)
    manifest_path = os.path.join(folder, "fake.json")
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
        if manifest["n_train"] >= n_train and manifest["n_eval"] >= n_eval:
            return manifest
    shutil.rmtree(folder, ignore_errors=True)
    raw, data_dir = os.path.join(folder, "raw"), os.path.join(folder, "tfds")
    start = time.perf_counter()
    writer = {"coco/2014": write_coco, "vg200": write_vg200, "cub": write_cub, "nus_wide": write_nus,
              "open_images/boxable": write_open_images}.get(dataset)  # fmt: skip
    rng = np.random.default_rng(0)
    sets = raw_sets(dataset, n_train, n_eval)
    if writer is None:
        write_voc(raw, dataset.split("/")[1], sets, fake, rng, benchmark_data._jpeg)
    else:
        writer(raw, sets, fake, rng, benchmark_data._jpeg)
    written = time.perf_counter() - start
    log = os.path.join(workdir, "logs", f"data.{fake.folder}.log")
    if "catalogue" in fake.kind:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "prepare", dataset, raw,
               data_dir]  # fmt: skip
    else:
        cmd = [sys.executable, "scripts/prepare_data.py", dataset, "--manual_dir", raw,
               "--data_dir", data_dir]  # fmt: skip
    rc, _, _, _ = run_logged(cmd, log, child_env(workdir), timeout=3600)
    if rc != 0:
        raise RuntimeError(f"preparing fake {dataset} failed (exit {rc}): {last_error(log)} "
                           f"(log: {log})")  # fmt: skip
    manifest = {
        "dataset": dataset, "format": fake.kind, "data_dir": data_dir, "raw": raw,
        "n_train": n_train, "n_eval": n_eval, "raw_sets": sets, "image_size": list(fake.size),
        "classes": fake.classes, "write_s": round(written, 1),
        "prepare_s": round(time.perf_counter() - start - written, 1),
        "command": shown(cmd),
    }  # fmt: skip
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def images_needed(meta: dict, steps: int) -> tuple[int, int]:
    """(train images, evaluation images) for `steps` steps per epoch at the config's batch after
    its validation carve-out, and 1.5 evaluation batches."""
    batch, fraction = meta["batch_cap"], meta["val_fraction"]
    n = steps * batch
    while n - round(fraction * n) < steps * batch:
        n += 1
    return n + 1, batch + max(1, batch // 2)


# --- running the commands --------------------------------------------------------------------------


def child_env(workdir: str) -> dict:
    env = dict(os.environ)
    env["MLRPL_JAX_CACHE"] = os.path.abspath(os.path.join(workdir, "cache"))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("JAX_PLATFORMS", "cpu")
    return env


def run_logged(cmd, log, env, *, timeout, signal_when=None):
    """Runs `cmd` in the repository root, stdout and stderr to `log`. `signal_when()`, polled,
    triggers one SIGTERM. Returns (exit status, seconds, peak resident memory in bytes, whether
    the SIGTERM was sent); a run over `timeout` seconds is killed (status -9)."""
    os.makedirs(os.path.dirname(log), exist_ok=True)
    start, sent = time.perf_counter(), False
    with open(log, "w") as out:
        out.write("$ " + shown(cmd) + "\n")
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if signal_when is not None and not sent and signal_when():
                    proc.send_signal(signal.SIGTERM)
                    sent = True
                if time.perf_counter() - start > timeout:
                    proc.kill()
                time.sleep(0.05)
        except BaseException:
            proc.kill()
            os.wait4(proc.pid, 0)
            raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - start, usage.ru_maxrss * 1024, sent


def shown(cmd: list[str]) -> str:
    """A command as a user types it ('python' for this interpreter, paths relative to the root)."""
    words = ["python" if w == sys.executable else os.path.relpath(w, ROOT) if w.startswith(ROOT)
             else w for w in cmd]  # fmt: skip
    return " ".join(words)


def last_error(log: str) -> str:
    """The error of a failed command: its last `error:` line, else its last line."""
    try:
        with open(log, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return "(no log)"
    errors_ = [line for line in lines if line.startswith("error:")]
    return (errors_[-1] if errors_ else lines[-1] if lines else "(empty log)")[:500]


def open_text(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


def records(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def train_overrides(meta: dict, args, data_dir: str, batch: int, workdir: str) -> list[str]:
    values = {
        "data.data_dir": data_dir,
        "model.backbone_weights": None,
        **({"method_config.clip_weights": None} if meta["clip"] else {}),
        "train.batch_size": batch,
        "train.eval_batch_size": batch,
        "train.num_epochs": EPOCHS,
        "train.max_steps_per_epoch": args.steps,
        "train.log_every_steps": 1,
        "train.progress_bar": False,
        "data.worker_count": args.workers,
        "data.eval_worker_count": args.workers,
        "data.cache_dir": os.path.abspath(os.path.join(workdir, "cache")),
        **({"data.size_factor": args.size_factor} if args.size_factor != 1.0 else {}),
        **{f"method_config.{k}": v for k, v in meta["method_overrides"].items()},
    }
    return [f"--config.{k}={v}" for k, v in values.items()]


def run_plan(meta: dict, args, workdir: str) -> dict:
    """`mlrpl_jax.plan` on the config in a fresh process (`--worker plan`)."""
    name = meta["name"]
    out = os.path.join(workdir, "plans", f"{slug(name)}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    overrides = [f"--config.method_config.{k}={v}" for k, v in meta["method_overrides"].items()
                 if k == "expected_positives"]  # fmt: skip
    if args.size_factor != 1.0:
        overrides.append(f"--config.data.size_factor={args.size_factor}")
    batch = min(meta["paper_batch"], args.batch or 8)
    budget = f"{(memory_bytes(args.memory) - HOST_OVERHEAD) // 10**6}MB"
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "plan", name, out, str(batch),
           budget, *overrides]  # fmt: skip
    log = os.path.join(workdir, "logs", f"{slug(name)}.plan.log")
    if os.path.exists(out):
        os.remove(out)
    rc, seconds, _, _ = run_logged(cmd, log, child_env(workdir), timeout=args.timeout)
    if rc != 0 or not os.path.exists(out):
        return {"ok": False, "message": last_error(log), "seconds": round(seconds, 1), "log": log}
    with open(out) as f:
        figures = json.load(f)
    return {"ok": True, "seconds": round(seconds, 1), "log": log, "figures": figures}


def memory_bytes(text: str) -> int:
    from mlrpl_jax import plan

    return plan.parse_bytes(text)


def dataset_needs(names: list[str], args) -> dict[str, tuple[int, int]]:
    """{dataset: (train images, evaluation images)} enough for every config of `names`, so that
    each dataset is built once."""
    needs = {}
    for name in names:
        try:
            meta = describe(name, args)
        except (errors.UserError, ValueError, KeyError, AttributeError, TypeError, ImportError):
            continue  # reported when the config runs
        n = images_needed(meta, args.steps)
        old = needs.get(meta["dataset"], (0, 0))
        needs[meta["dataset"]] = (max(old[0], n[0]), max(old[1], n[1]))
    return needs


def dry_run(name: str, args, workdir: str, needs: dict | None = None) -> dict:
    """Every stage of one config (module docstring); the result written to `args.results`. `needs`:
    the images to build each dataset with (`dataset_needs`; default: this config's)."""
    started = time.perf_counter()
    result = {"name": name, "stages": {}, "args": {k: getattr(args, k) for k in
              ("batch", "steps", "size_factor", "memory", "workers", "paper_phases")}}  # fmt: skip
    stages = result["stages"]
    try:
        meta = describe(name, args)
    except (errors.UserError, ValueError, KeyError, AttributeError, TypeError, ImportError) as e:
        stages["config"] = {"ok": False, "message": f"{type(e).__name__}: {e}"[:500]}
        return finish(result, started, args.results)
    result.update(meta)
    n_train, n_eval = (needs or {}).get(meta["dataset"]) or images_needed(meta, args.steps)
    try:
        manifest = build_dataset(meta["dataset"], n_train, n_eval, workdir)
        stages["data"] = {"ok": True, "format": manifest["format"]}
        result["data"] = {k: manifest[k] for k in ("dataset", "format", "classes", "image_size",
                                                   "n_train", "n_eval", "prepare_s")}  # fmt: skip
    except (RuntimeError, OSError, ValueError) as e:
        stages["data"] = {"ok": False, "message": str(e)[:500]}
        return finish(result, started, args.results)
    if args.plan:
        stages["plan"] = run_plan(meta, args, workdir)
        result["plan"] = stages["plan"].pop("figures", None)
    batch = meta["batch_cap"]
    if args.batch == 0:  # the largest that fits (without plan's figure: at most 8)
        largest = (result.get("plan") or {}).get("largest_batch", {}).get("batch")
        batch = max(1, min(batch, largest)) if largest is not None else min(batch, 8)
    result["batch"] = batch
    run_dir = os.path.join(workdir, "runs", slug(name))
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "mlrpl_jax.train", "--config", name, "--workdir", run_dir,
           *train_overrides(meta, args, manifest["data_dir"], batch, workdir)]  # fmt: skip
    result["command"] = shown(cmd)
    env = child_env(workdir)
    if args.compilation_cache != "none":
        env["JAX_COMPILATION_CACHE_DIR"] = os.path.abspath(args.compilation_cache)
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "1"
    steps = args.steps
    manifest_s = os.path.join(run_dir, "checkpoints", str(steps), "mlrpl_manifest.json")
    log1 = os.path.join(workdir, "logs", f"{slug(name)}.train.log")
    rc1, wall1, rss1, sent = run_logged(cmd, log1, env, timeout=args.timeout,
                                        signal_when=lambda: os.path.exists(manifest_s))  # fmt: skip
    first = records(os.path.join(run_dir, "metrics.jsonl"))
    result["runs"] = {"train": {"exit": rc1, "seconds": round(wall1, 1), "peak_rss": rss1,
                                "sigterm": sent, "log": log1}}  # fmt: skip
    trained = {r["step"] for r in first if "train/loss" in r}
    evaluated = [r for r in first if r["step"] == steps and any(k.startswith("eval/") for k in r)]
    stages["train"] = _stage(set(range(1, steps + 1)) <= trained, rc1, log1)
    stages["eval"] = _stage(bool(evaluated), rc1, log1) if stages["train"]["ok"] else _skipped()
    stages["checkpoint"] = (_stage(os.path.exists(manifest_s), rc1, log1)
                            if stages["eval"]["ok"] else _skipped())  # fmt: skip
    times = {r["step"]: batch / r["train/images_per_second"] for r in first
             if r.get("train/images_per_second")}  # fmt: skip
    samples = [times[s] for s in range(2, steps + 1) if s in times]
    if stages["checkpoint"]["ok"]:
        if rc1 != PREEMPTED:
            stages["resume"] = {"ok": False, "message": (
                f"the first run exited {rc1} instead of {PREEMPTED} after SIGTERM"
                + (f": {last_error(log1)}" if rc1 not in (0, PREEMPTED) else
                   " (it finished before the notice; use more --steps)"))}  # fmt: skip
        else:
            log2 = os.path.join(workdir, "logs", f"{slug(name)}.resume.log")
            rc2, wall2, rss2, _ = run_logged(cmd, log2, env, timeout=args.timeout)
            result["runs"]["resume"] = {"exit": rc2, "seconds": round(wall2, 1),
                                        "peak_rss": rss2, "log": log2}  # fmt: skip
            second = records(os.path.join(run_dir, "metrics.jsonl"))
            results_json = os.path.join(run_dir, "results.json")
            done = os.path.exists(results_json) and (
                _read_json(results_json)["step"] == EPOCHS * steps
            )
            with open(log2, errors="replace") as f:
                resumed = "Resumed from" in f.read()
            stages["resume"] = _stage(rc2 == 0 and resumed and done, rc2, log2)
            again = [r for r in second if r.get("train/images_per_second")]
            resumed_steps = sorted(r["step"] for r in again if r["step"] > steps + 1)
            samples += [batch / r["train/images_per_second"] for r in again
                        if r["step"] in resumed_steps[1:]]  # fmt: skip
    else:
        stages["resume"] = _skipped()
    if all(st.get("ok") for st in stages.values()) and not args.keep_runs:
        for sub in ("checkpoints", "best"):  # ~1-3 GB per config; metrics and results stay
            shutil.rmtree(os.path.join(run_dir, sub), ignore_errors=True)
    result["timing"] = {
        "s_per_step": _median(samples),
        "samples": [round(s, 3) for s in samples],
        "first_step_s": round(times[1], 1) if 1 in times else None,
    }
    return finish(result, started, args.results)


def _median(values):
    if not values:
        return None
    values = sorted(values)
    mid = len(values) // 2
    return round(values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2, 3)


def _stage(ok: bool, rc: int, log: str) -> dict:
    if ok:
        return {"ok": True}
    return {"ok": False, "message": f"exit {rc}: {last_error(log)}", "log": log}


def _skipped() -> dict:
    return {"ok": None, "message": "not reached"}


def finish(result: dict, started: float, results_dir: str) -> dict:
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["commit"] = commit()
    result["finished"] = time.strftime("%Y-%m-%d %H:%M")
    result["passed"] = all(s.get("ok") for s in result["stages"].values())
    result["machine"] = machine()
    path = os.path.join(results_dir, f"{slug(result['name'])}.json")
    os.makedirs(results_dir, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(path + ".tmp", path)  # a result file is whole or absent
    return result


# --- the document -----------------------------------------------------------------------------------


def commit() -> str:
    def git(*a):
        proc = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=False)
        return proc.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (" + local changes" if git("status", "--porcelain", "--untracked-files=no")
                   else "")  # fmt: skip


def machine() -> str:
    import jax

    model = "CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
        with open("/proc/meminfo") as f:
            memory = int(f.readline().split()[1]) / 2**20
    except (OSError, StopIteration, ValueError):
        memory = float("nan")
    return (f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB RAM; Python "
            f"{platform.python_version()}, jax {jax.__version__} ({jax.default_backend()})")  # fmt: skip


def _cell(stage: dict | None) -> str:
    if not stage:
        return "-"
    return {True: "ok", False: "**FAIL**", None: "-"}[stage.get("ok")]


def _gb(n) -> str:
    return "-" if n is None else f"{n / 1e9:.1f}"


def row(r: dict) -> str:
    p, t, s = r.get("plan") or {}, r.get("timing") or {}, r["stages"]
    params = p.get("parameters", {})
    g = p.get("gflops_per_image", {})
    rss = max([run.get("peak_rss", 0) for run in r.get("runs", {}).values()], default=None)
    cells = [
        f"`{r['name'][len('configs/'):]}`", r.get("method", "-"), r.get("dataset", "-"),
        str(r.get("classes", "-")), str(r.get("image_size", "-")), str(r.get("paper_batch", "-")),
        str(r.get("batch", "-")),
        f"{params['total'] / 1e6:.2f} / {params['trainable'] / 1e6:.2f}" if params else "-",
        f"{g['train']:.0f} / {g['eval']:.0f}" if g else "-",
        _gb(p.get("train_step", {}).get("memory_at_config_batch")),
        f"{t['s_per_step']:.1f}" if t.get("s_per_step") else "-",
        _gb(rss or None), f"{r['seconds'] / 60:.0f}",
        *(_cell(s.get(k)) for k in ("plan", "train", "eval", "checkpoint", "resume")),
    ]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


WEIGHTS_NOTE = (
    "- **Weights**: random initialisation everywhere (`--config.model.backbone_weights=None`, and "
    "`--config.method_config.clip_weights=None` for the CLIP methods): the paper configs point to "
    "ImageNet / CLIP weight files (`weights/resnet*.pth`, `weights/clip_*.npz`) that are not in "
    "the repository. Shapes, FLOPs and memory do not depend on the weights; the metrics of these "
    "runs mean nothing."
)
DATA_NOTE = (
    "- **Data**: fake data in each dataset's real format, built once per dataset and prepared by "
    "the user's command, `python scripts/prepare_data.py NAME --manual_dir RAW --data_dir DIR`; "
    "for the TFDS catalogue datasets (COCO 2014, VOC 2007 / 2012) the same command with TFDS's "
    "download patched to return a fake raw tree (annotation XML / JSON and JPEGs), so that TFDS's "
    "own builders write the array_record files that training reads, as after a real download. "
    "The real class names and counts, except VG-200 (the authors distribute no names: the "
    "builder's placeholders `class_000`..., as a real preparation gives) and Open Images (601 "
    "boxable classes with placeholder MIDs and names). Every image has a positive label (Open "
    "Images: 5 verified labels, 1-3 present); every fourth image is in portrait orientation."
)
METHOD_NOTE = (
    "- **Each config**: `python -m mlrpl_jax.plan` on the config as it is (parameters total / "
    "trainable; GFLOPs per image of the train and eval steps, XLA's count; memory per device at "
    "the paper's batch, which plan extrapolates from compiles at min(paper batch, 8) and twice "
    "that); then `python -m mlrpl_jax.train --config CFG --workdir W` with "
    f"`--config.train.num_epochs={EPOCHS}` and `--config.train.max_steps_per_epoch=STEPS` at the "
    "batch in the table (evaluation batch the same) and the config's image size; SIGTERM once "
    "epoch 1 has been evaluated and checkpointed (the run saves a checkpoint at the next step and "
    "exits 75), then the same command again, which resumes there and ends epoch 2 (evaluation, "
    "checkpoint, results.json). Epoch-gated phases start at epoch 1 (e.g. "
    "`generate_label_epoch=1`, `linear_init_epochs=1`; listed below), so the resumed epoch runs "
    "them. Every command is in the config's result, `docs/results/paper_configs/<config>.json`. "
    "Plan's memory is the compiled train step at the dataset's published size (per-example tables of "
    "the real N; the runs here hold the fake data's N) and leaves out a method's refresh pass "
    "(the K-means prototypes of HST, SARB, DSRB), which the peak RSS here includes."
)
TABLE_HEAD = (
    "| config | method | dataset | C | px | paper batch | batch here | params M total / "
    "trainable | GFLOPs/img train / eval | GB/device at paper batch | s/step here | peak RSS GB "
    "here | min | plan | train | eval | ckpt | resume |"
)


def _without_note(argv: list[str]) -> list[str]:
    """`argv` less `--note TEXT` (the note is shown by itself)."""
    out, skip = [], False
    for a in argv:
        if not skip and a != "--note" and not a.startswith("--note="):
            out.append(a)
        skip = a == "--note"
    return out


def _where(path: str) -> str:
    """A path relative to the repository root when it is inside it."""
    relative = os.path.relpath(path, ROOT)
    return path if relative.startswith("..") else relative


def write_doc(path: str, results_dir: str) -> None:
    """docs/results/paper_configs.md from the files in `results_dir` alone (every config's result,
    the last invocation, the note): `--doc_only` rebuilds the committed table from them."""
    known = paper_configs()
    results = [_read_json(f) for f in glob.glob(os.path.join(results_dir, "*.json"))]
    order = {n: i for i, n in enumerate(known)}
    results.sort(key=lambda r: (order.get(r["name"], len(order)), r["name"]))
    datasets = {}  # the largest build of each dataset the results ran on
    for r in results:
        d = r.get("data")
        if d and d["n_train"] >= datasets.get(d["dataset"], {}).get("n_train", -1):
            datasets[d["dataset"]] = d
    datasets = [datasets[k] for k in sorted(datasets)]
    machines = sorted({r.get("machine", "unknown") for r in results})
    runs = sorted({(r["args"]["steps"], r.get("batch"), r["args"]["size_factor"]) for r in results
                   if r.get("batch")})  # fmt: skip
    passed = sum(r["passed"] for r in results)
    commits = ", ".join(sorted({r.get("commit", "?") for r in results}))
    note_file = os.path.join(results_dir, "note.txt")
    note = open_text(note_file) if os.path.exists(note_file) else ""
    invocation_file = os.path.join(results_dir, "invocation.txt")
    invocation = open_text(invocation_file).strip() if os.path.exists(invocation_file) else ""
    lines = [
        "# Paper configs: a dry run of each at its real shapes",
        "",
        (
            "Generated by `scripts/dry_run_configs.py` (do not edit by hand; rerun it). Last "
            f"invocation: `python scripts/dry_run_configs.py {invocation}`."
        ),
        "",
        (
            f"- **Results**: {len(results)} of the {len(known)} paper configs have run; {passed} "
            f"passed every stage. Commit: {commits}."
        ),
        (
            f"- **Machine**: {'; '.join(machines) or machine()}. Seconds per step are this CPU's "
            "at the batch run here (median over the steps after each run's first, the input "
            "pipeline in the main process); peak RSS is the largest resident memory of the train "
            "and resume processes."
        ),
        *([f"- **Note**: {note}"] if note else []),
        WEIGHTS_NOTE,
        DATA_NOTE,
        "",
        "| dataset | format | classes | image size | train / eval images | prepare (s) |",
        "|---|---|---|---|---|---|",
        *(
            f"| {m['dataset']} | {m['format']} | {m['classes']} | {m['image_size'][0]}x"
            f"{m['image_size'][1]} | {m['n_train']} / {m['n_eval']} | {m['prepare_s']:.0f} |"
            for m in datasets
        ),
        "",
        METHOD_NOTE
        + " Runs here (steps per epoch, batch, size factor): "
        + ", ".join(f"({a}, {b}, {c:g})" for a, b, c in runs)
        + ".",
        "",
        TABLE_HEAD,
        "|---" * TABLE_HEAD.count(" | ") + "|---|",
        *(row(r) for r in results),
        "",
        "## Failures",
        "",
    ]
    failures = [(r, k, s) for r in results for k, s in r["stages"].items() if s.get("ok") is False]
    lines += [
        f"- `{r['name']}` ({stage}): {s['message']}"
        + (f" (log: `{_where(s['log'])}`)" if s.get("log") else "")
        for r, stage, s in failures
    ] or ["None."]
    notes = [r for r in results if r.get("notes")]
    if notes:
        lines += ["", "## Overrides beyond the common ones", ""]
        lines += [f"- `{r['name']}`: {'; '.join(r['notes'])}" for r in notes]
    done = {r["name"] for r in results}
    missing = {}
    for name in known:
        if name not in done:
            path_, _, variant = name.partition(":")
            missing.setdefault(path_, []).append(variant)
    if missing:
        lines += ["", f"## Not run yet ({sum(map(len, missing.values()))})", ""]
        lines += [f"- `{p}`" + (f": {', '.join(v)}" if v != [""] else "") for p, v in
                  missing.items()]  # fmt: skip
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


# --- workers (fresh processes) ---------------------------------------------------------------------


def worker(argv: list[str]) -> None:
    """`--worker plan CONFIG OUT BATCH MEMORY [--config.k=v ...]`: plan's figures as JSON;
    `--worker prepare NAME RAW DATA_DIR`: scripts/prepare_data.py with TFDS's download patched."""
    kind, *rest = argv
    if kind == "plan":
        name, out, batch, memory, *overrides = rest
        from absl import flags
        from ml_collections import config_flags

        from mlrpl_jax import launch, plan

        holder = config_flags.DEFINE_config_file("config", None, "config", lock_config=True)
        flags.FLAGS([sys.argv[0], f"--config={name}", *overrides])
        launch.setup_process()
        with cli.user_errors():
            figures = plan.plan(holder.value, batch=int(batch), device_memory=memory)
        with open(out, "w") as f:
            json.dump(figures, f, indent=1, default=str)
        return
    name, raw, data_dir = rest
    import importlib.resources
    import importlib.util
    from unittest import mock

    if importlib.util.find_spec("importlib_resources") is None:  # TFDS 4.9.10 imports it
        sys.modules["importlib_resources"] = importlib.resources
    import prepare_data
    import tensorflow_datasets as tfds

    def download_and_extract(self, url_or_urls):
        return {key: raw for key in url_or_urls}

    with mock.patch.object(tfds.download.DownloadManager, "download_and_extract",
                           download_and_extract):  # fmt: skip
        prepare_data.main([name, "--data_dir", data_dir])


# --- the command -------------------------------------------------------------------------------------


def parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 1)[1],
    )  # fmt: skip
    parser.add_argument("--workdir", default="runs/dry_run", help="data, runs, logs")
    parser.add_argument("--results", default=RESULTS,
                        help=f"one JSON per config, kept as they come (default {RESULTS}, "
                        "committed: a stopped run resumes from a clean clone)")  # fmt: skip
    parser.add_argument("--doc", default=DOC, help=f"the table to regenerate (default {DOC})")
    parser.add_argument("--only", nargs="+", help="config names or patterns (default: all)")
    parser.add_argument(
        "--batch", type=int, default=0,
        help="batch cap (at most the paper's); 0 (default): the paper's batch where it fits "
        "--memory, else the largest that fits",
    )  # fmt: skip
    parser.add_argument("--steps", type=int, default=3, help="train steps per epoch (2 epochs)")
    parser.add_argument(
        "--size_factor",
        type=float,
        default=1.0,
        help="data.size_factor (1: the config's image size)",
    )
    parser.add_argument("--memory", default="20GiB",
                        help="memory a train process may use (for --batch 0)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=0, help="grain worker processes")
    parser.add_argument("--timeout", type=float, default=7200, help="seconds per command")
    parser.add_argument(
        "--compilation_cache",
        default=None,
        help="persistent XLA cache (default <workdir>/jax_cache; 'none': off)",
    )
    parser.add_argument(
        "--plan",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run mlrpl_jax.plan on each config",
    )
    parser.add_argument(
        "--paper_phases",
        action="store_true",
        help="keep the paper's phase epochs (pseudo labels etc. from epoch 5)",
    )
    parser.add_argument("--keep_runs", action="store_true",
                        help="keep a passed config's checkpoints (default: delete them)")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="rerun configs with results")
    parser.add_argument("--retry_failed", action="store_true", help="rerun failed configs")
    parser.add_argument("--list", action="store_true", help="list the paper configs and exit")
    parser.add_argument("--doc_only", action="store_true",
                        help="rebuild --doc from --results; run nothing")  # fmt: skip
    parser.add_argument("--note", help="a remark for the table's header (kept in RESULTS/note.txt)")
    return parser.parse_args(argv)


def check(args) -> None:
    if args.batch < 0:
        raise errors.ConfigError(f"--batch {args.batch}: give a positive cap, or 0.")
    if args.steps < 3:  # a SIGTERM is seen at the step after the one it arrives in
        raise errors.ConfigError(
            f"--steps {args.steps}: at least 3 (the preemption notice after epoch 1 must leave a "
            "step of epoch 2 to resume)."
        )
    if not 0 < args.size_factor <= 1:
        raise errors.ConfigError(f"--size_factor {args.size_factor}: must be in (0, 1].")
    if args.workers < 0:
        raise errors.ConfigError(f"--workers {args.workers}: must be >= 0.")
    if memory_bytes(args.memory) <= HOST_OVERHEAD:
        raise errors.ConfigError(
            f"--memory {args.memory}: must exceed the {HOST_OVERHEAD / 2**30:.0f} GiB a train "
            "process holds beyond its compiled step."
        )


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        worker(argv[1:])
        return
    args = parse(argv)
    with cli.user_errors():
        check(args)
        names = select(args.only)
    if args.list:
        print("\n".join(names))
        return
    args.results = os.path.abspath(args.results)
    if args.doc_only:
        with cli.user_errors():
            if not glob.glob(os.path.join(args.results, "*.json")):
                raise errors.RunDirError(f"--results {args.results}: no config has a result there.")
        write_doc(args.doc, args.results)
        print(f"wrote {args.doc}")
        return
    workdir = os.path.abspath(args.workdir)
    if args.compilation_cache is None:
        args.compilation_cache = os.path.join(workdir, "jax_cache")
    os.makedirs(workdir, exist_ok=True)
    os.makedirs(args.results, exist_ok=True)
    if args.note is not None:
        with open(os.path.join(args.results, "note.txt"), "w") as f:
            f.write(args.note)
    with open(os.path.join(args.results, "invocation.txt"), "w") as f:
        f.write(shlex.join(_without_note(argv)) + "\n")
    todo = []
    for name in names:
        path = os.path.join(args.results, f"{slug(name)}.json")
        if os.path.exists(path) and not args.force:
            passed = _read_json(path)["passed"]
            if passed or not args.retry_failed:
                print(f"{name}: done before ({'passed' if passed else 'failed'}; --force reruns)")
                continue
        todo.append(name)
    needs = dataset_needs(todo, args)
    for i, name in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {name} ...", flush=True)
        r = dry_run(name, args, workdir, needs)
        failed = [k for k, s in r["stages"].items() if s.get("ok") is False]
        step = (r.get("timing") or {}).get("s_per_step")
        outcome = "passed" if r["passed"] else "FAILED " + ", ".join(failed)
        speed = f", {step:.1f} s/step at batch {r.get('batch')}" if step else ""
        print(f"[{i}/{len(todo)}] {name}: {outcome} in {r['seconds'] / 60:.1f} min{speed}",
              flush=True)  # fmt: skip
        write_doc(args.doc, args.results)
    write_doc(args.doc, args.results)
    print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
