"""Run directories, labels and weights on cloud storage (``gs://``), through `etils.epath`.

How it is checked offline: fsspec's in-memory filesystem is registered as the ``gs``/``gcs``
protocol, and epath is made to pick its fsspec backend for ``gs://`` (it picks tf.io.gfile when
TensorFlow is installed, as it is for the tests). The fake store keeps an object store's two
limits that matter here: no append (gcsfs turns mode 'a' into 'w' with a warning) and no
directories (mkdir does nothing; a "directory" exists while an object is under it). While a test
runs, every local file call (open, os.stat, os.replace, ...) on a path of the fake bucket fails,
so a file reached through `open`/`os.path` on the string instead of epath is caught.

Covered: `run_dir` (config.json, config_changes.jsonl), `MetricWriter` (metrics.jsonl,
events.jsonl, the repair of a partial last line, dropping the records after a resume step, the
TensorBoard events), `atomic_write_json`, the trainer's reads of metrics.jsonl and results.json,
checkpoint manifests (written, checked, damage found) and moving a checkpoint aside, labels files
(.npy, text, list, Cole et al.), reference order files, weight files (.npz, .safetensors, .pth,
CLIP) and the label-semantics files and cache. Files written to gs:// are byte-identical to the
local ones.

Not covered, as it cannot run offline: a whole training run with a gs:// workdir. orbax writes
the arrays through TensorStore's own GCS driver and asks google-cloud-storage about the bucket
(`Checkpointer` on gs:// therefore is not built here; `_move_aside` is checked on a checkpointer
whose orbax manager is replaced by its directory), TFDS reads prepared data through tf.io.gfile
and array_record, and tensorboardX writes gs:// through its own writer factory, which needs
google-cloud-storage: here a factory writing through epath takes its place, as tensorboardX's
`register_writer_factory` allows.
"""

import builtins
import importlib
import io
import json
import os
import struct
import types
from typing import ClassVar

import numpy as np
import pytest
from etils import epath
from etils.epath import backend as epath_backend
from etils.epath import gpath
from fsspec.implementations.memory import MemoryFileSystem
from fsspec.utils import stringify_path

from configs import base, tiny
from mlrpl_jax import checkpointing, errors, run_dir, trainer
from mlrpl_jax.data import label_semantics as ls
from mlrpl_jax.data import partial_labels as pl
from mlrpl_jax.data import reference_order
from mlrpl_jax.metric_writer import MetricWriter
from mlrpl_jax.models import clip_convert, pretrained
from mlrpl_jax.paths import append_text, atomic_write_json

BUCKET = "mlrpl-cloud-test"
ROOT = f"gs://{BUCKET}"


class _MemoryGCS(MemoryFileSystem):
    """fsspec's in-memory filesystem as gs://, with an object store's limits (module docstring)."""

    protocol = ("gs", "gcs")
    # fsspec's layout: one store per class, shared by its instances (cleared by the fixture).
    store: ClassVar[dict] = {}
    pseudo_dirs: ClassVar[list[str]] = [""]

    @classmethod
    def _strip_protocol(cls, path):
        path = stringify_path(path)
        for prefix in ("gs://", "gcs://"):
            path = path.removeprefix(prefix)
        return super()._strip_protocol(path)

    def _open(self, path, mode="rb", **kwargs):
        if "a" in mode or "+" in mode:
            raise ValueError(f"an object store cannot open {path} in mode {mode!r}")
        return super()._open(path, mode, **kwargs)

    def mkdir(self, path, create_parents=True, **kwargs):
        pass

    def makedirs(self, path, exist_ok=False):
        pass


_LOCAL_CALLS = {
    builtins: ("open",),
    os: ("open", "stat", "lstat", "mkdir", "makedirs", "replace", "rename", "remove", "unlink",
         "listdir", "scandir"),
}  # fmt: skip


