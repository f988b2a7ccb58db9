"""The one path layer: every file a run reads or writes goes through `etils.epath`, so a workdir,
`data.data_dir`, a labels file or a weights file may be any path epath handles (``gs://bucket/...``
on a TPU pod, as TFDS and orbax take them), and local paths behave as before.

An object store has no append and no partial write: `append_text` rewrites the object with the
new text added there (gcsfs would silently turn an append into an overwrite; tf.io.gfile rewrites
the object itself), and `atomic_write`'s rename is a copy. On the local disk writes are a
temporary file, fsync and an atomic rename, and appends are appends.
"""

import json
import os
from typing import Any

from etils import epath


def is_local(path: str | os.PathLike) -> bool:
    """Whether `path` is on the local filesystem (not a URI such as ``gs://bucket/...``)."""
    return "://" not in os.fspath(path)


def _sync(f: Any, path: epath.Path) -> None:
    """Flushes `f` and, for a local file, has the OS put it on disk (an object store commits
    an object when it is closed)."""
    f.flush()
    if is_local(path):
        os.fsync(f.fileno())


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Writes `data` to `path` via a temporary file and an atomic rename (never a half-written
    file; on an object store the rename is a copy, and each object is written whole)."""
    path = epath.Path(path)
    tmp = epath.Path(f"{path}.tmp-{os.getpid()}")
    with tmp.open("wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
        _sync(f, tmp)
    tmp.replace(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes JSON to `path` via a temporary file and an atomic rename (never a half-written file)."""
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True))


def append_text(path: str | os.PathLike, text: str, *, sync: bool = False) -> None:
    """Appends `text` to the file `path` (created if missing); `sync`: to disk before returning.
    On an object store the object is rewritten with `text` added (see the module docstring)."""
    path = epath.Path(path)
    if is_local(path):
        with path.open("a") as f:
            f.write(text)
            if sync:
                _sync(f, path)
        return
    old = path.read_text() if path.exists() else ""
    with path.open("w") as f:
        f.write(old + text)


def mtime_ns(path: str | os.PathLike) -> int:
    """The modification time of `path` in ns (local: `os.stat`, which needs no user lookup;
    elsewhere epath's stat)."""
    if is_local(path):
        return os.stat(path).st_mtime_ns
    return int(epath.Path(path).stat().mtime * 1e9)


def absolute(path: str | os.PathLike) -> str:
    """`path` made absolute when local (a URI is left as it is)."""
    path = os.fspath(path)
    return os.path.abspath(os.path.expanduser(path)) if is_local(path) else path
