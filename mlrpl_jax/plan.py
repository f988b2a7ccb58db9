"""A config's cost before launch: `python -m mlrpl_jax.plan --config configs/sst_coco.py`.

No data and no weights are read: the dataset's size and classes come from `DATASETS` (the published
split sizes), the state is built as abstract shapes (per-example tables included:
`ops.example_table.abstract_tables`), and the train and eval steps are compiled for the current
backend on abstract inputs. Printed:

* the resolved config's differences from `configs/base.py`'s config for its method;
* parameters: total, trainable, frozen, and the method's own (`params['method']`);
* FLOPs per image of the train step and of the eval step, from XLA's cost analysis of the compiled
  steps (XLA counts a multiply-add as 2 FLOPs, and forward + backward for the train step; with
  `data.resize_on='device'` the train step also renders the augmentation from the host's canvas,
  `ops.resample`: 3.6 GFLOPs per image at 448 px from a 640 canvas, included);
* memory per device of the compiled train and eval steps (arguments, outputs, temporaries, minus
  what donation aliases), the optimiser state's and the per-example tables' bytes;
* the largest batch that fits `--device_memory` (e.g. 80GB): the train step's memory is compiled
  at two batch sizes and extrapolated linearly (arguments and the state do not grow with the
  batch, activations do), rounded down to a multiple of the device count.

The step is compiled at `--batch` (default: the config's batch, or the largest multiple of the
device count below it with `--batch_cap`); the memory of the config's own batch is the affine fit's
value there. Compiling a ResNet-101 step at 448 px takes a minute or two on a CPU.
"""

from mlrpl_jax import cli

cli.quiet_logs()

import re
import warnings
from typing import NamedTuple

from absl import flags
from ml_collections import config_flags

FLAGS = {}  # defined by `define_flags` when the module runs (importing it defines nothing)


def define_flags() -> None:
    """The command's flags (absl); only `python -m mlrpl_jax.plan` defines them, so that
    importing the module (tests, notebooks) does not clash with other commands' flags."""
    FLAGS["config"] = config_flags.DEFINE_config_file(
        "config", None, "Config file: configs/FILE.py or configs/FILE.py:METHOD.",
        lock_config=True,
    )  # fmt: skip
    FLAGS["device_memory"] = flags.DEFINE_string(
        "device_memory", "80GB", "Memory of one device for the largest-batch estimate (e.g. "
        "80GB, 16GiB, 32000MB).",
    )  # fmt: skip
    FLAGS["batch"] = flags.DEFINE_integer(
        "batch", 0, "Global batch to compile the train step at (0: the config's batch_size)."
    )
    FLAGS["num_train"] = flags.DEFINE_integer(
        "num_train", 0, "Train examples N (rows of per-example tables); 0: from DATASETS."
    )
    flags.mark_flags_as_required(["config"])


class DatasetInfo(NamedTuple):
    """Published facts of a dataset: classes and images per split."""

    num_classes: int
    splits: dict[str, int]
    source: str


# Images per split (the TFDS split names the configs use) and classes, as published.
DATASETS: dict[str, DatasetInfo] = {
    "voc/2007": DatasetInfo(20, {"train": 2501, "validation": 2510, "test": 4952},
                            "VOC 2007: trainval 5,011, test 4,952 (HST/DSRB papers)"),
    "voc/2012": DatasetInfo(20, {"train": 5717, "validation": 5823},
                            "VOC 2012: train 5,717, val 5,823 (the single-positive papers' split)"),
    "coco/2014": DatasetInfo(80, {"train": 82783, "validation": 40504},
                             "COCO 2014: train 82,783 (82,081 with a label), val 40,504 (40,137)"),
    "vg200": DatasetInfo(200, {"train": 98249, "test": 10000},
                         "VG-200: train 98,249, test 10,000 (HST/DSRB papers)"),
    "nus_wide": DatasetInfo(81, {"train": 161789, "test": 107859},
                            "NUS-WIDE 81 concepts: train 161,789, test 107,859 (official lists)"),
    "cub": DatasetInfo(312, {"train": 5994, "test": 5794},
                       "CUB-200-2011's 312 attributes: train 5,994, test 5,794"),
    "open_images/boxable": DatasetInfo(
        601, {"train": 1743042, "validation": 41620, "test": 125436},
        "Open Images V6 boxable: 601 classes; train 1,743,042, val 41,620, test 125,436"),
    "open_images/trainable": DatasetInfo(
        9605, {"train": 9011219, "validation": 41620, "test": 125436},
        "Open Images V6 image-level: 9,605 trainable classes; train 9,011,219"),
}  # fmt: skip