@pytest.fixture
def gs(monkeypatch):
    """gs:// is the in-memory store; local file calls on its paths fail. Yields the store."""
    registry = importlib.import_module("fsspec.registry")._registry
    for protocol in _MemoryGCS.protocol:
        monkeypatch.setitem(registry, protocol, _MemoryGCS)
    monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)
    epath_backend.fsspec_backend._get_filesystem.cache_clear()
    _MemoryGCS.store.clear()
    _MemoryGCS.pseudo_dirs[:] = [""]

    def guarded(module, name, call):
        def check(*args, **kwargs):
            for path in args[:2]:  # the path, and the target of a rename
                if isinstance(path, (str, os.PathLike)) and BUCKET in os.fspath(path):
                    raise AssertionError(f"{module.__name__}.{name}({path!r}): not epath")
            return call(*args, **kwargs)

        return check

    for module, names in _LOCAL_CALLS.items():
        for name in names:
            monkeypatch.setattr(module, name, guarded(module, name, getattr(module, name)))
    yield _MemoryGCS.store
    epath_backend.fsspec_backend._get_filesystem.cache_clear()
    _MemoryGCS.store.clear()


def _objects(store, prefix=""):
    """The object names in the fake bucket under `prefix`."""
    root = f"/{BUCKET}/{prefix}"
    return sorted(k[len(root) :] for k in store if k.startswith(root))


def test_gs_paths_reach_the_memory_store_and_local_calls_are_caught(gs):
    path = epath.Path(f"{ROOT}/a/b.txt")
    assert isinstance(path._backend, type(epath_backend.fsspec_backend))
    path.write_text("x")
    assert _objects(gs) == ["a/b.txt"] and path.read_text() == "x"
    assert path.parent.is_dir() and not epath.Path(f"{ROOT}/empty").exists()
    with pytest.raises(AssertionError, match="not epath"):
        open(f"{ROOT}/a/b.txt")  # noqa: SIM115
    with pytest.raises(AssertionError, match="not epath"):
        os.path.exists(f"{ROOT}/a/b.txt")
    with pytest.raises(ValueError, match="mode 'ab'"):
        path.open("a")


def test_run_dir_round_trip_and_recorded_changes(gs, tmp_path):
    workdir = f"{ROOT}/run"
    with pytest.raises(errors.RunDirError, match="does not exist"):
        run_dir.check_is_run(workdir)
    config = tiny.get_config()
    run_dir.start(workdir, config, None, allow_change=False)
    run_dir.start(str(tmp_path), config, None, allow_change=False)
    saved = epath.Path(workdir) / run_dir.CONFIG_FILE
    assert saved.read_bytes() == (tmp_path / run_dir.CONFIG_FILE).read_bytes()
    run_dir.check_is_run(workdir)
    run_dir.check_same_config(workdir, config)
    assert run_dir.read_saved_config(workdir) == run_dir.config_dict(config)

    changed = tiny.get_config()
    changed.train.num_epochs = 5
    with pytest.raises(errors.RunDirError, match=r"train.num_epochs: saved 2, now 5"):
        run_dir.check_same_config(workdir, changed)
    before = saved.read_bytes()
    with pytest.raises(errors.RunDirError, match="--allow_config_change"):
        run_dir.start(workdir, changed, 4, allow_change=False)
    assert saved.read_bytes() == before and _objects(gs) == ["run/config.json"]
    run_dir.start(workdir, changed, 4, allow_change=True)
    again = tiny.get_config()
    again.train.num_epochs = 7
    run_dir.start(workdir, again, 9, allow_change=True)  # appended on a store without append
    changes = (epath.Path(workdir) / run_dir.CHANGES_FILE).read_text().splitlines()
    assert [json.loads(line)["step"] for line in changes] == [4, 9]
    assert json.loads(changes[1])["changed"] == {"train.num_epochs": {"old": 5, "new": 7}}
    assert run_dir.read_saved_config(workdir)["train"]["num_epochs"] == 7
    assert _objects(gs) == ["run/config.json", "run/config_changes.jsonl"]


class _EpathRecordWriter:
    """A tensorboardX record writer through epath: the object is rewritten whole on each flush,
    as tensorboardX's own GCS writer does."""

    def __init__(self, path):
        self.path = epath.Path(path)
        self.buffer = io.BytesIO()

    def write(self, data):
        self.buffer.write(data)

    def flush(self):
        self.path.write_bytes(self.buffer.getvalue())

    def close(self):
        self.flush()


