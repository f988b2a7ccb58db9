"""Tests of `mlrpl_jax.data.label_semantics`: embeddings, adjacency, partial labels and the cache."""

import importlib.machinery
import os
import sys
import types

import numpy as np
import pytest

from configs import base
from mlrpl_jax.data import label_semantics as ls
from mlrpl_jax.data import pipeline


def reference_adjacency(labels: np.ndarray) -> np.ndarray:
    """notes §1.7 written out with loops; a class without known positives: 0 row, diagonal 1."""
    n, c = labels.shape
    counts = np.zeros((c, c))
    for k in range(n):
        for i in range(c):
            for j in range(c):
                if labels[k, i] == 1 and labels[k, j] == 1:
                    counts[i, j] += 1
    adjacency = np.zeros((c, c))
    for i in range(c):
        for j in range(c):
            if counts[i, i] > 0:
                adjacency[i, j] = counts[i, j] / counts[i, i]
            else:
                adjacency[i, j] = 1.0 if i == j else 0.0
    return adjacency


# ------------------------------------------------------------------------------------------------
# Adjacency.
# ------------------------------------------------------------------------------------------------

HAND = np.array(
    [  # class 3 has no known positive (only negatives and unknowns).
        [1, 1, -1, 0, 0],
        [1, 0, 1, -1, 1],
        [1, 1, 0, 0, -1],
        [-1, 1, 1, -1, 0],
        [0, -1, 1, 0, 1],
        [0, 0, 0, 0, 0],
    ],
    dtype=np.int8,
)


def test_adjacency_hand_made_matches_reference_loops():
    adjacency = ls.cooccurrence_adjacency(HAND)
    assert adjacency.dtype == np.float32 and adjacency.shape == (5, 5)
    np.testing.assert_allclose(adjacency, reference_adjacency(HAND), rtol=0, atol=1e-7)
    # By hand: class 0 is known positive in rows 0-2; class 1 in rows 0, 2, 3.
    assert adjacency[0, 1] == pytest.approx(2 / 3) and adjacency[1, 0] == pytest.approx(2 / 3)
    assert adjacency[2, 4] == pytest.approx(2 / 3) and adjacency[4, 2] == 1.0
    np.testing.assert_array_equal(adjacency[3], [0, 0, 0, 1, 0])  # reference: a NaN row
    np.testing.assert_array_equal(np.diag(adjacency), 1.0)
    # Negatives and unknowns are ignored: turning every -1 into 0 changes nothing.
    np.testing.assert_array_equal(ls.cooccurrence_adjacency(np.maximum(HAND, 0)), adjacency)


def test_adjacency_random_and_chunked(monkeypatch):
    rng = np.random.default_rng(0)
    labels = rng.choice(np.array([-1, 0, 1], np.int8), size=(300, 12), p=[0.5, 0.3, 0.2])
    labels[:, 7] = np.minimum(labels[:, 7], 0)
    want = reference_adjacency(labels)
    np.testing.assert_allclose(ls.cooccurrence_adjacency(labels), want, atol=1e-6)
    monkeypatch.setattr(ls, "_MATMUL_CHUNK_ELEMENTS", 12 * 37)  # 37 rows per matmul
    np.testing.assert_allclose(ls.cooccurrence_adjacency(labels), want, atol=1e-6)


def test_adjacency_rejects_bad_values():
    with pytest.raises(ValueError, match="invalid partial label 2"):
        ls.cooccurrence_adjacency(np.array([[1, 2]]))


# ------------------------------------------------------------------------------------------------
# Embedding files.
# ------------------------------------------------------------------------------------------------

GLOVE = """\
the 0.1 0.2 0.3 0.4
Dog 9 9 9 9
dog 1 2 3 4
traffic 1 0 0 0
light 0 1 0 1
Cat 5 5 5 5
dining 2 2 0 0
table 0 0 2 2
. . . 7 7 7 7
"""


def _glove(tmp_path, text=GLOVE):
    path = tmp_path / "vectors.txt"
    path.write_text(text)
    return str(path)


def test_glove_text_multi_word_case_and_aliases(tmp_path):
    names = ["dog", "Traffic Light", "traffic_light", "cat", "diningtable", "dog-zzz"]
    with pytest.warns(UserWarning, match=r"'dog-zzz' \(missing \['zzz'\]\)"):
        emb = ls.load_label_embeddings(_glove(tmp_path), names)
    assert emb.dtype == np.float32 and emb.shape == (6, 4)
    np.testing.assert_array_equal(emb[0], [1, 2, 3, 4])  # exact lower-case entry beats "Dog"
    np.testing.assert_array_equal(emb[1], [0.5, 0.5, 0, 0.5])  # mean of traffic and light
    np.testing.assert_array_equal(emb[2], emb[1])
    np.testing.assert_array_equal(emb[3], [5, 5, 5, 5])  # only a cased entry: matched
    np.testing.assert_array_equal(emb[4], [1, 1, 1, 1])  # "dining table"
    np.testing.assert_array_equal(emb[5], emb[0])  # missing word skipped


