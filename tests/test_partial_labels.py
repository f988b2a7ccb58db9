"""Tests for mlrpl_jax.data.partial_labels: statistics, determinism, reference parity, errors."""

import warnings

import numpy as np
import pytest

from mlrpl_jax.data import partial_labels as pl


def _full_labels(n: int = 2000, c: int = 20, pos_rate: float = 0.3, seed: int = 0) -> np.ndarray:
    """Random {0, 1} int (n, C) full labels."""
    return (np.random.default_rng(seed).random((n, c)) < pos_rate).astype(np.int64)


def _within_binomial(kept: int, total: int, p: float, sigmas: float = 5.0) -> bool:
    """Whether kept / total is within `sigmas` binomial standard deviations of p."""
    return abs(kept - p * total) <= sigmas * np.sqrt(total * p * (1 - p))


@pytest.mark.parametrize("proportion", [0.1, 0.5, 0.9])
def test_pal_keeps_proportion_of_positives_and_negatives(proportion):
    y = _full_labels()
    out = pl.partial_labels(y, "pal", proportion, seed=3, example_ids=np.arange(len(y)))
    assert out.dtype == np.int8 and out.shape == y.shape
    pos, neg = y == 1, y == 0
    # Known entries carry the true sign.
    assert np.all(out[pos] >= 0) and np.all(out[neg] <= 0)
    assert _within_binomial(int((out[pos] == 1).sum()), int(pos.sum()), proportion)
    assert _within_binomial(int((out[neg] == -1).sum()), int(neg.sum()), proportion)


def test_pal_proportion_one_is_full_labels():
    y = _full_labels(100, 5)
    out = pl.partial_labels(y, "pal", 1.0, seed=0, example_ids=np.arange(100))
    np.testing.assert_array_equal(out, 2 * y - 1)


@pytest.mark.parametrize("proportion", [0.2, 0.7])
def test_ppl_keeps_proportion_of_positives_and_no_negatives(proportion):
    y = _full_labels()
    out = pl.partial_labels(y, "ppl", proportion, seed=1, example_ids=np.arange(len(y)))
    pos = y == 1
    assert not np.any(out == -1)
    assert np.all(out[~pos] == 0)
    assert _within_binomial(int((out[pos] == 1).sum()), int(pos.sum()), proportion)


def test_ppl_positives_are_those_of_pal_and_masks_are_nested():
    y = _full_labels(500, 10)
    ids = np.arange(500)
    pal = pl.partial_labels(y, "pal", 0.4, seed=2, example_ids=ids)
    ppl = pl.partial_labels(y, "ppl", 0.4, seed=2, example_ids=ids)
    np.testing.assert_array_equal(ppl, np.where(pal == 1, 1, 0))
    more = pl.partial_labels(y, "pal", 0.8, seed=2, example_ids=ids)
    assert np.all(more[pal != 0] == pal[pal != 0])  # Raising the proportion only adds labels.


def test_spl_one_true_positive_per_image_with_positives():
    y = _full_labels(1000, 12, pos_rate=0.15)
    y[:20] = 0  # Some images without positives.
    out = pl.partial_labels(y, "spl", 0.123, seed=4, example_ids=np.arange(1000))
    has_pos = y.any(axis=1)
    assert not np.any(out == -1)
    np.testing.assert_array_equal((out == 1).sum(axis=1), has_pos.astype(int))
    assert np.all(y[out == 1] == 1)


def test_spl_choice_is_roughly_uniform_among_positives():
    n, c = 3000, 10
    y = np.zeros((n, c), dtype=np.int64)
    y[:, [1, 4, 8]] = 1  # Every image has the same three positives.
    out = pl.partial_labels(y, "spl", 1.0, seed=5, example_ids=np.arange(n))
    counts = (out == 1).sum(axis=0)[[1, 4, 8]]
    assert counts.sum() == n
    for count in counts:
        assert _within_binomial(int(count), n, 1 / 3)


def test_spl_ignores_proportion():
    y = _full_labels(50, 6)
    ids = np.arange(50)
    a = pl.partial_labels(y, "spl", 0.1, seed=0, example_ids=ids)
    b = pl.partial_labels(y, "spl", None, seed=0, example_ids=ids)
    np.testing.assert_array_equal(a, b)