class _EpathWriterFactory:
    def open(self, path):
        return _EpathRecordWriter(path)

    def directory_check(self, path):
        epath.Path(path).mkdir(parents=True, exist_ok=True)


def _tensorboard_scalars(path) -> list[tuple[str, int, float]]:
    """(tag, step, value) of every scalar in a TensorBoard event file."""
    from tensorboardX.proto import event_pb2

    data, at, out = epath.Path(path).read_bytes(), 0, []
    while at < len(data):
        (length,) = struct.unpack("Q", data[at : at + 8])
        event = event_pb2.Event.FromString(data[at + 12 : at + 12 + length])
        at += 12 + length + 4
        out += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return out


def _read_jsonl(path):
    return [json.loads(line) for line in epath.Path(path).read_text().splitlines()]


def test_metric_writer_repairs_drops_and_appends_on_gs(gs, monkeypatch):
    from tensorboardX import record_writer

    monkeypatch.setitem(record_writer.REGISTERED_FACTORIES, "gs", _EpathWriterFactory())
    workdir = f"{ROOT}/run"
    w = MetricWriter(workdir)
    for step in range(1, 7):
        w.write(step, {"train/loss": float(step)}, epoch=step / 2)
    w.close()
    metrics = epath.Path(workdir) / "metrics.jsonl"
    assert trainer._first_loss(metrics) == 1.0
    metrics.write_text(metrics.read_text() + '{"step": 7, "train/lo')  # a kill mid-line
    # Resumed from the checkpoint at step 4: steps 5 and 6 are replayed and written again.
    w = MetricWriter(workdir, resume_step=4)
    w.event(4, "resume")
    for step in range(5, 9):
        w.write(step, {"train/loss": 10.0 * step}, epoch=step / 2)
    w.event(8, "stop", reason="test")
    w.close()
    records = _read_jsonl(metrics)
    assert [r["step"] for r in records] == list(range(1, 9))
    assert [r["train/loss"] for r in records] == [1, 2, 3, 4, 50, 60, 70, 80]
    assert _read_jsonl(f"{workdir}/events.jsonl") == [
        {"step": 4, "event": "resume"},
        {"step": 8, "event": "stop", "reason": "test"},
    ]
    assert not [name for name in _objects(gs) if ".tmp" in name]
    # One event file per writer, named by the second it opened (the same name within a second).
    losses = [
        sorted((step, value) for tag, step, value in _tensorboard_scalars(f) if tag == "train/loss")
        for f in [f"{ROOT}/run/tensorboard/{n}" for n in _objects(gs, "run/tensorboard/")]
    ]
    assert losses[-1] == [(5, 50), (6, 60), (7, 70), (8, 80)]
    assert losses[:-1] in ([], [[(s, s) for s in range(1, 7)]])


def test_atomic_write_json_results_and_appends_match_local_bytes(gs, tmp_path):
    record = {"step": 3, "metrics": {"mAP": 81.5}, "early_stopped": {"step": 3, "reason": "x"}}
    atomic_write_json(f"{ROOT}/run/results.json", record)
    atomic_write_json(tmp_path / "results.json", record)
    remote = epath.Path(f"{ROOT}/run/results.json")
    assert remote.read_bytes() == (tmp_path / "results.json").read_bytes()
    assert trainer._early_stop_record(remote) == {"step": 3, "reason": "x"}
    atomic_write_json(remote, {"step": 4})  # replaces
    assert json.loads(remote.read_text()) == {"step": 4}
    assert _objects(gs) == ["run/results.json"]
    for path in (f"{ROOT}/run/log.jsonl", tmp_path / "log.jsonl"):
        append_text(path, "a\n")
        append_text(path, "b\n", sync=True)
    assert epath.Path(f"{ROOT}/run/log.jsonl").read_bytes() == b"a\nb\n"
    assert (tmp_path / "log.jsonl").read_bytes() == b"a\nb\n"