def test_glove_word2vec_header_and_any_dim(tmp_path):
    path = _glove(tmp_path, "2 3\nsheep 1 2 3\ncow 4 5 6\n")
    np.testing.assert_array_equal(
        ls.load_label_embeddings(path, ["cow", "sheep"]), [[4, 5, 6], [1, 2, 3]]
    )


def test_glove_missing_classes_listed(tmp_path):
    with pytest.raises(ValueError) as info:
        ls.load_label_embeddings(_glove(tmp_path), ["dog", "unicorn", "zz_top", "cat"])
    message = str(info.value)
    assert "2 class(es)" in message and "'unicorn'" in message and "'zz_top'" in message
    assert "'dog'" not in message and str(tmp_path) in message


def test_glove_bad_line_and_placeholder_names(tmp_path):
    path = _glove(tmp_path, "the 1 2\ndog 1 x\n")
    with pytest.raises(ValueError, match=r"vectors.txt:2: could not parse"):
        ls.load_label_embeddings(path, ["dog"])
    with pytest.raises(ValueError, match="placeholders.*vg_200_vector.npy"):
        ls.load_label_embeddings(_glove(tmp_path), ["class_000", "class_001"])


def test_npy_embeddings_and_shape_error(tmp_path):
    path = tmp_path / "vectors.npy"
    np.save(path, np.arange(12, dtype=np.float64).reshape(3, 4))
    emb = ls.load_label_embeddings(path, ["a", "b", "c"])
    assert emb.dtype == np.float32 and emb.shape == (3, 4)
    with pytest.raises(ValueError) as info:
        ls.load_label_embeddings(path, ["a", "b"])
    assert str(path) in str(info.value) and "C = 2" in str(info.value)
    assert "(3, 4)" in str(info.value)


def test_missing_embeddings_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.data.label_embeddings"):
        ls.load_label_embeddings(tmp_path / "nope.npy", ["a"])


# ------------------------------------------------------------------------------------------------
# Fallback embeddings.
# ------------------------------------------------------------------------------------------------


def test_synthetic_attribute_embeddings():
    from mlrpl_jax.data.tfds_builders import synthetic_scenes

    names = [f"class_{c:02d}" for c in range(24)]
    emb, description = ls.fallback_label_embeddings(
        names, 300, "synthetic_scenes", {"num_classes": 24}
    )
    again, _ = ls.fallback_label_embeddings(names, 300, "synthetic_scenes")
    np.testing.assert_array_equal(emb, again)
    assert emb.dtype == np.float32 and emb.shape == (24, 300) and "synthetic_scenes" in description
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-6)
    assert not emb[:, 15:].any()  # 15 attribute dims, zero-padded
    shape = synthetic_scenes.class_world(24).shape
    sim = emb @ emb.T
    for i in range(24):
        same = (shape == shape[i]) & (np.arange(24) != i)
        assert sim[i, same].min() > sim[i, shape != shape[i]].max()
    # Narrower than 15 dims: a deterministic projection.
    small, _ = ls.fallback_label_embeddings(names, 8, "synthetic_scenes")
    np.testing.assert_array_equal(
        small, ls.fallback_label_embeddings(names, 8, "synthetic_scenes")[0]
    )
    assert small.shape == (24, 8)
    with pytest.raises(ValueError, match="num_classes=5"):
        ls.fallback_label_embeddings(names, 8, "synthetic_scenes", {"num_classes": 5})


def test_fit_dim_keeps_inner_products_when_rank_allows():
    x = np.random.default_rng(1).standard_normal((6, 40))
    y = ls._fit_dim(x, 10)
    assert y.shape == (6, 10)
    np.testing.assert_allclose(y @ y.T, x @ x.T, atol=1e-4)


@pytest.mark.parametrize("num_classes,dim", [(20, 300), (7, 7), (12, 5)])
def test_random_orthonormal_fallback_warns(monkeypatch, num_classes, dim):
    names = [f"word{c}" for c in range(num_classes)]
    with pytest.warns(UserWarning, match="no semantic prior.*config.data.label_embeddings"):
        emb, description = ls.fallback_label_embeddings(names, dim, "voc/2007")
    assert emb.dtype == np.float32 and emb.shape == (num_classes, dim)
    assert description.startswith("random orthonormal")
    if num_classes <= dim:
        np.testing.assert_allclose(emb @ emb.T, np.eye(num_classes), atol=1e-6)
    else:
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-6)
    with pytest.warns(UserWarning):
        np.testing.assert_array_equal(ls.fallback_label_embeddings(names, dim, "x")[0], emb)