def test_fal_is_full_labels_in_plus_minus_one():
    y = _full_labels(300, 7)
    out = pl.partial_labels(y, "fal", None, seed=0, example_ids=np.arange(300))
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, 2 * y - 1)


def test_plus_minus_one_and_bool_full_labels_are_accepted():
    y = _full_labels(200, 8)
    ids = np.arange(200)
    ref = pl.partial_labels(y, "pal", 0.5, seed=0, example_ids=ids)
    np.testing.assert_array_equal(pl.partial_labels(2 * y - 1, "pal", 0.5, 0, ids), ref)
    np.testing.assert_array_equal(pl.partial_labels(y.astype(bool), "pal", 0.5, 0, ids), ref)
    np.testing.assert_array_equal(pl.partial_labels(y.astype(np.float32), "pal", 0.5, 0, ids), ref)


@pytest.mark.parametrize("setting", ["pal", "ppl", "spl"])
def test_hash_mode_is_deterministic_and_row_order_independent(setting):
    y = _full_labels(400, 9)
    ids = np.arange(400) * 7 + 1000  # Arbitrary, non-contiguous ids.
    out = pl.partial_labels(y, setting, 0.5, seed=11, example_ids=ids)
    np.testing.assert_array_equal(out, pl.partial_labels(y, setting, 0.5, 11, ids))
    perm = np.random.default_rng(0).permutation(400)[:150]  # Shuffled subset.
    sub = pl.partial_labels(y[perm], setting, 0.5, seed=11, example_ids=ids[perm])
    np.testing.assert_array_equal(sub, out[perm])
    single = pl.partial_labels(y[perm[:1]], setting, 0.5, seed=11, example_ids=ids[perm[:1]])
    np.testing.assert_array_equal(single, out[perm[:1]])


@pytest.mark.parametrize("setting", ["pal", "ppl", "spl"])
def test_different_seed_gives_different_labels(setting):
    y = _full_labels(400, 9)
    ids = np.arange(400)
    a = pl.partial_labels(y, setting, 0.5, seed=0, example_ids=ids)
    b = pl.partial_labels(y, setting, 0.5, seed=1, example_ids=ids)
    assert np.mean(a != b) > 0.05


def test_hash_mask_independent_of_labels_and_across_classes():
    # The keep decision depends on (seed, id, class) only; kept fractions per class are all ~p.
    n, c = 4000, 6
    ones = np.ones((n, c), dtype=np.int64)
    out = pl.partial_labels(ones, "pal", 0.5, seed=9, example_ids=np.arange(n))
    zeros_out = pl.partial_labels(0 * ones, "pal", 0.5, seed=9, example_ids=np.arange(n))
    np.testing.assert_array_equal(out != 0, zeros_out != 0)
    for count in (out == 1).sum(axis=0):
        assert _within_binomial(int(count), n, 0.5)
    both = ((out[:, 0] == 1) & (out[:, 1] == 1)).sum()  # Pairwise independence: ~p^2.
    assert _within_binomial(int(both), n, 0.25)


def _reference_change_label_proportion(labels_pm1: np.ndarray, prob: float) -> np.ndarray:
    """Independent transcription of the reference: global seed 0, U < prob keeps, else 0."""
    state = np.random.get_state()
    try:
        np.random.seed(0)
        uniform = np.random.random(labels_pm1.shape)
    finally:
        np.random.set_state(state)
    return np.where(uniform < prob, labels_pm1, 0)


@pytest.mark.parametrize("proportion", [0.1, 0.3, 0.5, 0.9])
def test_reference_mode_matches_reference_procedure(proportion):
    y = _full_labels(501, 20)
    want = _reference_change_label_proportion(2 * y - 1, proportion)
    ids = np.arange(501)
    got = pl.partial_labels(y, "pal", proportion, seed=0, example_ids=ids, mode="reference")
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, want)
    mask = pl.reference_keep_mask(501, 20, proportion)
    np.testing.assert_array_equal(mask, want != 0)
    np.testing.assert_array_equal(pl.apply_keep_mask(y, mask), want)


def test_reference_mode_subset_uses_rows_of_whole_split():
    y = _full_labels(300, 5)
    want = _reference_change_label_proportion(2 * y - 1, 0.5)
    ids = np.array([299, 3, 150, 0])
    got = pl.partial_labels(y[ids], "pal", 0.5, 0, ids, mode="reference", num_examples=300)
    np.testing.assert_array_equal(got, want[ids])