def split_size(info: DatasetInfo, split: str) -> int:
    """Images of a TFDS split string ('train', 'train+validation'; a slice counts whole)."""
    return sum(info.splits[part.split("[")[0]] for part in split.split("+"))


def dataset_shape(data) -> tuple[int, int, str]:
    """(N train examples after the validation carve-out, C, where the numbers come from)."""
    if data.name == "synthetic_scenes":
        s = data.synthetic
        return s.num_train, s.num_classes, "config.data.synthetic"
    if data.name not in DATASETS:
        from mlrpl_jax.errors import ConfigError

        raise ConfigError(f"plan knows no sizes for dataset {data.name!r}; pass --num_train.")
    info = DATASETS[data.name]
    n = split_size(info, data.train_split)
    if data.val_split is None and data.val_fraction > 0:
        n -= round(n * data.val_fraction)
    return n, info.num_classes, info.source


def parse_bytes(text: str) -> int:
    """'80GB' -> 80e9, '16GiB' -> 16 * 2**30, '32000MB', '1.5TB'."""
    from mlrpl_jax.errors import InputError

    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]i?B)\s*", text, re.IGNORECASE)
    if not match:
        raise InputError(f"--device_memory={text!r}: write a size such as 80GB or 16GiB.")
    value, unit = float(match.group(1)), match.group(2).upper()
    power = "KMGT".index(unit[0]) + 1
    return int(value * (1024**power if "I" in unit else 1000**power))