def _fake_sentence_transformers(monkeypatch, fail=False):
    """Installs a fake `sentence_transformers` module; returns the list of constructor calls."""
    calls = []

    class SentenceTransformer:
        def __init__(self, name, **kwargs):
            calls.append((name, kwargs, os.environ.get("HF_HUB_OFFLINE")))
            if fail:
                raise OSError("model not in the local cache")

        def encode(self, texts, convert_to_numpy=True):
            calls.append(list(texts))
            return np.stack([np.full(384, len(t), np.float32) + np.arange(384) for t in texts])

    module = types.ModuleType("sentence_transformers")
    module.__spec__ = importlib.machinery.ModuleSpec("sentence_transformers", None)
    module.SentenceTransformer = SentenceTransformer
    monkeypatch.setitem(sys.modules, "sentence_transformers", module)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return calls


def test_sentence_transformers_only_when_the_config_names_them(monkeypatch, tmp_path):
    """Installed and cached or not, the fallback never uses a sentence model (same config, same
    embeddings everywhere); 'sentence-transformers:<model>' uses it, offline."""
    calls = _fake_sentence_transformers(monkeypatch)
    with pytest.warns(UserWarning, match="random orthonormal"):
        _, description = ls.fallback_label_embeddings(["dog", "cat"], 16, "coco/2014")
    assert description.startswith("random") and calls == []
    emb = ls.sentence_embeddings(["dog", "diningtable"], "some/model")
    assert emb.shape == (2, 384)
    name, kwargs, offline = calls[0]
    assert name == "some/model" and kwargs["local_files_only"] is True and offline == "1"
    assert calls[1] == ["dog", "dining table"]
    assert "HF_HUB_OFFLINE" not in os.environ  # restored
    data = _data_config(tmp_path, label_embeddings="sentence-transformers:some/model")
    data.label_embedding_dim = 300
    result = ls.compute_label_semantics(data, CountingSource(_labels(), name="voc/2007"))
    assert result.embeddings.shape == (5, 300) and "some/model" in result.embedding_source


def test_missing_sentence_model_is_an_error_that_says_so(monkeypatch):
    _fake_sentence_transformers(monkeypatch, fail=True)
    with pytest.raises(RuntimeError, match="not in the local Hugging Face cache"):
        ls.sentence_embeddings(["dog", "cat"], "some/model")


# ------------------------------------------------------------------------------------------------
# Train partial labels (== MaskLabels) on a real small synthetic split.
# ------------------------------------------------------------------------------------------------

SYNTHETIC = {"image_size": 8, "num_classes": 5, "num_train": 40, "num_test": 4, "seed": 0}


def _data_config(tmp_path, **overrides):
    data = base.get_config().data
    data.data_dir = str(tmp_path)
    data.cache_dir = str(tmp_path / "cache")
    data.synthetic.update(SYNTHETIC)
    for key, value in overrides.items():
        data[key] = value
    return data


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("synthetic")
    pipeline.make_source(_data_config(path), "train")  # prepares once for the module
    return path


@pytest.mark.parametrize(
    "setting,mode,proportion",
    [
        ("pal", "hash", 0.5),
        ("ppl", "hash", 0.3),
        ("spl", "hash", 0.5),
        ("fal", "hash", 0.5),
        ("pal", "reference", 0.4),
        ("file", "hash", 0.5),
    ],
)
def test_train_partial_labels_equal_mask_labels(synthetic_dir, tmp_path, setting, mode, proportion):
    overrides = {"setting": setting, "mask_mode": mode, "known_proportion": proportion}
    if setting == "file":
        file = tmp_path / "partial.npy"
        labels = np.random.default_rng(3).integers(-1, 2, size=(40, 5)).astype(np.int8)
        np.save(file, labels)
        overrides.update(setting="pal", partial_labels_file=str(file))
    data = _data_config(synthetic_dir, label_seed=7, **overrides)
    source = pipeline.make_source(data, "train")
    got = ls.train_partial_labels(data, source)
    mask = pipeline.make_mask_transform(data, source)
    want = np.stack([mask.map(source[i])["labels"] for i in range(len(source))])
    assert got.dtype == np.int8 and got.shape == (40, 5)
    np.testing.assert_array_equal(got, want)
    if setting == "file":
        np.testing.assert_array_equal(got, labels)


def test_train_partial_labels_reference_mode_needs_pal(synthetic_dir):
    data = _data_config(synthetic_dir, setting="ppl", mask_mode="reference")
    with pytest.raises(ValueError, match="mask_mode='reference'"):
        ls.train_partial_labels(data, pipeline.make_source(data, "train"))