def test_reference_mode_seed_num_examples_edges_and_the_first_id_out_of_range():
    """A subset's mask is the whole split's mask of *its* seed; N = 1 is accepted and N = 0 refused
    as num_examples; an id equal to N is out of range, and the message names the first such id."""
    y = _full_labels(300, 5)
    ids = np.array([299, 3, 150, 0, 41])
    got = pl.partial_labels(y[ids], "pal", 0.5, 5, ids, mode="reference", num_examples=300)
    want = pl.apply_keep_mask(y[ids], pl.reference_keep_mask(300, 5, 0.5, seed=5)[ids])
    np.testing.assert_array_equal(got, want)
    seed0 = pl.partial_labels(y[ids], "pal", 0.5, 0, ids, mode="reference", num_examples=300)
    assert not np.array_equal(got, seed0)
    one = pl.partial_labels(y[:1], "pal", 1.0, 0, [0], mode="reference", num_examples=1)
    np.testing.assert_array_equal(one, 2 * y[:1] - 1)
    for n in (0, 2**63):
        with pytest.raises(ValueError, match=r"^num_examples must be in \[1, 9223372036854775808\)"):
            pl.partial_labels(y[:3], "pal", 0.5, 0, [0, 1, 2], mode="reference", num_examples=n)
    with pytest.raises(ValueError, match=r"^example_ids\[1\] = 3 is out of range for num_examples=3;"):
        pl.partial_labels(y[:3], "pal", 0.5, 0, [0, 3, 1], mode="reference", num_examples=3)


def test_reference_mode_fal_and_unsupported_settings():
    y = _full_labels(20, 4)
    ids = np.arange(20)
    out = pl.partial_labels(y, "fal", None, 0, ids, mode="reference")
    np.testing.assert_array_equal(out, 2 * y - 1)
    for setting in ("ppl", "spl"):
        with pytest.raises(ValueError, match=f"only has setting 'pal'.*got setting '{setting}'"):
            pl.partial_labels(y, setting, 0.5, 0, ids, mode="reference")
    with pytest.raises(ValueError, match=r"arange\(n\)"):
        pl.partial_labels(y, "pal", 0.5, 0, ids[::-1], mode="reference")
    with pytest.raises(ValueError, match=r"example_ids\[0\] = 20 is out of range"):
        pl.partial_labels(y[:1], "pal", 0.5, 0, [20], mode="reference", num_examples=20)
    with pytest.raises(ValueError, match=r"seed \(mode 'reference'\) must be in \[0, 4294967296\)"):
        pl.partial_labels(y, "pal", 0.5, 2**32, ids, mode="reference")


@pytest.mark.parametrize("setting", ["pal", "ppl"])
@pytest.mark.parametrize("proportion", [0.0, -0.5, 1.5, float("nan")])
def test_bad_proportion_raises(setting, proportion):
    y = _full_labels(10, 3)
    with pytest.raises(ValueError, match=rf"proportion must be in \(0, 1\].*'{setting}'.*got"):
        pl.partial_labels(y, setting, proportion, 0, np.arange(10))


