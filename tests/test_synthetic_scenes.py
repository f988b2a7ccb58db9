"""Tests of the `synthetic_scenes` TFDS builder and its per-example generator."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import tensorflow_datasets as tfds
from helpers import NO_TENSORFLOW

from mlrpl_jax.data.tfds_builders import synthetic_scenes as ss

TINY = {"image_size": 32, "num_classes": 10, "num_train": 40, "num_test": 10, "seed": 0}
TINY_NAME = "s32_c10_tr40_te10_seed0"
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _read_all(source) -> tuple[np.ndarray, np.ndarray]:
    """Stacks all images and labels of a data source."""
    examples = [source[i] for i in range(len(source))]
    return (np.stack([e["image"] for e in examples]), np.stack([e["labels"] for e in examples]))


def _generate(n: int, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Generates examples 0..n-1 directly (no TFDS)."""
    examples = [ss.generate_example(i, **kwargs) for i in range(n)]
    return (np.stack([e["image"] for e in examples]), np.stack([e["labels"] for e in examples]))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A data dir holding the prepared tiny config."""
    data_dir = tmp_path_factory.mktemp("tfds")
    ss.prepare(data_dir, **TINY)
    return data_dir


def test_config_names_encode_parameters() -> None:
    assert ss.config_name(**TINY) == TINY_NAME
    assert ss.SyntheticScenesConfig().name == "s96_c10_tr4000_te1000_seed0"
    assert ss.SyntheticScenes.BUILDER_CONFIGS[0].name == "s96_c10_tr4000_te1000_seed0"
    assert ss.config_name(difficulty=1.5).endswith("_d1.5")
    parsed = ss.SyntheticScenesConfig.from_name("s48_c12_tr7_te3_seed5_d0.5")
    assert (
        parsed.image_size,
        parsed.num_classes,
        parsed.num_train,
        parsed.num_test,
        parsed.seed,
        parsed.difficulty,
    ) == (48, 12, 7, 3, 5, 0.5)
    assert ss.SyntheticScenesConfig.from_name("not_a_config") is None
    with pytest.raises(ValueError):
        ss.SyntheticScenesConfig(name="custom", image_size=32)
    builder = ss.make_builder("/nonexistent_tfds_dir", **TINY)
    assert builder.builder_config.name == TINY_NAME
    assert str(builder.version) == "1.0.0"
    assert builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
    other = ss.make_builder("/nonexistent_tfds_dir", **{**TINY, "seed": 1})
    assert other.data_path != builder.data_path
    default = ss.make_builder("/nonexistent_tfds_dir")
    assert default.builder_config is ss.SyntheticScenes.BUILDER_CONFIGS[0]


def test_build_and_read_back(tiny_dir: pathlib.Path) -> None:
    version_dir = tiny_dir / "synthetic_scenes" / TINY_NAME / "1.0.0"
    assert list(version_dir.glob("synthetic_scenes-train.array_record-*"))
    assert list(version_dir.glob("synthetic_scenes-test.array_record-*"))
    for split, n in (("train", 40), ("test", 10)):
        source = tfds.data_source(
            f"synthetic_scenes/{TINY_NAME}",
            split=split,
            data_dir=os.fspath(tiny_dir),
            download=False,
        )
        assert len(source) == n
        images, labels = _read_all(source)
        assert images.shape == (n, 32, 32, 3) and images.dtype == np.uint8
        assert labels.shape == (n, 10) and labels.dtype == np.uint8
        assert set(np.unique(labels)) <= {0, 1}
        assert labels.sum(axis=1).min() >= 1
        # Stored in index order: record i is example i.
        expected_images, expected_labels = _generate(n, split=split, image_size=32)
        np.testing.assert_array_equal(images, expected_images)
        np.testing.assert_array_equal(labels, expected_labels)


def test_load_source_reuses_prepared_data(
    tiny_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("must not re-prepare")

    monkeypatch.setattr(ss.SyntheticScenes, "_download_and_prepare", fail)
    source = ss.load_source("test", tiny_dir, **TINY)
    assert len(source) == 10
    assert source[0]["image"].shape == (32, 32, 3)


def test_builds_are_deterministic_and_prefix_stable(
    tiny_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    images_a, labels_a = _read_all(ss.load_source("train", tiny_dir, **TINY))
    images_b, labels_b = _read_all(ss.load_source("train", tmp_path / "b", **TINY))
    np.testing.assert_array_equal(images_a, images_b)
    np.testing.assert_array_equal(labels_a, labels_b)
    longer = ss.load_source("train", tmp_path / "c", **{**TINY, "num_train": 60})
    assert len(longer) == 60
    images_c, labels_c = _read_all(longer)
    np.testing.assert_array_equal(images_c[:40], images_a)
    np.testing.assert_array_equal(labels_c[:40], labels_a)


def test_interrupted_preparation_recovers(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = {**TINY, "num_train": 12, "num_test": 4}
    original = ss.SyntheticScenes._generate_examples

    def interrupted(self, split, num_examples):
        for i, (key, example) in enumerate(original(self, split, num_examples)):
            if i == 5:
                raise KeyboardInterrupt("simulated interruption")
            yield key, example

    monkeypatch.setattr(ss.SyntheticScenes, "_generate_examples", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ss.prepare(tmp_path, **params)
    monkeypatch.setattr(ss.SyntheticScenes, "_generate_examples", original)
    config_dir = tmp_path / "synthetic_scenes" / ss.config_name(**params)
    assert not (config_dir / "1.0.0").exists()
    # A directory left behind by a killed preparation is cleaned up on the next call.
    (config_dir / "incomplete.ABC123_1.0.0").mkdir(parents=True)
    source = ss.load_source("train", tmp_path, **params)
    assert len(source) == 12
    assert not list(config_dir.glob("incomplete.*"))


def test_concurrent_preparation(tmp_path: pathlib.Path) -> None:
    params = {**TINY, "num_train": 16, "num_test": 4, "seed": 3}
    errors: list[Exception] = []

    def worker() -> None:
        try:
            ss.prepare(tmp_path, **params)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below.
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    images, _ = _read_all(ss.load_source("train", tmp_path, **params))
    np.testing.assert_array_equal(images, _generate(16, image_size=32, seed=3)[0])


def test_generate_example_is_pure_and_seed_dependent() -> None:
    a = ss.generate_example(7, image_size=32, seed=0)
    b = ss.generate_example(7, image_size=32, seed=0)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["labels"], b["labels"])
    images_0, labels_0 = _generate(20, image_size=32, seed=0)
    images_1, labels_1 = _generate(20, image_size=32, seed=1)
    assert not np.array_equal(images_0, images_1)
    assert not np.array_equal(labels_0, labels_1)
    images_test, _ = _generate(20, split="test", image_size=32, seed=0)
    assert not np.array_equal(images_0, images_test)
    # Works for other sizes and class counts.
    other = ss.generate_example(0, image_size=48, num_classes=40, seed=2, difficulty=2.0)
    assert other["image"].shape == (48, 48, 3) and other["labels"].shape == (40,)


def test_label_statistics_have_structure() -> None:
    _, labels = _generate(400, image_size=32)
    labels = labels.astype(np.float64)
    assert labels.sum(axis=1).min() >= 1
    assert 1.2 < labels.sum(axis=1).mean() < 3.0
    freq = labels.mean(axis=0)
    assert freq.min() > 0.0
    assert freq.max() / freq.min() > 2.5  # Some classes are rare.
    joint = labels.T @ labels / len(labels)
    lift = joint / np.outer(freq, freq)
    np.fill_diagonal(lift, 0.0)
    support = joint * len(labels) >= 10
    assert (lift * support).max() > 2.0  # Some pair co-occurs far above independence.
    world = ss.class_world(10)
    for a, b in world.exclusives:  # Exclusive pairs co-occur far below independence.
        assert joint[a, b] < 0.3 * freq[a] * freq[b]


def test_classes_differ_in_appearance() -> None:
    images, labels = _generate(400, image_size=32)
    single = labels.sum(axis=1) == 1
    means = []
    for c in range(10):
        sel = images[single & (labels[:, c] == 1)].astype(np.float64)
        if len(sel) < 3:
            continue
        # Colour of the pixels far from the image's median (mostly object pixels).
        median = np.median(sel, axis=(1, 2), keepdims=True)
        fg = np.abs(sel - median).sum(axis=-1) > 90
        means.append(np.array([sel[..., k][fg].mean() for k in range(3)]))
    means = np.stack(means)
    assert len(means) >= 5
    dists = np.linalg.norm(means[:, None] - means[None, :], axis=-1)
    assert dists[np.triu_indices(len(means), 1)].mean() > 20.0


def test_builds_and_reads_without_tensorflow(tmp_path: pathlib.Path) -> None:
    script = NO_TENSORFLOW + textwrap.dedent(f"""
        from mlrpl_jax.data.tfds_builders import synthetic_scenes as ss

        source = ss.load_source("train", {os.fspath(tmp_path)!r}, **{TINY!r})
        assert len(source) == 40 and source[39]["image"].shape == (32, 32, 3)
        assert "tensorflow" not in sys.modules
        print("OK")
    """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.fspath(REPO_ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout


def test_class_names_describe_the_classes_and_are_unique():
    names = ss.class_names(10)
    world = ss.class_world(10)
    for c, name in enumerate(names):
        colour, texture, shape = name.split()
        assert shape == ss.SHAPES[world.shape[c]]
        assert texture == ss.TEXTURE_ADJECTIVES[world.texture[c]]
        hue_bin = int(world.hsv[c, 0] * 12 + 0.5) % 12
        assert colour == ss.COLOUR_NAMES[hue_bin]
    for num_classes in (2, 5, 10, 40, 64, 100, 200):
        names = ss.class_names(num_classes)
        assert len(set(names)) == num_classes
        words = {w for n in names for w in n.split()}
        assert all(w in ss.CAPTION_WORDS or w.isdigit() for w in words)
