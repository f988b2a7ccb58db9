"""mask_mode='reference' gives the authors' partial-label matrix on COCO and VOC, whose TFDS order
differs from the authors' loaders' order (`data.reference_order`). The authors' generator is written
out here from shared/reference/hcp_mlr_pl_notes.md §4 and run on fake annotation files."""

import json

import numpy as np
import pytest

from configs import base as base_config
from mlrpl_jax.data import pipeline, reference_order, sources


def authors_coco(annotations, proportion):
    """datasets/coco2014.py + changeLabelProportion: -1/+1 labels in the JSON's image order, any
    annotation (crowd included) makes a class positive, category id -> rank of ascending ids;
    np.random.seed(0), one uniform per entry, keep iff < proportion. {file_name: row}."""
    rank = {cid: k for k, cid in enumerate(sorted(c["id"] for c in annotations["categories"]))}
    images = annotations["images"]
    row_of = {image["id"]: r for r, image in enumerate(images)}
    labels = -np.ones((len(images), len(rank)))
    for a in annotations["annotations"]:
        labels[row_of[a["image_id"]], rank[a["category_id"]]] = 1
    np.random.seed(0)
    keep = np.random.random(labels.shape) < proportion
    partial = np.where(keep, labels, 0)
    return {image["file_name"]: partial[r] for r, image in enumerate(images)}


def fake_coco(rng, num_images=40):
    ids = list(sources.COCO_CATEGORY_IDS)
    images = [{"id": int(1000 + 7 * i), "file_name": f"COCO_train2014_{1000 + 7 * i:012d}.jpg"}
              for i in rng.permutation(num_images)]  # fmt: skip
    annotations = []
    for image in images[:-3]:  # the last three have no annotation (all negative)
        for _ in range(rng.integers(1, 4)):
            annotations.append({"image_id": image["id"], "category_id": int(rng.choice(ids)),
                                "iscrowd": int(rng.random() < 0.2)})  # fmt: skip
    categories = [{"id": cid, "name": n} for cid, n in zip(ids, sources.COCO_CLASS_NAMES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_source(annotations, order):
    """A coco/2014 Source whose records (TFDS's features) are stored in `order`."""
    rank = {cid: k for k, cid in enumerate(sources.COCO_CATEGORY_IDS)}
    records = []
    for i in order:
        image = annotations["images"][i]
        labels = [rank[a["category_id"]] for a in annotations["annotations"]
                  if a["image_id"] == image["id"]]  # fmt: skip
        records.append({"image": np.zeros((2, 2, 3), np.uint8), "image/filename": image["file_name"],
                        "objects": {"label": np.asarray(labels, np.int64)}})  # fmt: skip
    return sources.Source(name="coco/2014", split="train", data=records,
                          class_names=sources.COCO_CLASS_NAMES, labels_fn=sources._coco_labels,
                          filename_key="image/filename")  # fmt: skip


def data_config(name, proportion, order_file=None):
    data = base_config.get_config("ssgrl").data
    data.name, data.mask_mode, data.known_proportion = name, "reference", proportion
    data.val_fraction = 0.0
    data.reference_order_file = None if order_file is None else str(order_file)
    return data


@pytest.mark.parametrize("proportion", [0.1, 0.5, 0.9])
def test_coco_reference_masks_are_the_authors(tmp_path, proportion):
    rng = np.random.default_rng(0)
    annotations = fake_coco(rng)
    path = tmp_path / "instances_train2014.json"
    path.write_text(json.dumps(annotations))
    want = authors_coco(annotations, proportion)
    source = coco_source(annotations, rng.permutation(len(annotations["images"])))
    mask = pipeline.make_mask_transform(data_config("coco/2014", proportion, path), source)
    names = source.image_names()
    for i in range(len(source)):
        np.testing.assert_array_equal(
            mask.map(source[i])["labels"], want[names[i]], err_msg=names[i]
        )
    # Without the order the stored order would be used, which is not the authors'.
    with pytest.raises(ValueError, match="instances_train2014.json"):
        pipeline.make_mask_transform(data_config("coco/2014", proportion), source)


def voc_source(names, objects):
    records = [{"image": np.zeros((2, 2, 3), np.uint8), "image/filename": f"{n}.jpg",
                "objects": {"label": np.asarray([c for c, _ in objs], np.int64),
                            "is_difficult": np.asarray([d for _, d in objs], bool)}}
               for n, objs in zip(names, objects)]  # fmt: skip
    return sources.Source(name="voc/2007", split="train+validation", data=records,
                          class_names=sources.VOC_CLASS_NAMES, labels_fn=sources._voc_labels,
                          filename_key="image/filename")  # fmt: skip


def test_voc_reference_masks_follow_trainval_txt(tmp_path):
    """datasets/voc2007.py: trainval.txt order (ascending ids), +1 iff a non-difficult object."""
    rng = np.random.default_rng(1)
    ids = sorted(f"{i:06d}" for i in rng.choice(10000, 30, replace=False))
    objects = {i: [(int(rng.integers(20)), bool(rng.random() < 0.3)) for _ in range(3)]
               for i in ids}  # fmt: skip
    labels = -np.ones((len(ids), 20))
    for r, i in enumerate(ids):
        for c, difficult in objects[i]:
            if not difficult:
                labels[r, c] = 1
    np.random.seed(0)
    want = dict(zip(ids, np.where(np.random.random(labels.shape) < 0.3, labels, 0)))
    stored = [ids[k] for k in rng.permutation(len(ids))]  # TFDS's order
    source = voc_source(stored, [objects[i] for i in stored])
    trainval = tmp_path / "trainval.txt"
    trainval.write_text("".join(f"{i}\n" for i in ids))
    for order_file in (trainval, None):  # the file, or the ascending ids it lists
        mask = pipeline.make_mask_transform(data_config("voc/2007", 0.3, order_file), source)
        for k, name in enumerate(stored):
            np.testing.assert_array_equal(mask.map(source[k])["labels"], want[name])


def test_order_file_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="instances_train2014.json"):
        reference_order.read_order_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"annotations": []}')
    with pytest.raises(ValueError, match="not a COCO annotation file"):
        reference_order.read_order_file(bad)
    with pytest.raises(ValueError, match=r"1 of our 2 images are not listed"):
        reference_order.reference_rows(["a.jpg", "b.jpg"], ["a", "c"], source="list.txt")
    with pytest.raises(ValueError, match="listed twice"):
        reference_order.reference_rows(["a.jpg"], ["a", "x", "a.png"], source="list.txt")
    # More images in the authors' order than ours: their extra rows are drawn and unused.
    rows = reference_order.reference_rows(["dir/c.jpg", "a.jpg"], ["a", "b", "c"], source="l")
    np.testing.assert_array_equal(rows, [2, 0])