def test_bad_arguments_raise():
    y = _full_labels(10, 3)
    ids = np.arange(10)
    with pytest.raises(ValueError, match=r"setting must be one of .*'pl'"):
        pl.partial_labels(y, "pl", 0.5, 0, ids)
    with pytest.raises(ValueError, match=r"mode must be one of"):
        pl.partial_labels(y, "pal", 0.5, 0, ids, mode="torch")
    with pytest.raises(TypeError, match=r"proportion must be a number.*got '0.5'"):
        pl.partial_labels(y, "pal", "0.5", 0, ids)
    with pytest.raises(TypeError, match=r"seed \(mode 'hash'\) must be an integer; got 1.5"):
        pl.partial_labels(y, "pal", 0.5, 1.5, ids)
    with pytest.raises(ValueError, match=r"2-D"):
        pl.partial_labels(y[0], "pal", 0.5, 0, ids[:1])
    with pytest.raises(ValueError, match=r"10 rows but example_ids has 9"):
        pl.partial_labels(y, "pal", 0.5, 0, ids[:9])
    with pytest.raises(ValueError, match=r"example_ids must be integers"):
        pl.partial_labels(y, "pal", 0.5, 0, ids.astype(float))
    with pytest.raises(ValueError, match=r"example_ids must be >= 0; example_ids\[2\] = -1"):
        pl.partial_labels(y, "pal", 0.5, 0, np.array([0, 1, -1, 3, 4, 5, 6, 7, 8, 9]))
    with pytest.raises(ValueError, match=r"seed \(mode 'hash'\) must be in"):
        pl.partial_labels(y, "pal", 0.5, -1, ids)
    with pytest.raises(ValueError, match=r"^num_examples is only used with mode='reference'\.$"):
        pl.partial_labels(y, "pal", 0.5, 0, ids, num_examples=10)
    with pytest.raises(ValueError, match=r"^example_ids must be 1-D \(n,\); got shape \(10, 1\)"):
        pl.partial_labels(y, "pal", 0.5, 0, ids[:, None])
    with pytest.raises(ValueError, match=r"^full_labels must be numeric or bool; got dtype <U1"):
        pl.partial_labels(np.full((10, 3), "a"), "pal", 0.5, 0, ids)
    # Hash seeds span [0, 2**64); reference seeds (RandomState's) [0, 2**32).
    assert pl.partial_labels(y, "pal", 0.5, 2**64 - 1, ids).shape == y.shape
    with pytest.raises(ValueError, match=r"^seed \(mode 'hash'\) must be in \[0, "
                       r"18446744073709551616\); got 18446744073709551616"):  # fmt: skip
        pl.partial_labels(y, "pal", 0.5, 2**64, ids)


def test_bad_label_value_names_row_class_value_and_example_id():
    y = _full_labels(10, 3)
    y[4, 2] = 2
    y[6, 0] = 5
    with pytest.raises(ValueError, match=r"full_labels\[4, 2\] = 2 \(example id 104\) is not a "
                       r"valid label; full labels must be in \{0, 1\} or \{-1, 1\}\."):  # fmt: skip
        pl.partial_labels(y, "pal", 0.5, 0, np.arange(10) + 100)


def test_mixed_minus_one_and_zero_is_rejected():
    y = 2 * _full_labels(10, 3) - 1
    y[3, 1] = 0
    with pytest.raises(ValueError, match=r"mixes -1 .* and 0 \(e.g. \[3, 1\], example id 3\)"):
        pl.partial_labels(y, "fal", None, 0, np.arange(10))
    y = np.array([[1, 1, -1], [-1, 0, 1]])  # the first -1 and the first 0, in row-major order
    with pytest.raises(ValueError, match=r"mixes -1 \(e.g. \[0, 2\]\) and 0 \(e.g. \[1, 1\], "
                       r"example id 1\); full labels must be in"):  # fmt: skip
        pl.partial_labels(y, "fal", None, 0, np.arange(2))


def test_check_partial_labels():
    labels = np.array([[1, 0, -1], [0, 0, 1]], dtype=np.float64)
    out = pl.check_partial_labels(labels, source="mem")
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, labels)
    labels[1, 2] = 0.5
    with pytest.raises(ValueError, match=r"mem: .*0\.5 at \(row 1, col 2\).*-1 .*0 .*1"):
        pl.check_partial_labels(labels, source="mem")
    with pytest.raises(ValueError, match=r"mem: .*2-D"):
        pl.check_partial_labels(np.zeros(3), source="mem")


def test_load_text_and_npy(tmp_path):
    labels = np.array([[1, 0, -1, 0], [-1, -1, 1, 0], [0, 0, 0, 1]], dtype=np.int8)
    text = tmp_path / "train.txt"
    text.write_text("\n".join(",".join(str(v) for v in row) for row in labels) + "\n")
    np.testing.assert_array_equal(pl.load_partial_labels_file(text, 3, 4), labels)
    spaced = tmp_path / "spaced.txt"
    np.savetxt(spaced, labels.astype(np.float64))  # Whitespace and "-1.000000000000000000e+00".
    np.testing.assert_array_equal(pl.load_partial_labels_file(spaced, 3, 4), labels)
    npy = tmp_path / "train.npy"
    np.save(npy, labels)
    out = pl.load_partial_labels_file(str(npy), 3, 4)
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, labels)