def _bytes(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _count(tree) -> int:
    import jax
    import numpy as np

    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def _size(tree) -> int:
    import jax
    import numpy as np

    return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def differences(config) -> list[str]:
    """'key: base value -> value' for every key where `config` departs from the base config of
    its method (`configs/base.py`)."""
    from configs import base
    from mlrpl_jax import run_dir

    reference = base.get_config(config.method)
    found = run_dir.differences(reference.to_dict(), config.to_dict())
    return [f"{k}: {a!r} -> {b!r}" for k, (a, b) in found.items()]


class Compiled(NamedTuple):
    flops: float  # of the whole step, over every device
    memory: int  # arguments + outputs + temporaries - aliased, per device
    detail: dict


def _compiled(lowered, devices: int) -> Compiled:
    """FLOPs and per-device memory of a compiled step; XLA's cost analysis of an SPMD program
    counts one device's share, so its FLOPs are multiplied by the device count."""
    compiled = lowered.compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    m = compiled.memory_analysis()
    detail = {"arguments": m.argument_size_in_bytes, "outputs": m.output_size_in_bytes,
              "temporaries": m.temp_size_in_bytes, "aliased": m.alias_size_in_bytes}  # fmt: skip
    total = detail["arguments"] + detail["outputs"] + detail["temporaries"] - detail["aliased"]
    return Compiled(devices * float(cost.get("flops", float("nan"))), int(total), detail)


def data_info_without_data(config, names, n: int, partial_labels, who: str):
    """A `methods.DataInfo` of N = `n` examples and the classes `names` without reading data:
    `partial_labels` () -> (N, C) (arrays or a ShapeDtypeStruct), the fallback category
    embeddings and a uniform adjacency (`who` names the caller in their description)."""
    import numpy as np

    from mlrpl_jax import methods
    from mlrpl_jax.data import label_semantics

    c = len(names)
    with warnings.catch_warnings():  # the fallback's warning is for training runs
        warnings.simplefilter("ignore")
        embeddings, _ = label_semantics.fallback_label_embeddings(
            names, config.data.label_embedding_dim, who
        )
    semantics = label_semantics.LabelSemantics(
        embeddings, np.full((c, c), 1.0 / c, np.float32), f"{who}: fallback embeddings"
    )
    return methods.DataInfo(
        num_classes=c, class_names=tuple(names), num_train_examples=n,
        train_partial_labels=partial_labels, label_semantics=lambda: semantics,
    )  # fmt: skip


def plan(config, *, batch: int = 0, num_train: int = 0, device_memory: str = "80GB") -> dict:
    """The figures the module docstring lists, as a dict (also printed by `main`)."""
    import jax
    import numpy as np

    from mlrpl_jax import config_validation, methods, sharding, trainer
    from mlrpl_jax.data import pipeline
    from mlrpl_jax.ops import example_table
    from mlrpl_jax.train_state import split_params

    config_validation.validate(config_validation.resolve_none(config))
    memory_limit = parse_bytes(device_memory)
    method = methods.get(config.method)
    n, c, source = dataset_shape(config.data)
    n = num_train or n
    names = tuple(f"class {i}" for i in range(c))
    data_info = data_info_without_data(
        config, names, n, lambda: jax.ShapeDtypeStruct((n, c), np.int8), "plan"
    )
    mesh = sharding.make_mesh()
    devices = mesh.devices.size
    spe = max(1, n // config.train.batch_size)
    rng = jax.random.PRNGKey(config.seed)
    with example_table.abstract_tables():
        method_state = method.init_state(config, data_info, rng)
        own = dict(method.init_params(config, data_info))
    fns = trainer.make_step_fns(
        config, method, data_info, mesh, spe, spe * config.train.num_epochs, method_state, own
    )
    state = fns.abstract_state
    groups = tuple(method.param_groups(config))
    trainable, frozen = split_params(state.params, groups)
    size = pipeline.image_size(config.data)
    batch_sh = sharding.batch_sharding(mesh)

    def train_batch(b):
        spec = pipeline.train_batch_shapes(config.data, b, c)
        return {k: jax.ShapeDtypeStruct(s, d, sharding=batch_sh) for k, (s, d) in spec.items()}

    target = config.train.batch_size
    b1 = batch or target
    b1 = max(devices, b1 - b1 % devices)
    b2 = 2 * b1
    train1 = _compiled(fns.step_fn.lower(state, train_batch(b1)), devices)
    train2 = _compiled(fns.step_fn.lower(state, train_batch(b2)), devices)
    per_image = (train2.memory - train1.memory) / (b2 - b1)
    fixed = train1.memory - per_image * b1
    largest = int((memory_limit - fixed) // per_image) if per_image > 0 else 0
    largest -= largest % devices
    eval_b = max(devices, config.train.eval_batch_size - config.train.eval_batch_size % devices)

    def eval_at(b):
        images = jax.ShapeDtypeStruct((b, size, size, 3), np.uint8, sharding=batch_sh)
        return _compiled(fns.eval_fns["raw"].lower(state, images), devices)

    evaluated, evaluated2 = eval_at(eval_b), eval_at(2 * eval_b)
    # FLOPs = per call (e.g. a CLIP text encoder over the class prompts) + per image x B.
    eval_per_image = (evaluated2.flops - evaluated.flops) / eval_b
    eval_per_call = evaluated.flops - eval_per_image * eval_b
    tables = {
        sharding.path_string(path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(state.method_state)[0]
        if len(leaf.shape) == 2 and leaf.shape[0] >= n
    }
    own_params = state.params.get(methods.base.METHOD_PARAMS, {})
    tables.update({
        f"params/method/{sharding.path_string(path)}": leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(own_params)[0]
        if len(leaf.shape) == 2 and leaf.shape[0] >= n
    })  # fmt: skip
    return {
        "config": f"{config.method} on {config.data.name}",
        "backend": f"{jax.default_backend()} x {devices} device(s)",
        "dataset": {"num_train": n, "num_classes": c, "image_size": size, "source": source},
        "differences": differences(config),
        "parameters": {
            "total": _count(state.params),
            "trainable": _count(trainable),
            "frozen": _count(frozen),
            "method_own": _count(own_params),
        },
        "gflops_per_image": {
            "train": train1.flops / b1 / 1e9,
            "eval": evaluated.flops / eval_b / 1e9,
            "eval_image_part": eval_per_image / 1e9,
            "eval_per_call": eval_per_call / 1e9,
        },
        "train_step": {
            "batch": b1,
            "memory_per_device": train1.memory,
            "detail": train1.detail,
            "memory_at_config_batch": int(fixed + per_image * target),
            "config_batch": target,
        },
        "eval_step": {
            "batch": eval_b,
            "memory_per_device": evaluated.memory,
            "detail": evaluated.detail,
        },
        "optimizer_state_bytes": _size(state.opt_state),
        "per_example_tables": {k: _size(v) for k, v in tables.items()},
        "largest_batch": {
            "device_memory": memory_limit,
            "batch": largest,
            "bytes_per_image": per_image,
            "fixed_bytes": fixed,
        },
    }


def format_plan(p: dict) -> str:
    d, params, g = p["dataset"], p["parameters"], p["gflops_per_image"]
    t, e, big = p["train_step"], p["eval_step"], p["largest_batch"]
    lines = [
        f"{p['config']} (compiled for {p['backend']})",
        (
            f"data: N = {d['num_train']:,} train images, C = {d['num_classes']}, "
            f"{d['image_size']} px ({d['source']})"
        ),
        "differences from configs/base.py:",
        *(f"  {x}" for x in p["differences"] or ["  (none)"]),
        (
            f"parameters: total {params['total'] / 1e6:.2f} M, trainable "
            f"{params['trainable'] / 1e6:.2f} M, frozen {params['frozen'] / 1e6:.2f} M, the method's "
            f"own {params['method_own'] / 1e6:.3f} M"
        ),
        (
            f"GFLOPs per image (XLA cost analysis; a multiply-add = 2 FLOPs): train step "
            f"{g['train']:.2f}, eval step {g['eval']:.2f} at batch {e['batch']} = "
            f"{g['eval_image_part']:.2f} per image + {g['eval_per_call']:.2f} per call (work "
            "that does not grow with the batch, e.g. a text encoder over the class prompts)"
        ),
        (
            f"train step at batch {t['batch']}: {_bytes(t['memory_per_device'])} per device "
            f"(arguments {_bytes(t['detail']['arguments'])}, temporaries "
            f"{_bytes(t['detail']['temporaries'])}); at the config's batch {t['config_batch']}: "
            f"{_bytes(t['memory_at_config_batch'])}"
        ),
        f"eval step at batch {e['batch']}: {_bytes(e['memory_per_device'])} per device",
        f"optimiser state {_bytes(p['optimizer_state_bytes'])}; per-example tables: "
        + (", ".join(f"{k} {_bytes(v)}" for k, v in p["per_example_tables"].items()) or "none"),
        (
            f"largest batch in {_bytes(big['device_memory'])} per device: {big['batch']} "
            f"({_bytes(big['bytes_per_image'])} per image over {_bytes(big['fixed_bytes'])} fixed)"
        ),
    ]
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; every setting is a --flag (see --help).")
    config = cli.config_value(FLAGS["config"])
    from mlrpl_jax import launch

    launch.setup_process()
    result = plan(config, batch=FLAGS["batch"].value, num_train=FLAGS["num_train"].value,
                  device_memory=FLAGS["device_memory"].value)  # fmt: skip
    print(format_plan(result))


if __name__ == "__main__":
    define_flags()
    cli.run_absl(main, __doc__)