def test_protocol_list_file_maps_to_the_right_examples(tmp_path):
    """An SPLC-setup list file ("path,i j" lines, 0-based classes) read as data.partial_labels_file:
    each of our examples gets its listed positives by image name, the rest unknown."""
    rng = np.random.default_rng(2)
    ids = [f"{i:06d}" for i in rng.choice(10000, 12, replace=False)]
    source = voc_source(ids, [[(int(rng.integers(20)), False)] for _ in ids])
    listed = {i: sorted(set(rng.integers(0, 20, rng.integers(1, 3)).tolist())) for i in ids}
    order = [ids[k] for k in rng.permutation(len(ids))] + ["999999"]  # one image we do not have
    listed["999999"] = [3]
    path = tmp_path / "voc_train_singlelabel.txt"
    path.write_text("".join(f"JPEGImages/{i}.jpg,{' '.join(map(str, listed[i]))}\n" for i in order))
    data = data_config("voc/2007", 0.5)
    data.mask_mode, data.partial_labels_file = "hash", str(path)
    mask = pipeline.make_mask_transform(data, source)
    for k, name in enumerate(ids):
        want = np.zeros(20, np.int8)
        want[listed[name]] = 1
        np.testing.assert_array_equal(mask.map(source[k])["labels"], want, err_msg=name)
    # Every one of our images must be listed; class indices must be of this dataset.
    path.write_text("".join(f"{i}.jpg,1\n" for i in ids[:-1]))
    with pytest.raises(ValueError, match="1 of our 12 images are not listed"):
        pipeline.make_mask_transform(data, source)
    path.write_text(f"{ids[0]}.jpg,20\n")
    with pytest.raises(ValueError, match=r"class index 20 .* outside \[0, 20\)"):
        pipeline.make_mask_transform(data, source)