def test_load_file_errors_name_file_index_and_shape(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("1,0,-1\n0,2,1\n")
    with pytest.raises(ValueError, match=r"bad\.txt: invalid partial label 2 at \(row 1, col 1\)"):
        pl.load_partial_labels_file(bad, 2, 3)
    npy = tmp_path / "bad.npy"
    np.save(npy, np.array([[0, 1], [2, 0]]))
    with pytest.raises(ValueError, match=r"bad\.npy: invalid partial label 2 at \(row 1, col 0\)"):
        pl.load_partial_labels_file(npy, 2, 2)
    good = tmp_path / "good.txt"
    good.write_text("1,0,-1\n0,1,1\n")
    with pytest.raises(ValueError, match=r"good\.txt: expected .*\(3, 3\); got \(2, 3\)"):
        pl.load_partial_labels_file(good, 3, 3)
    ragged = tmp_path / "ragged.txt"
    ragged.write_text("1,0,-1\n0,1\n")
    with pytest.raises(ValueError, match=r"ragged\.txt: could not parse"):
        pl.load_partial_labels_file(ragged, 2, 3)


def test_reference_keep_mask_bounds_and_the_argument_each_error_names():
    """The accepted ranges' edges (N, C >= 1, seed < 2**32) and each refusal naming its argument."""
    assert pl.reference_keep_mask(1, 1, 1.0, seed=2**32 - 1).shape == (1, 1)
    big = pl.reference_keep_mask(2, 3, 0.5, seed=np.uint32(7))
    np.testing.assert_array_equal(big, np.random.RandomState(7).random_sample((2, 3)) < 0.5)
    cases = [
        ((0, 3, 0.5), {}, r"^num_examples must be in \[1, 9223372036854775808\)"),
        ((2, 0, 0.5), {}, r"^num_classes must be in \[1, 9223372036854775808\)"),
        ((2, 3, 0.0), {}, r"for setting 'pal'"),
        ((2, 3, 0.5), {"seed": 2**32},
         r"^seed \(mode 'reference', a RandomState seed\) must be in \[0, 4294967296\)"),
    ]  # fmt: skip
    for args, kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            pl.reference_keep_mask(*args, **kwargs)
    with pytest.raises(TypeError, match="^num_classes must be an integer"):
        pl.reference_keep_mask(2, 3.0, 0.5)


def test_check_partial_labels_accepts_floats_and_names_the_source_of_bad_ones():
    out = pl.check_partial_labels(np.array([[1.0, -1.0], [0.0, 1.0]], np.float32), source="f.txt")
    assert out.dtype == np.int8 and out.tolist() == [[1, -1], [0, 1]]
    with pytest.raises(
        ValueError, match=r"^f.txt: partial labels must be numeric .* got dtype <U1"
    ):
        pl.check_partial_labels(np.array([["1", "0"]]), source="f.txt")


def test_list_file_lines_blank_lines_and_order_by_image_name(tmp_path):
    """A protocol list file: several indices per line, a blank line in the middle, rows mapped by
    file name onto our order (a name may contain a comma), listed images we lack skipped; int8."""
    path = tmp_path / "coco_train_singlelabel.txt"
    path.write_text("train/a.jpg,2\n\nval/c.jpg,0 3\nb.jpg,1 2\nextra.jpg,0\nd,1.jpg,3\n")
    labels = pl.load_list_file(path, ["b.jpg", "c.jpg", "a.png", "d,1.jpg"], num_classes=4)
    assert labels.dtype == np.int8
    np.testing.assert_array_equal(labels,
                                  [[0, 1, 1, 0], [1, 0, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1]])  # fmt: skip
    via_loader = pl.load_partial_labels_file(path, 4, 4,
                                             image_names=lambda: ["b", "c", "a", "d,1"])  # fmt: skip
    np.testing.assert_array_equal(via_loader, labels)


def test_list_file_errors_name_the_file_line_and_fix(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("a.jpg,1\n\nb.jpg,x\n")  # the bad line is line 3 (the blank one counts)
    with pytest.raises(ValueError, match=r"list\.txt:3: expected '<image>,<class index> \.\.\.', "
                       r"got 'b\.jpg,x'"):  # fmt: skip
        pl.load_list_file(path, ["a", "b"], 3)
    for line in ("b.jpg 1", ",1"):  # no comma; no image name
        path.write_text(f"a.jpg,1\n{line}\n")
        with pytest.raises(ValueError, match=rf"list\.txt:2: expected .*got '{line}'"):
            pl.load_list_file(path, ["a", "b"], 3)
    path.write_text("a.jpg,1\nb.jpg,0 3\n")
    with pytest.raises(ValueError, match=r"list\.txt:2: class index 3 of 'b\.jpg' is outside "
                       r"\[0, 3\)"):  # fmt: skip
        pl.load_list_file(path, ["a", "b"], 3)
    path.write_text("a.jpg,1\n")
    with pytest.raises(ValueError, match=r"list\.txt: 1 of our 2 images are not listed, e\.g\. "
                       r"\['b'\]; the protocols' files hold only images with a positive label: "
                       r"set config\.data\.drop_unlabeled=True"):  # fmt: skip
        pl.load_partial_labels_file(path, 2, 3, image_names=lambda: ["a", "b"])
    with pytest.raises(ValueError, match=r"list\.txt is an image list file; it needs the "
                       r"examples' image names"):  # fmt: skip
        pl.load_partial_labels_file(path, 1, 3)


def _cole_files(tmp_path, labels, names, prefix="formatted_train"):
    np.save(tmp_path / f"{prefix}_labels_obs.npy", np.asarray(labels))
    if names is not None:
        np.save(tmp_path / f"{prefix}_images.npy", np.asarray(names))
    return tmp_path / f"{prefix}_labels_obs.npy"


def test_cole_files_map_by_image_name_and_their_errors_name_the_files(tmp_path):
    observed = np.array([[1, 0, 0], [0, 0, 1], [-1, 1, 0]], np.int8)
    path = _cole_files(tmp_path, observed, ["x/img0.jpg", "x/img1.jpg", "x/img2.jpg"])
    labels, names = pl.load_cole_files(path)
    np.testing.assert_array_equal(labels, observed)
    assert names == ["x/img0.jpg", "x/img1.jpg", "x/img2.jpg"]
    ours = lambda: ["img2.jpg", "img0.jpg"]
    np.testing.assert_array_equal(pl.load_partial_labels_file(path, 2, 3, image_names=ours),
                                  observed[[2, 0]])  # fmt: skip
    with pytest.raises(ValueError, match=r"formatted_train_labels_obs\.npy is named by image; it "
                       r"needs the examples' image names"):  # fmt: skip
        pl.load_partial_labels_file(path, 2, 3)
    with pytest.raises(ValueError, match=r"formatted_train_labels_obs\.npy: 1 of our 3 images are "
                       r"not listed, e\.g\. \['img9'\]; the protocols' files hold only"):  # fmt: skip
        pl.load_partial_labels_file(path, 3, 3, image_names=lambda: ["img0", "img1", "img9"])
    other = tmp_path / "labels.npy"
    np.save(other, observed)
    with pytest.raises(ValueError, match=r"labels\.npy is not a Cole et al\. "
                       r"'\*_labels_obs\.npy' file"):  # fmt: skip
        pl.load_cole_files(other)
    bad = _cole_files(tmp_path, [[1, 2]], ["a"], prefix="bad")
    with pytest.raises(ValueError, match=r"bad_labels_obs\.npy: invalid partial label 2"):
        pl.load_cole_files(bad)
    short = _cole_files(tmp_path, [[1, 0]], ["a", "b"], prefix="short")
    with pytest.raises(ValueError, match=r"short_labels_obs\.npy: \(1, 2\) labels for the 2 "
                       r"images of .*short_images\.npy"):  # fmt: skip
        pl.load_cole_files(short)
    lonely = _cole_files(tmp_path, [[1, 0]], None, prefix="lonely")
    with pytest.raises(FileNotFoundError, match=r"lonely_labels_obs\.npy is a Cole et al\. "
                       r"observed-label file; its rows are named by .*lonely_images\.npy, which "
                       r"does not exist"):  # fmt: skip
        pl.load_cole_files(lonely)


def test_npy_files_with_pickled_objects_are_refused(tmp_path):
    """allow_pickle=False: a label file cannot run code when it is loaded."""
    path = tmp_path / "objects.npy"
    np.save(path, np.array([[1, 0], [0, {"a": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        pl.load_partial_labels_file(path, 2, 2)


def test_text_files_of_one_row_empty_or_all_unknown(tmp_path, recwarn):
    """One row is an (1, C) matrix, not a vector; an empty or comment-only file is a shape error
    (not an image list, and without numpy's empty-input warning); all-unknown labels are refused."""
    one = tmp_path / "one.txt"
    one.write_text("1, -1, 0\n")
    np.testing.assert_array_equal(pl.load_partial_labels_file(one, 1, 3), [[1, -1, 0]])
    for text in ("", "# only a comment\n\n"):
        empty = tmp_path / "empty.txt"
        empty.write_text(text)
        assert not pl._is_list_file(str(empty))
        with pytest.raises(ValueError, match=r"empty\.txt: expected partial labels of shape "
                           r"\(N, C\) = \(2, 3\)"):  # fmt: skip
            pl.load_partial_labels_file(empty, 2, 3)
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]
    zeros = tmp_path / "zeros.txt"
    zeros.write_text("0 0\n0 0\n")
    with pytest.raises(ValueError, match=r"zeros\.txt: holds no known label \(every entry is 0 = "
                       r"unknown\)"):  # fmt: skip
        pl.load_partial_labels_file(zeros, 2, 2)


def test_reference_keep_mask_keeps_strictly_below_the_proportion():
    """The reference keeps (i, c) iff U[i, c] < p: a draw equal to p is dropped."""
    u = np.random.RandomState(5).random_sample((3, 4))
    mask = pl.reference_keep_mask(3, 4, float(u[1, 2]), seed=5)
    assert not mask[1, 2]
    np.testing.assert_array_equal(mask, u < u[1, 2])


def test_hash_mode_keeps_strictly_below_the_proportion():
    """Module docstring: an entry is kept iff U < proportion ("pal" and "ppl" share U): a draw
    equal to the proportion is dropped. "spl" labels one positive per image, int8, zeros elsewhere."""
    y = _full_labels(6, 5)
    y[:, 2] = 1
    ids = np.arange(10, 16)
    u = pl._hash_uniform(3, ids, 5, pl._SALT_KEEP)
    p = float(u[4, 2])
    pal = pl.partial_labels(y, "pal", p, 3, ids)
    np.testing.assert_array_equal(pal != 0, u < p)
    assert pal[4, 2] == 0
    ppl = pl.partial_labels(y, "ppl", p, 3, ids)
    np.testing.assert_array_equal(ppl, ((u < p) & (y == 1)).astype(np.int8))  # negatives unknown
    assert ppl[4, 2] == 0
    spl = pl.partial_labels(y, "spl", None, 3, ids)
    assert spl.dtype == np.int8 and (spl.sum(axis=1) == 1).all() and (spl[y == 0] == 0).all()


def _splitmix64_nth(state: int, k: int) -> int:
    """The k-th output (k >= 1) of Vigna's splitmix64.c seeded with `state`, in Python integers:
    the finaliser of state + k * 0x9E3779B97F4A7C15 (mod 2**64)."""
    mask = 2**64 - 1
    z = (state + k * 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def test_hash_masks_are_splitmix64_streams():
    """The hash mode's uniforms, exactly: the finaliser gives splitmix64.c's published outputs for
    seed 1234567; U[i, c] = the (c + 1)-th output of the stream whose state is the (i + 1)-th
    output of the stream of finalise(seed ^ salt), its top 53 bits over 2**53. No overflow
    warning (the uint64 arithmetic wraps by design)."""
    published = [6457827717110365317, 3203168211198807973, 9817491932198370423]
    assert [_splitmix64_nth(1234567, k) for k in (1, 2, 3)] == published
    states = np.array([(1234567 + k * 0x9E3779B97F4A7C15) % 2**64 for k in (1, 2, 3)], np.uint64)
    assert pl._mix64(states).tolist() == published
    seed, salt, ids, num_classes = 2**63 + 12345, pl._SALT_KEEP, np.array([0, 7, 2**40]), 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = pl._hash_uniform(seed, ids, num_classes, salt)
    seed_state = pl._mix64(np.array([seed ^ int(salt)], np.uint64)).tolist()[0]
    for i, example in enumerate(ids.tolist()):
        row_state = _splitmix64_nth(seed_state, example + 1)
        for c in range(num_classes):
            bits = _splitmix64_nth(row_state, c + 1)
            assert got[i, c] == (bits >> 11) / 2**53, (example, c)