def _fake_checkpoint(directory) -> None:
    directory = epath.Path(directory)
    files = {
        "_CHECKPOINT_METADATA": b'{"step": 7}',
        "state/manifest.ocdbt": b"\x00" * 300,
        "state/d/0123": bytes(range(256)) * 3,
        "state/ocdbt.process_0/d/abcd": b"12345",
    }
    for name, data in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)


def test_checkpoint_manifests_and_moving_aside_on_gs(gs, tmp_path):
    step_dir = f"{ROOT}/run/checkpoints/7"
    for directory in (step_dir, tmp_path / "7"):
        _fake_checkpoint(directory)
        checkpointing.write_manifest(directory)
        assert checkpointing.check_manifest(directory) is None
    manifest = epath.Path(step_dir) / checkpointing.MANIFEST
    assert manifest.read_bytes() == (tmp_path / "7" / checkpointing.MANIFEST).read_bytes()
    assert sorted(json.loads(manifest.read_text())) == [
        "_CHECKPOINT_METADATA", "state/d/0123", "state/manifest.ocdbt",
        "state/ocdbt.process_0/d/abcd",
    ]  # fmt: skip

    damaged = epath.Path(step_dir) / "state/ocdbt.process_0/d/abcd"
    damaged.write_bytes(b"12")  # truncated
    assert checkpointing.check_manifest(step_dir) == (
        "state/ocdbt.process_0/d/abcd has 2 bytes, 5 when written"
    )
    damaged.write_bytes(b"12346")
    assert "changed since it was written" in checkpointing.check_manifest(step_dir)
    damaged.unlink()
    assert checkpointing.check_manifest(step_dir) == "state/ocdbt.process_0/d/abcd is missing"
    manifest.write_text("{not json")
    assert "is damaged" in checkpointing.check_manifest(step_dir)

    # The orbax manager cannot be built offline on gs:// (module docstring): only its directory.
    assert checkpointing._workdir_path(f"{ROOT}/run") == epath.Path(f"{ROOT}/run")
    assert checkpointing._workdir_path("run") == epath.Path(os.path.abspath("run"))
    ckpt = checkpointing.Checkpointer.__new__(checkpointing.Checkpointer)
    ckpt.workdir = f"{ROOT}/run"
    ckpt.manager = types.SimpleNamespace(directory=epath.Path(f"{ROOT}/run/checkpoints"))
    ckpt._move_aside(7, RuntimeError("test"))
    moved = _objects(gs, "run/")
    assert not [n for n in moved if n.startswith("checkpoints/")]
    assert len({n.split("/")[1] for n in moved}) == 1 and all(
        n.startswith("damaged/checkpoint_7_") for n in moved
    )
    assert len(moved) == 4  # the manifest and the three files left


def test_labels_and_order_files_on_gs(gs):
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 2, size=(6, 4)).astype(np.int8)
    labels[0, 0] = 1
    buffer = io.BytesIO()
    np.save(buffer, labels)
    epath.Path(f"{ROOT}/labels.npy").write_bytes(buffer.getvalue())
    np.testing.assert_array_equal(pl.load_partial_labels_file(f"{ROOT}/labels.npy", 6, 4), labels)
    text = "# partial labels\n" + "\n".join(",".join(map(str, row)) for row in labels) + "\n"
    epath.Path(f"{ROOT}/labels.txt").write_text(text)
    np.testing.assert_array_equal(pl.load_partial_labels_file(f"{ROOT}/labels.txt", 6, 4), labels)
    with pytest.raises(errors.MissingFileError, match=f"{ROOT}/nope.npy does not exist"):
        pl.load_partial_labels_file(f"{ROOT}/nope.npy", 6, 4)

    names = [f"img_{i}.jpg" for i in range(3)]
    epath.Path(f"{ROOT}/list.txt").write_text("dir/img_2.jpg,1 3\ndir/img_0.jpg,0\nimg_1.jpg,2\n")
    listed = pl.load_partial_labels_file(f"{ROOT}/list.txt", 3, 4, lambda: names)
    np.testing.assert_array_equal(listed, [[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 1]])

    cole = f"{ROOT}/formatted_train_labels_obs.npy"
    with pytest.raises(errors.MissingFileError, match="formatted_train_images.npy"):
        pl.load_cole_files(cole)
    for path, array in ((cole, labels[:3]), (f"{ROOT}/formatted_train_images.npy", names[::-1])):
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(array))
        epath.Path(path).write_bytes(buffer.getvalue())
    read = pl.load_partial_labels_file(cole, 3, 4, lambda: names)
    np.testing.assert_array_equal(read, labels[:3][::-1])

    epath.Path(f"{ROOT}/trainval.txt").write_text("000005\n000007 1\n")
    assert reference_order.read_order_file(f"{ROOT}/trainval.txt") == ["000005", "000007"]
    epath.Path(f"{ROOT}/ann.json").write_text(json.dumps({"images": [{"file_name": "a.jpg"}]}))
    assert reference_order.read_order_file(f"{ROOT}/ann.json") == ["a.jpg"]
    with pytest.raises(errors.MissingFileError, match="reference_order_file"):
        reference_order.read_order_file(f"{ROOT}/missing.txt")


