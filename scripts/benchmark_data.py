"""Data benchmark on fake raw files: preparation, label-matrix load time, train-loader images/s.

  python scripts/benchmark_data.py                     # 2,000 fake images of 500x375 per builder
  python scripts/benchmark_data.py --images 10000 --workdir /tmp/bench_data
  python scripts/benchmark_data.py --memory 10000 100000   # Open Images preparation: flat memory
  python scripts/benchmark_data.py --augment --size 640 480   # the papers' augmentation, per core

For each manual-directory builder (`cub`: CUB-200-2011 attributes, `nus_wide`: NUS-WIDE,
`open_images/boxable`: Open Images' streaming writer, 600 classes) the script writes `--images` fake
JPEGs of `--size` (about the datasets' typical size) with random labels in the real raw layout,
then measures:

1. preparation (`scripts/prepare_data.py`'s route): images/s;
2. `Source.labels_matrix()` in a fresh process-like state: the one-off scan of every record (what
   every run paid before the label index) against reading the label index;
3. the train loader of `configs/imbalance_<dataset>.py` (448-px resize + flip, `--workers` grain
   workers; decoding the JPEGs dominates): images/s over `--batches` batches of 32 after one.

With `--augment`, only the papers' train augmentation at paper shapes (`augment_benchmark`): the
host path against the device path's host half, with 0 / 1 / 2 worker processes and with read
threads.
"""

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _jpeg(path, rng, size):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    w, h = size
    # A smooth image with noise compresses like a photograph (~40-80 KB at 500x375).
    base = rng.integers(0, 256, (h // 25 + 1, w // 25 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(base).resize((w, h), Image.BICUBIC)
    noisy = np.clip(np.asarray(img, np.int16) + rng.integers(-20, 21, (h, w, 3)), 0, 255)
    Image.fromarray(noisy.astype(np.uint8)).save(path, format="JPEG", quality=90)


def fake_cub(root, n, size, rng):
    cub = os.path.join(root, "CUB_200_2011")
    os.makedirs(os.path.join(cub, "attributes"), exist_ok=True)
    with open(os.path.join(root, "attributes.txt"), "w") as f:
        f.writelines(f"{a} has_part_{a % 28}::value_{a}\n" for a in range(1, 313))
    rows = []
    with (
        open(os.path.join(cub, "images.txt"), "w") as fi,
        open(os.path.join(cub, "train_test_split.txt"), "w") as fs,
    ):
        for i in range(1, n + 1):
            path = f"{i % 200:03d}.Species/img_{i:06d}.jpg"
            _jpeg(os.path.join(cub, "images", path), rng, size)
            fi.write(f"{i} {path}\n")
            fs.write(f"{i} {int(i % 2 == 0)}\n")
            present = rng.random(312) < 0.1
            rows.extend(f"{i} {a + 1} {int(p)} 3 1.0\n" for a, p in enumerate(present))
    with open(os.path.join(cub, "attributes", "image_attribute_labels.txt"), "w") as f:
        f.writelines(rows)


def fake_nus(root, n, size, rng):
    concepts = [f"concept{c}" for c in range(81)]
    os.makedirs(os.path.join(root, "ImageList"), exist_ok=True)
    os.makedirs(os.path.join(root, "Groundtruth", "TrainTestLabels"), exist_ok=True)
    with open(os.path.join(root, "Concepts81.txt"), "w") as f:
        f.writelines(f"{c}\n" for c in concepts)
    for tag, m in (("Train", n // 2), ("Test", n - n // 2)):
        paths = [f"folder{i % 50}\\{i:04d}_{tag}{i}.jpg" for i in range(m)]
        for p in paths:
            _jpeg(os.path.join(root, "Flickr", *p.split("\\")), rng, size)
        with open(os.path.join(root, "ImageList", f"{tag}Imagelist.txt"), "w") as f:
            f.writelines(f"{p}\n" for p in paths)
        labels = rng.random((m, 81)) < 0.03
        for c, concept in enumerate(concepts):
            name = os.path.join(
                root, "Groundtruth", "TrainTestLabels", f"Labels_{concept}_{tag}.txt"
            )
            with open(name, "w") as f:
                f.writelines(f"{int(v)}\n" for v in labels[:, c])


def _write_openimages(root, sizes, rng, put_image):
    """Open Images V6's files in ``root``: 600 boxable classes, ``sizes[split]`` images per split,
    5 verified labels per image (3 present, 2 absent; paper 002's Table II has 2.4 and 2.6);
    ``put_image(path, index)`` writes each image."""
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "oidv6-class-descriptions-boxable.csv"), "w") as f:
        f.writelines(f"/m/0fake{c:03d},Class {c}\n" for c in range(600))
    files = {"train": "oidv6-train-annotations-human-imagelabels.csv",
             "validation": "validation-annotations-human-imagelabels.csv",
             "test": "test-annotations-human-imagelabels.csv"}  # fmt: skip
    for split, m in sizes.items():
        os.makedirs(os.path.join(root, split), exist_ok=True)
        with open(os.path.join(root, files[split]), "w") as f:
            f.write("ImageID,Source,LabelName,Confidence\n")
            for i in range(m):
                image_id = f"{i:016x}"
                put_image(os.path.join(root, split, f"{image_id}.jpg"), i)
                classes = np.sort(rng.choice(600, size=5, replace=False))
                f.writelines(f"{image_id},verification,/m/0fake{c:03d},{int(k % 2 == 0)}\n"
                             for k, c in enumerate(classes))  # fmt: skip


def fake_openimages(root, n, size, rng):
    """`_write_openimages` with ``n`` images of ``size``, split 80/10/10 into train/validation/test."""
    sizes = {"train": n - 2 * (n // 10), "validation": n // 10, "test": n // 10}
    _write_openimages(root, sizes, rng, lambda path, _: _jpeg(path, rng, size))


def _prepare(name, data_dir, raw):
    from mlrpl_jax.data import sources
    from mlrpl_jax.data.tfds_builders import manual, open_images

    if name in sources.NATIVE_PARTIAL_DATASETS:
        return open_images.prepare(name.split("/")[1], data_dir, raw, out=io.StringIO())
    return manual.prepare(sources._manual_class(name), data_dir, raw)


def _openimages_peak_memory(root, n, rng):
    """Prepares a fake Open Images of ``n`` images (the train split; every image a hard link to a copy of
    one small JPEG, so that the labels stream dominates) in a fresh process; returns its peak resident
    memory in MB and the seconds it took."""
    import subprocess

    raw, data_dir = os.path.join(root, f"oi_{n}", "raw"), os.path.join(root, f"oi_{n}", "tfds")
    shutil.rmtree(os.path.join(root, f"oi_{n}"), ignore_errors=True)
    one = os.path.join(root, f"oi_{n}", "one.jpg")
    _jpeg(one, rng, (64, 48))

    def link(path, i):
        base = f"{one}.{i // 60000}"  # A file takes at most 65,000 links.
        if not os.path.exists(base):
            shutil.copyfile(one, base)
        os.link(base, path)

    _write_openimages(raw, {"train": n, "validation": 10, "test": 10}, rng, link)
    code = (
        "import io, resource, sys, time; sys.path.insert(0, '.')\n"
        "from mlrpl_jax.data.tfds_builders import open_images\n"
        f"t = time.perf_counter(); open_images.prepare('boxable', {data_dir!r}, {raw!r}, "
        "out=io.StringIO())\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.perf_counter() - t)"
    )
    root_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root_dir, check=True,
                         capture_output=True, text=True).stdout.split()  # fmt: skip
    shutil.rmtree(os.path.join(root, f"oi_{n}"), ignore_errors=True)
    return float(out[0]), float(out[1])


def _loader_rate(data, source, batches, batch=32):
    """(images/s, CPU seconds of this process per image) of the train loader over `batches` batches
    after one (the workers' start and the first batch excluded)."""
    from mlrpl_jax.data import pipeline

    loader = pipeline.make_train_loader(data, source, batch, 0, process_index=0, process_count=1)
    next(loader)
    t, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(loader)
    n = batch * batches
    return n / (time.perf_counter() - t), (time.process_time() - cpu) / n


def _render_rate(data, batch=8, repeats=3):
    """Images/s of the device half (`ops.resample.render_views`) on this backend, jitted."""
    import jax
    import jax.numpy as jnp

    from mlrpl_jax.data import pipeline
    from mlrpl_jax.ops import resample

    k, scale, size = (
        pipeline.canvas_size(data),
        pipeline.scale_size(data),
        pipeline.image_size(data),
    )
    canvas = jnp.asarray(np.random.default_rng(0).integers(0, 256, (batch, k, k, 3), np.uint8))
    views = jnp.asarray(np.tile(np.float32([30, 40, 384, 480, 640, 1]), (batch, 1)))
    render = jax.jit(lambda c, v: resample.render_views(c, v, scale, size))
    render(canvas, views).block_until_ready()
    t = time.perf_counter()
    for _ in range(repeats):
        render(canvas, views).block_until_ready()
    return batch * repeats / (time.perf_counter() - t)


def augment_benchmark(workdir, images, size, batches, workers, threads):
    """The papers' train augmentation at paper shapes (`size` JPEGs, resize to 512, random crop,
    resize to 448, flip) on a prepared fake CUB (any manual-format dataset reads the same way):
    the host path (`data.resize_on='host'`, pillow) against the device path's host half
    (`'device'`: decode + canvas); the ASL / CLIP recipes' augmentation (448 resize, Cutout,
    RandAugment, host only) beside them; and the device half's own rate on this backend. Each with
    `workers` grain worker processes, and in the main process with `threads` grain read threads
    (which decode: `Source.__getitem__` runs in them)."""
    from configs import base
    from mlrpl_jax.data import sources

    raw, data_dir = (
        os.path.join(workdir, "cub_aug", "raw"),
        os.path.join(workdir, "cub_aug", "tfds"),
    )
    if not os.path.exists(data_dir):
        shutil.rmtree(os.path.join(workdir, "cub_aug"), ignore_errors=True)
        fake_cub(raw, images, size, np.random.default_rng(0))
        _prepare("cub", data_dir, raw)
    source = sources.make_source("cub", "train", data_dir=data_dir)
    config = base.get_config("plain")
    config.data.name, config.data.data_dir = "cub", data_dir
    cases = [("papers", "host"), ("papers", "device"), ("asl", "host")]
    print(f"train loader, {size[0]}x{size[1]} JPEGs -> 448 px, batch 32, {os.cpu_count()} CPUs; "
          "img/s (per core: images per CPU-second of the main process, 0 workers)")  # fmt: skip
    print(f"{'augmentation':>28} " + " ".join(f"{f'{w} workers':>10}" for w in workers)
          + " ".join(f"{f'{t} threads':>11}" for t in threads) + f" {'per core':>9}")  # fmt: skip
    for augment, resize_on in cases:
        config.data.augment, config.data.resize_on = augment, resize_on
        rates, per_core = [], float("nan")
        for w, t in [(w, 0) for w in workers] + [(0, t) for t in threads]:
            config.data.worker_count, config.data.read_threads = w, t
            rate, cpu = _loader_rate(config.data, source, batches)
            rates.append(rate)
            if w == 0 and t == 0:
                per_core = 1.0 / cpu
        label = f"{augment} ({'pillow' if resize_on == 'host' else 'decode + canvas'})"
        print(f"{label:>28} " + " ".join(f"{r:10.0f}" for r in rates[: len(workers)])
              + " ".join(f"{r:11.0f}" for r in rates[len(workers):]) + f" {per_core:9.0f}")  # fmt: skip
    config.data.worker_count = config.data.read_threads = 0
    config.data.augment, config.data.resize_on = "papers", "device"
    print(f"device half (ops.resample.render_views, 640 canvas -> 512 -> 448) on this backend: "
          f"{_render_rate(config.data):.0f} img/s")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, nargs=2, default=(500, 375))
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="kept afterwards when given")
    parser.add_argument("--augment", action="store_true",
                        help="only: the papers' augmentation, host vs device path, at --size")  # fmt: skip
    parser.add_argument("--augment_workers", type=int, nargs="+", default=(0, 1, 2))
    parser.add_argument("--augment_threads", type=int, nargs="*", default=(2,))
    parser.add_argument("--memory", type=int, nargs="*", default=None,
                        help="only: Open Images preparation's peak memory at these train sizes")  # fmt: skip
    args = parser.parse_args()
    if args.memory:
        workdir = args.workdir or tempfile.mkdtemp(prefix="bench_data_")
        print("Open Images preparation (600 classes, 5 verified labels per image, 64x48 JPEGs):")
        for n in args.memory:
            peak, seconds = _openimages_peak_memory(workdir, n, np.random.default_rng(0))
            print(f"  {n:>9,} train images: peak resident memory {peak:7.1f} MB, {seconds:6.1f} s "
                  f"({n / seconds:,.0f} images/s)")  # fmt: skip
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        return
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from absl import flags

    flags.FLAGS.mark_as_parsed()
    if args.augment:
        workdir = args.workdir or tempfile.mkdtemp(prefix="bench_data_")
        with contextlib.ExitStack() as stack:
            if args.workdir is None:
                stack.callback(shutil.rmtree, workdir, ignore_errors=True)
            augment_benchmark(workdir, args.images, tuple(args.size), args.batches,
                              args.augment_workers, args.augment_threads)  # fmt: skip
        return
    from mlrpl_jax.data import pipeline, sources

    workdir = args.workdir or tempfile.mkdtemp(prefix="bench_data_")
    print(f"{args.images} fake {args.size[0]}x{args.size[1]} JPEGs per dataset in {workdir}; "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'dataset':>19} {'prepare img/s':>14} {'labels: scan s':>15} {'index s':>8} "
          f"{'loader img/s':>13}")  # fmt: skip
    for name, fake, config_name in (("cub", fake_cub, "cub"), ("nus_wide", fake_nus, "nus"),
                                    ("open_images/boxable", fake_openimages, "openimages")):  # fmt: skip
        folder = name.replace("/", "_")
        raw, data_dir = os.path.join(workdir, folder, "raw"), os.path.join(workdir, folder, "tfds")
        if not os.path.exists(raw):
            fake(raw, args.images, tuple(args.size), np.random.default_rng(0))
        shutil.rmtree(data_dir, ignore_errors=True)
        t = time.perf_counter()
        builder = _prepare(name, data_dir, raw)
        prepare_rate = args.images / (time.perf_counter() - t)
        del builder
        source = sources.make_source(name, "train", data_dir=data_dir)
        t = time.perf_counter()
        labels = source.labels_matrix()  # no index yet: the scan (then written)
        scan = time.perf_counter() - t
        fresh = sources.make_source(name, "train", data_dir=data_dir)
        t = time.perf_counter()
        np.testing.assert_array_equal(fresh.labels_matrix(), labels)
        index = time.perf_counter() - t

        import importlib

        config = importlib.import_module(f"configs.imbalance_{config_name}").get_config()
        config.data.data_dir, config.data.worker_count = data_dir, args.workers
        loader = pipeline.make_train_loader(config.data, fresh, 32, 0)
        next(loader)
        t = time.perf_counter()
        for _ in range(args.batches):
            next(loader)
        rate = 32 * args.batches / (time.perf_counter() - t)
        print(f"{name:>19} {prepare_rate:14.0f} {scan:15.2f} {index:8.3f} {rate:13.1f}")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
