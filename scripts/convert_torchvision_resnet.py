"""Converts a torchvision ResNet checkpoint into a checked, torch-free weights file.

Usage (on a machine with torch; the output is read without it):

    python -c "import torch, torchvision; torch.save(torchvision.models.resnet101(\\
        weights='IMAGENET1K_V1').state_dict(), 'resnet101.pth')"
    python scripts/convert_torchvision_resnet.py --input resnet101.pth --arch resnet101 \\
        --output resnet101.npz
    python -m mlrpl_jax.train ... --config.model.backbone_weights=resnet101.npz

The input is anything ``mlrpl_jax.models.pretrained.read_state_dict`` reads (``.pth``/``.pt``
state dicts, possibly wrapped in ``{'state_dict': ...}`` or carrying ``module.`` prefixes, or
``.safetensors``/``.npz``). The script checks that the weights convert, strictly, into our Flax
ResNet of ``--arch`` with width 64 (every backbone tensor present, nothing unexpected, all shapes
right), then writes the backbone tensors only (``fc.*`` and ``num_batches_tracked`` dropped) as
float32 arrays under their torchvision names, in torchvision layout (conv weights
(out, in, kh, kw)). The output is therefore still a (backbone-only) torchvision state dict; the
Flax transposition happens at load time, in one place.

Output format, chosen by the extension of ``--output``:

* ``.npz``: ``numpy.savez`` (uncompressed), one array per key; reading needs only numpy.
* ``.safetensors``: needs the ``safetensors`` package to read (no torch); the file's metadata
  records the architecture and the source file name.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np

from mlrpl_jax import cli, errors
from mlrpl_jax.models import pretrained, resnet

OUTPUT_EXTENSIONS = (".npz", ".safetensors")
INPUT_FORMATS = "a torchvision state dict (.pth/.pt), a .safetensors or an .npz"


def unreadable_errors() -> tuple[type[BaseException], ...]:
    """What the readers raise for a file that is not a checkpoint (`pretrained.unreadable_file_errors`)."""
    from mlrpl_jax.models import pretrained

    return pretrained.unreadable_file_errors()


def read(input_path: str) -> dict[str, np.ndarray]:
    """``pretrained.read_state_dict(input_path)``; `errors.UserError` if it cannot be read."""
    if not os.path.isfile(input_path):
        raise errors.MissingFileError(f"--input {input_path}: no such file ({INPUT_FORMATS}).")
    try:
        return pretrained.read_state_dict(input_path)
    except errors.UserError:
        raise
    except ImportError as e:  # torch / safetensors missing: the message says what to install
        raise errors.UserError(str(e)) from None
    except unreadable_errors() as e:
        if type(e) is ValueError:
            detail = str(e)
        elif str(e):
            detail = f"{type(e).__name__}: {e}"
        else:
            detail = f"{type(e).__name__}: empty or truncated?"
        raise errors.InputError(
            f"--input {input_path} is not a readable state dict ({detail}); expected "
            f"{INPUT_FORMATS}."
        ) from None


def convert(input_path: str, arch: str) -> tuple[dict[str, np.ndarray], dict]:
    """Reads a torchvision checkpoint and checks it against our ResNet ``arch`` (width 64).

    Args:
        input_path: a file ``pretrained.read_state_dict`` reads.
        arch: a key of ``resnet.RESNETS``.

    Returns:
        (backbone tensors {torchvision key: float32 array, torchvision layout}, the converted
        Flax variables {'params', 'batch_stats'}).

    Raises:
        errors.MissingFileError: if ``input_path`` does not exist.
        errors.InputError: if it is not a state dict, or its weights do not fit ``arch`` (lists
            every offending key).
    """
    model = resnet.RESNETS[arch](width=64)
    x = jnp.zeros((1, 64, 64, 3), jnp.float32)
    state_dict = read(input_path)
    # Shapes only: no random weights are drawn.
    shapes = jax.eval_shape(lambda k: model.init(k, x, train=False), jax.random.key(0))
    try:
        variables = pretrained.torchvision_resnet_to_flax(state_dict, shapes)
    except ValueError as e:  # missing / unexpected / mis-shaped keys, all listed
        raise errors.InputError(f"--input {input_path} does not convert to {arch}:\n{e}") from None
    used = {
        resnet.torchvision_name(path)
        for path, _ in jax.tree_util.tree_flatten_with_path(variables)[0]
    }
    tensors = {
        k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state_dict.items() if k in used
    }
    return tensors, variables


def write(tensors: dict[str, np.ndarray], output_path: str, metadata: dict[str, str]) -> None:
    """Writes ``tensors`` as ``.npz`` or ``.safetensors`` (by extension), atomically."""
    ext = os.path.splitext(output_path)[1].lower()
    if ext == ".npz":
        pretrained.save_npz(output_path, tensors)
    elif ext == ".safetensors":
        import safetensors.numpy

        os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
        tmp = f"{output_path}.tmp-{os.getpid()}"
        try:
            safetensors.numpy.save_file(tensors, tmp, metadata=metadata)
            os.replace(tmp, output_path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    else:
        raise ValueError(f"--output must end with one of {OUTPUT_EXTENSIONS}, got {output_path!r}")


def run(input_path: str, arch: str, output_path: str) -> None:
    """Converts and writes (the module docstring); every input is checked before anything is
    written. Raises `errors.UserError` subclasses for the user's mistakes."""
    if os.path.splitext(output_path)[1].lower() not in OUTPUT_EXTENSIONS:
        raise errors.ConfigError(
            f"--output {output_path} must end with one of {', '.join(OUTPUT_EXTENSIONS)}."
        )
    tensors, variables = convert(input_path, arch)
    write(
        tensors,
        output_path,
        {"arch": arch, "source": os.path.basename(input_path), "layout": "torchvision"},
    )
    n_params = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(variables["params"]))
    n_stats = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(variables["batch_stats"]))
    print(
        f"wrote {output_path}: {len(tensors)} tensors ({arch} backbone, torchvision names "
        f"and layout), {n_params:,} parameters + {n_stats:,} BatchNorm statistics, "
        f"{os.path.getsize(output_path) / 2**20:.1f} MiB"
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns 0, or exits with status 2 after printing `error: ...`
    for a user error (a missing or unreadable input, weights of another architecture)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help=f"the checkpoint: {INPUT_FORMATS}")
    parser.add_argument("--arch", required=True, choices=sorted(resnet.RESNETS))
    parser.add_argument("--output", required=True, help="output file (.npz or .safetensors)")
    args = parser.parse_args(argv)
    with cli.user_errors():
        run(args.input, args.arch, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
