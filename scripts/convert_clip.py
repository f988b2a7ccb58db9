"""Converts a CLIP ResNet checkpoint (OpenAI or open_clip) into a checked, torch-free .npz.

    python scripts/convert_clip.py RN101.pt weights/clip_rn101.npz       # OpenAI TorchScript, fp16
    python scripts/convert_clip.py open_clip_rn50.pth weights/clip_rn50.npz  # a state_dict()

Reads what ``mlrpl_jax.models.clip_convert.read_checkpoint`` reads (OpenAI's TorchScript archives,
``torch.save``-d state dicts in fp16 or fp32, ``.safetensors``, ``.npz``), infers the architecture
(RN50, RN101, or any other ModifiedResNet CLIP), converts it strictly into the Flax ``CLIP``
(every key present, nothing unexpected, all shapes right; the error lists every offending key),
and writes the state dict back as float32 arrays under the PyTorch names and layouts (dropping
``num_batches_tracked`` and OpenAI's scalar entries), atomically. ``clip_convert.load(OUT)``
reads it without torch. Prints the inferred architecture and the parameter count.
"""

import argparse
import sys

import jax
import numpy as np

from mlrpl_jax.models import clip_convert, pretrained


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "input", help="OpenAI .pt (TorchScript), .pth state dict, .safetensors, .npz"
    )
    parser.add_argument("output", help="the .npz to write")
    args = parser.parse_args(argv)
    if not args.output.endswith(".npz"):
        raise SystemExit(f"The output must be a .npz file, got {args.output!r}.")
    try:
        config, variables = clip_convert.load(args.input)
    except (ValueError, FileNotFoundError, ImportError) as e:
        raise SystemExit(f"{args.input}: {e}") from e
    state = clip_convert.to_state_dict(variables)
    pretrained.save_npz(args.output, state)
    count = sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(variables["params"]))
    print(f"{args.input} -> {args.output}: {config}, {count:,} parameters, {len(state)} arrays")


if __name__ == "__main__":
    sys.exit(main())
