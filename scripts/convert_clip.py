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
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mlrpl_jax import cli, errors

INPUT_FORMATS = "an OpenAI .pt (TorchScript), a .pth/.pt state dict, a .safetensors or an .npz"


def unreadable_errors() -> tuple[type[BaseException], ...]:
    """What the readers raise for a file that is not a checkpoint (`pretrained.unreadable_file_errors`)."""
    from mlrpl_jax.models import pretrained

    return pretrained.unreadable_file_errors()


def read(input_path: str) -> dict:
    """{PyTorch key: float32 array} of the checkpoint; `errors.UserError` if it cannot be read."""
    from mlrpl_jax.models import clip_convert

    try:
        return clip_convert.read_checkpoint(input_path)
    except errors.UserError:
        raise
    except ImportError as e:  # torch / safetensors missing: the message says what to install
        raise errors.UserError(str(e)) from None
    except unreadable_errors() as e:
        raise errors.InputError(unreadable_message(input_path, e, INPUT_FORMATS)) from None


def unreadable_message(path: str, e: BaseException, formats: str) -> str:
    """`path` could not be read: the reader's complaint, and what the file should be."""
    if type(e) is ValueError:
        detail = str(e)
    elif str(e):
        detail = f"{type(e).__name__}: {e}"
    else:
        detail = f"{type(e).__name__}: empty or truncated?"
    return f"{path} is not a readable checkpoint ({detail}); expected {formats}."


def convert(input_path: str, output_path: str) -> None:
    """Converts `input_path` to `output_path` (the module docstring); every input is checked
    before anything is written. Raises `errors.UserError` subclasses for the user's mistakes."""
    if not output_path.endswith(".npz"):
        raise errors.ConfigError(f"The output must be a .npz file, got {output_path!r}.")
    if not os.path.isfile(input_path):
        raise errors.MissingFileError(
            f"{input_path}: no such file (the input is {INPUT_FORMATS}; OpenAI's RN50.pt / "
            "RN101.pt URLs are in the `clip` package's clip.py, _MODELS)."
        )
    import jax
    import numpy as np

    from mlrpl_jax.models import clip_convert, pretrained

    state_dict = read(input_path)
    try:
        config, variables = clip_convert.convert_state_dict(state_dict)
    except ValueError as e:  # missing / unexpected / mis-shaped keys, all listed
        raise errors.InputError(f"{input_path}: {e}") from None
    state = clip_convert.to_state_dict(variables)
    pretrained.save_npz(output_path, state)
    count = sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(variables["params"]))
    print(f"{input_path} -> {output_path}: {config}, {count:,} parameters, {len(state)} arrays")


def main(argv=None) -> None:
    """Command-line entry point: a user error prints `error: ...` and exits with status 2."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input", help=INPUT_FORMATS)
    parser.add_argument("output", help="the .npz to write")
    args = parser.parse_args(argv)
    with cli.user_errors():
        convert(args.input, args.output)


if __name__ == "__main__":
    main()