def test_weight_files_on_gs(gs):
    import safetensors.numpy
    import torch

    rng = np.random.default_rng(0)
    state = {"conv1.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
             "bn1.running_mean": np.arange(4, dtype=np.float32)}  # fmt: skip
    pretrained.save_npz(f"{ROOT}/w/r.npz", state)
    epath.Path(f"{ROOT}/w/r.safetensors").write_bytes(safetensors.numpy.save(state))
    buffer = io.BytesIO()
    torch.save({"state_dict": {f"module.{k}": torch.from_numpy(v) for k, v in state.items()}},
               buffer)  # fmt: skip
    epath.Path(f"{ROOT}/w/r.pth").write_bytes(buffer.getvalue())
    for name in ("r.npz", "r.safetensors", "r.pth"):
        read = pretrained.read_state_dict(f"{ROOT}/w/{name}")
        assert read.keys() == state.keys(), name
        for key, value in state.items():
            np.testing.assert_array_equal(read[key], value)
    assert _objects(gs, "w/") == ["r.npz", "r.pth", "r.safetensors"]  # no temporary file left
    clip_state = clip_convert.read_checkpoint(f"{ROOT}/w/r.pth")
    np.testing.assert_array_equal(clip_state["conv1.weight"], state["conv1.weight"])
    with pytest.raises(errors.MissingFileError, match=f"{ROOT}/w/none.npz"):
        pretrained.read_state_dict(f"{ROOT}/w/none.npz")
    with pytest.raises(errors.MissingFileError, match="CLIP checkpoint not found"):
        clip_convert.read_checkpoint(f"{ROOT}/w/none.pt")


class _Source:
    """The parts of a `Source` that label_semantics reads."""

    name, split, num_classes = "voc/2007", "train", 4
    class_names = ("dog", "cat", "cow", "sheep")

    def __len__(self):
        return 8

    def labels_matrix(self):
        return (np.random.default_rng(0).random((8, 4)) < 0.5).astype(np.uint8)

    def image_names(self):
        return [f"{i}.jpg" for i in range(8)]


def test_label_semantics_files_and_cache_on_gs(gs):
    labels = np.ones((8, 4), np.int8)
    labels[::2, 1] = -1
    for name, array in (("labels.npy", labels), ("vectors.npy", np.eye(4, 3))):
        buffer = io.BytesIO()
        np.save(buffer, array)
        epath.Path(f"{ROOT}/{name}").write_bytes(buffer.getvalue())
    epath.Path(f"{ROOT}/glove.txt").write_text("dog 1 2\ncat 3 4\ncow 5 6\nsheep 7 8\n")
    data = base.get_config().data
    data.update(name="voc/2007", cache_dir=f"{ROOT}/cache", partial_labels_file=f"{ROOT}/labels.npy",
                label_embeddings=f"{ROOT}/vectors.npy")  # fmt: skip
    key = ls.cache_key(data, _Source())
    assert key["partial_labels_file"]["path"] == f"{ROOT}/labels.npy"
    assert key["label_embeddings"]["path"] == f"{ROOT}/vectors.npy"
    first = ls.label_semantics(data, _Source())
    assert first.embedding_source == f".npy file {ROOT}/vectors.npy"
    (cached,) = _objects(gs, "cache/label_semantics/")
    assert cached.endswith(".npz") and not cached.startswith(".tmp")
    second = ls.label_semantics(data, _Source())
    np.testing.assert_array_equal(second.adjacency, first.adjacency)
    np.testing.assert_array_equal(second.embeddings, np.eye(4, 3, dtype=np.float32))
    glove = ls.load_label_embeddings(f"{ROOT}/glove.txt", ["cow", "dog"])
    np.testing.assert_array_equal(glove, [[5, 6], [1, 2]])