def test_label_semantics_on_synthetic_source(synthetic_dir, tmp_path):
    data = _data_config(synthetic_dir, cache_dir=str(tmp_path / "cache"), label_embedding_dim=32)
    source = pipeline.make_source(data, "train")
    result = ls.label_semantics(data, source)
    mask = pipeline.make_mask_transform(data, source)
    partial = np.stack([mask.map(source[i])["labels"] for i in range(len(source))])
    np.testing.assert_allclose(result.adjacency, reference_adjacency(partial), atol=1e-7)
    assert result.embeddings.shape == (5, 32) and "synthetic_scenes" in result.embedding_source


# ------------------------------------------------------------------------------------------------
# Cache.
# ------------------------------------------------------------------------------------------------


class CountingSource:
    """The parts of a `Source` that label_semantics reads; counts the label scans."""

    def __init__(self, labels, name="synthetic_scenes"):
        self.name, self.split = name, "train"
        self._labels = labels
        self.num_classes = labels.shape[1]
        self.class_names = tuple(f"class_{c}" for c in range(self.num_classes))
        self.scans = 0

    def __len__(self):
        return len(self._labels)

    def labels_matrix(self):
        self.scans += 1
        return self._labels


def _labels(n=50, c=5):
    return (np.random.default_rng(0).random((n, c)) < 0.4).astype(np.uint8)


def _cache_files(data):
    directory = os.path.join(data.cache_dir, "label_semantics")
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def test_cache_hit_is_identical_and_does_not_rescan(tmp_path):
    data = _data_config(tmp_path, label_embedding_dim=16)
    source = CountingSource(_labels())
    first = ls.label_semantics(data, source)
    assert source.scans == 1 and len(_cache_files(data)) == 1
    second = ls.label_semantics(data, source)
    assert source.scans == 1
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert second.embeddings.dtype == np.float32 and second.adjacency.dtype == np.float32
    uncached = ls.compute_label_semantics(data, source)
    np.testing.assert_array_equal(uncached.adjacency, first.adjacency)
    # Another proportion: another entry, another scan, another adjacency.
    data.known_proportion = 0.9
    third = ls.label_semantics(data, source)
    assert source.scans == 3 and len(_cache_files(data)) == 2
    assert not np.array_equal(third.adjacency, first.adjacency)
    assert not any(f.startswith(".tmp") for f in _cache_files(data))


def test_cache_key_changes_with_embeddings_file_and_env_root(tmp_path, monkeypatch):
    data = _data_config(tmp_path)
    source = CountingSource(_labels())
    path = tmp_path / "vectors.npy"
    np.save(path, np.ones((5, 3)))
    data.label_embeddings = str(path)
    assert ls.label_semantics(data, source).embedding_source.startswith(".npy file")
    np.save(path, np.full((5, 4), 2.0))  # new content, size and mtime
    os.utime(path, ns=(1, 1))
    result = ls.label_semantics(data, source)
    assert source.scans == 2 and result.embeddings.shape == (5, 4)
    data.cache_dir = None
    monkeypatch.setenv(ls.CACHE_ENV, str(tmp_path / "env_cache"))
    assert ls.cache_root(None) == str(tmp_path / "env_cache")
    ls.label_semantics(data, source)
    assert os.listdir(tmp_path / "env_cache" / "label_semantics")


def test_corrupt_or_foreign_cache_is_recomputed(tmp_path):
    data = _data_config(tmp_path)
    source = CountingSource(_labels())
    good = ls.label_semantics(data, source)
    (name,) = _cache_files(data)
    path = os.path.join(data.cache_dir, "label_semantics", name)
    with open(path, "wb") as f:
        f.write(b"PK\x03\x04 truncated")
    with pytest.warns(UserWarning, match="unreadable label-semantics cache"):
        again = ls.label_semantics(data, source)
    assert source.scans == 2
    np.testing.assert_array_equal(again.adjacency, good.adjacency)
    ls.label_semantics(data, source)  # rewritten: a hit again
    assert source.scans == 2
    # A file holding another key under this name is a miss, not a wrong answer.
    np.savez(path, key=np.array("{}"), embeddings=good.embeddings, adjacency=good.adjacency)
    ls.label_semantics(data, source)
    assert source.scans == 3


def test_unwritable_cache_only_warns(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    data = _data_config(tmp_path, cache_dir=str(blocker))
    with pytest.warns(UserWarning, match="Could not write"):
        result = ls.label_semantics(data, CountingSource(_labels()))
    assert result.adjacency.shape == (5, 5)


def test_random_fallback_warns_on_cache_hits_too(tmp_path, monkeypatch):
    data = _data_config(tmp_path)
    source = CountingSource(_labels(), name="voc/2007")
    for _ in range(2):
        with pytest.warns(UserWarning, match="no semantic prior"):
            result = ls.label_semantics(data, source)
    assert source.scans == 1 and result.embedding_source.startswith("random")
