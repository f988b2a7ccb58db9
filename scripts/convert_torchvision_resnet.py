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

import jax
import jax.numpy as jnp
import numpy as np

from mlrpl_jax.models import pretrained, resnet

OUTPUT_EXTENSIONS = (".npz", ".safetensors")


def convert(input_path: str, arch: str) -> tuple[dict[str, np.ndarray], dict]:
    """Reads a torchvision checkpoint and checks it against our ResNet ``arch`` (width 64).

    Args:
        input_path: a file ``pretrained.read_state_dict`` reads.
        arch: a key of ``resnet.RESNETS``.

    Returns:
        (backbone tensors {torchvision key: float32 array, torchvision layout}, the converted
        Flax variables {'params', 'batch_stats'}).

    Raises:
        ValueError: if the weights do not fit ``arch`` (lists every offending key).
    """
    model = resnet.RESNETS[arch](width=64)
    x = jnp.zeros((1, 64, 64, 3), jnp.float32)
    # Shapes only: no random weights are drawn.
    shapes = jax.eval_shape(lambda k: model.init(k, x, train=False), jax.random.key(0))
    state_dict = pretrained.read_state_dict(input_path)
    variables = pretrained.torchvision_resnet_to_flax(state_dict, shapes)
    used = {
        resnet.torchvision_name(path)
        for path, _ in jax.tree_util.tree_flatten_with_path(variables)[0]
    }
    tensors = {
        k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state_dict.items() if k in used
    }
    return tensors, variables


def write(tensors: dict[str, np.ndarray], output_path: str, metadata: dict[str, str]) -> None:
    """Writes ``tensors`` as ``.npz`` or ``.safetensors`` (by extension)."""
    ext = os.path.splitext(output_path)[1].lower()
    if ext == ".npz":
        # np.savez appends .npz to names without it; ours always has it.
        np.savez(output_path, **tensors)
    elif ext == ".safetensors":
        import safetensors.numpy

        safetensors.numpy.save_file(tensors, output_path, metadata=metadata)
    else:
        raise ValueError(f"--output must end with one of {OUTPUT_EXTENSIONS}, got {output_path!r}")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="torchvision checkpoint (.pth/.pt/...)")
    parser.add_argument("--arch", required=True, choices=sorted(resnet.RESNETS))
    parser.add_argument("--output", required=True, help="output file (.npz or .safetensors)")
    args = parser.parse_args(argv)
    if os.path.splitext(args.output)[1].lower() not in OUTPUT_EXTENSIONS:
        parser.error(f"--output must end with one of {', '.join(OUTPUT_EXTENSIONS)}")

    try:
        tensors, variables = convert(args.input, args.arch)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {args.input} does not convert to {args.arch}:\n{e}", file=sys.stderr)
        return 1
    write(
        tensors,
        args.output,
        {"arch": args.arch, "source": os.path.basename(args.input), "layout": "torchvision"},
    )
    n_params = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(variables["params"]))
    n_stats = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(variables["batch_stats"]))
    print(
        f"wrote {args.output}: {len(tensors)} tensors ({args.arch} backbone, torchvision names "
        f"and layout), {n_params:,} parameters + {n_stats:,} BatchNorm statistics, "
        f"{os.path.getsize(args.output) / 2**20:.1f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