def test_report_reads_run_directories_on_gs(gs, capsys):
    from mlrpl_jax import report

    for seed, map_ in ((0, 50.0), (1, 54.0)):
        run = epath.Path(f"{ROOT}/sweep/plain_s{seed}")
        config = {"method": "plain", "seed": seed,
                  "data": {"name": "synthetic_scenes", "known_proportion": 0.5}}  # fmt: skip
        (run / "config.json").write_text(json.dumps(config))
        (run / "metrics.jsonl").write_text(json.dumps({"step": 2, "train/loss": 0.5}) + "\n")
        (run / "results.json").write_text(json.dumps({"metrics": {"mAP": map_}, "epoch": 1.0}))
    epath.Path(f"{ROOT}/sweep/unfinished/config.json").write_text(json.dumps(config))
    found = report.run_dirs(f"{ROOT}/sweep")
    assert found == [f"{ROOT}/sweep/plain_s0", f"{ROOT}/sweep/plain_s1", f"{ROOT}/sweep/unfinished"]
    runs = report.load_runs([f"{ROOT}/sweep"])
    assert [(r.path, r.final["mAP"], len(r.records)) for r in runs] == [
        (f"{ROOT}/sweep/plain_s0", 50.0, 1), (f"{ROOT}/sweep/plain_s1", 54.0, 1),
    ]  # fmt: skip
    report.report([f"{ROOT}/sweep"], out=None)
    assert "| plain | 52.0 +- 2.8 |" in capsys.readouterr().out
    with pytest.raises(errors.MissingFileError, match=f"{ROOT}/none does not exist"):
        report.run_dirs(f"{ROOT}/none")


def test_label_index_of_a_prepared_dataset_on_gs(gs):
    """A TFDS dataset prepared in a bucket: its label index is written there and read back (no
    rescan), keyed by dataset_info.json's time; `open_images.is_prepared` looks there too."""
    from mlrpl_jax.data import sources
    from mlrpl_jax.data.tfds_builders import open_images

    prepared = epath.Path(f"{ROOT}/tfds/voc/2007/5.0.0")
    (prepared / "dataset_info.json").write_text("{}")
    builder = types.SimpleNamespace(data_dir=os.fspath(prepared))
    index_args = sources._index_of(builder)
    assert index_args["index_dir"] == os.fspath(prepared)
    assert index_args["fingerprint"]["info_sha256"]  # the fake store reports no time
    records = [{"labels": np.array([i % 3]), "file": f"img{i}.jpg"} for i in range(7)]
    reads = []

    class Counting(list):
        def __getitem__(self, i):
            reads.append(i)
            return list.__getitem__(self, i)

    def labels_fn(record, num_classes):
        y = np.zeros(num_classes, np.uint8)
        y[record["labels"]] = 1
        return y

    def source():
        return sources.Source(name="voc/2007", split="train", data=Counting(records),
                              class_names=("a", "b", "c"), labels_fn=labels_fn,
                              filename_key="file", **index_args)  # fmt: skip

    first = source().labels_matrix()
    assert reads and any(k.startswith(f"/{BUCKET}/tfds/voc/2007/5.0.0/mlrpl_index/") for k in gs)
    reads.clear()
    second = source()
    np.testing.assert_array_equal(second.labels_matrix(), first)
    assert reads == [] and second.image_names()[3] == "img3.jpg"  # read from the index
    assert not open_images.is_prepared("boxable", f"{ROOT}/elsewhere")
