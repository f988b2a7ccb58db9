"""Prepares a dataset once as TFDS array_record files, then builds its splits' label indexes.

  python scripts/prepare_data.py cub --manual_dir ~/data/CUB_200_2011_extracted
  python scripts/prepare_data.py nus_wide --manual_dir ~/data/nus_wide
  python scripts/prepare_data.py vg200 --manual_dir ~/data/vg
  python scripts/prepare_data.py open_images/boxable --manual_dir ~/data/open_images  # resumable
  python scripts/prepare_data.py voc/2012          # TFDS catalogue: downloads (needs network)
  python scripts/prepare_data.py coco/2014 --data_dir /big/disk/tensorflow_datasets

Datasets with a manual directory (vg200, cub, nus_wide, open_images/*) read the files the user downloaded; the
expected layout is printed when something is missing (and in the README's "Datasets" section).
The TFDS catalogue datasets (voc/2007, voc/2012, coco/2014) download themselves and need
TensorFlow to encode the images (`pip install 'mlrpl_jax[tfds-prepare]'`). Preparing an already
prepared dataset only rebuilds the label indexes. The label index of a split (its labels and file
names, `sources.Source.build_index`) makes `labels_matrix` a file read at training time instead
of a pass over every record.
"""

import argparse
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mlrpl_jax import cli, errors
from mlrpl_jax.data import sources

SPLITS = {
    "voc/2007": ("train", "validation", "test"),
    "voc/2012": ("train", "validation"),
    "coco/2014": ("train", "validation"),
    "vg200": ("train", "test"),
    "cub": ("train", "test"),
    "nus_wide": ("train", "test"),
    "open_images/boxable": ("train", "validation", "test"),
    "open_images/trainable": ("train", "validation", "test"),
}
ALIASES = {"voc2007": "voc/2007", "voc2012": "voc/2012", "coco": "coco/2014", "nus": "nus_wide",
           "vg": "vg200", "openimages": "open_images/boxable"}  # fmt: skip
MANUAL = ("vg200", *sources.MANUAL_BUILDERS, *sources.NATIVE_PARTIAL_DATASETS)


def prepare(name: str, data_dir: str | None, manual_dir: str | None) -> None:
    if name in sources.MANUAL_BUILDERS:
        from mlrpl_jax.data.tfds_builders import manual

        cls = sources._manual_class(name)
        builder = manual.prepare(cls, data_dir, manual_dir)
        print(f"{name}: prepared in {builder.data_dir}; counts: {builder.info.metadata['counts']}")
    elif name in sources.NATIVE_PARTIAL_DATASETS:
        from mlrpl_jax.data.tfds_builders import open_images

        builder = open_images.prepare(name.split("/")[1], data_dir, manual_dir)
        print(f"{name}: prepared in {builder.data_dir}; counts: {builder.info.metadata['counts']}")
    elif name == "vg200":
        from mlrpl_jax.data.tfds_builders import vg200

        builder = vg200.prepare(data_dir, manual_dir)
        print(f"{name}: prepared in {builder.data_dir}")
    else:
        import tensorflow_datasets as tfds

        builder = tfds.builder(f"{name}:{sources.TFDS_VERSIONS[name]}", data_dir=data_dir,
                               file_format="array_record")  # fmt: skip
        config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
        builder.download_and_prepare(download_config=config)
        print(f"{name}: prepared in {builder.data_dir}")


def _raised_by_builders(e: BaseException) -> bool:
    """Whether `e` was raised by our dataset builders' own code (mlrpl_jax/data/tfds_builders),
    not by a library they call."""
    frames = traceback.extract_tb(e.__traceback__)
    here = os.path.join("mlrpl_jax", "data", "tfds_builders")
    return bool(frames) and here in frames[-1].filename


def prepare_checked(name: str, data_dir: str | None, manual_dir: str | None) -> None:
    """`prepare`, where the builders' plain FileNotFoundError / ValueError about the manual
    directory's files (raised before anything is written) are user errors."""
    try:
        prepare(name, data_dir, manual_dir)
    except errors.UserError:
        raise
    except FileNotFoundError as e:
        if not _raised_by_builders(e):
            raise
        raise errors.MissingFileError(str(e)) from None
    except ValueError as e:
        if not _raised_by_builders(e):
            raise
        raise errors.InputError(str(e)) from None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", help=f"one of {', '.join(SPLITS)} (or {', '.join(ALIASES)})")
    parser.add_argument("--manual_dir", help=f"the downloaded raw files ({', '.join(MANUAL)})")
    parser.add_argument("--data_dir", help="TFDS data directory (default: TFDS's default)")
    parser.add_argument("--skip_index", action="store_true", help="do not build label indexes")
    args = parser.parse_args(argv)
    with cli.user_errors():
        run(args)


def run(args: argparse.Namespace) -> None:
    """Checks the command line, prepares, indexes. Raises `errors.UserError` for the user's
    mistakes, before anything is written."""
    name = ALIASES.get(args.name, args.name)
    if name not in SPLITS:
        raise errors.ConfigError(
            f"unknown dataset {args.name!r}; choose one of {', '.join(SPLITS)} "
            f"(aliases: {', '.join(ALIASES)})."
        )
    if name in MANUAL and args.manual_dir is None:
        print(sources.prepare_instructions(name, args.data_dir))
        raise errors.ConfigError(
            f"{name} needs --manual_dir: the directory of the files you downloaded, laid out as "
            "printed above."
        )
    if args.manual_dir is not None and not os.path.isdir(args.manual_dir):
        raise errors.MissingFileError(
            f"--manual_dir {args.manual_dir} is not a directory; `python scripts/prepare_data.py "
            f"{args.name}` (without --manual_dir) prints the layout it needs."
        )
    start = time.perf_counter()
    prepare_checked(name, args.data_dir, args.manual_dir)
    print(f"preparation: {time.perf_counter() - start:.1f} s")
    if args.skip_index:
        return
    for split in SPLITS[name]:
        t = time.perf_counter()
        source = sources.make_source(name, split, data_dir=args.data_dir)
        path = source.build_index()
        n, c = source.labels_matrix().shape
        print(f"{name}[{split}]: {n} images x {c} classes, "
              f"{int((source.labels_matrix() == 1).sum())} positives; label index {path} "
              f"({time.perf_counter() - t:.1f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
