"""PyTorch CLIP checkpoints (OpenAI, open_clip) <-> the Flax ``models.clip.CLIP`` variables.

Formats read (``read_checkpoint``):

* OpenAI's released ``RN50.pt`` / ``RN101.pt``: TorchScript archives in fp16 (read with
  ``torch.jit.load``; needs torch);
* a ``torch.save``-d state dict (OpenAI's non-JIT model or open_clip's ``model.state_dict()``,
  fp16 or fp32; needs torch), ``.safetensors``, or ``.npz`` with one array per PyTorch key (what
  ``scripts/convert_clip.py`` writes: fp32, no torch needed to read it).

Every array is cast to float32. The architecture is inferred from the shapes
(``clip.config_from_shapes``, OpenAI's ``build_model`` rules), then ``convert_state_dict`` fills
the variables strictly: a missing key, an unexpected key or a shape mismatch is an error listing
every offending key. Ignored: BatchNorm ``num_batches_tracked`` and OpenAI's scalar entries
``input_resolution``, ``context_length``, ``vocab_size`` and the causal ``attn_mask`` buffer a
traced (TorchScript) open_clip model carries.

Name rule: Flax path ``('visual', 'layer1', '0', 'bn1', 'scale')`` is ``visual.layer1.0.bn1.weight``
(``kernel``, ``scale``, ``embedding`` -> ``weight``; BatchNorm ``mean`` / ``var`` ->
``running_mean`` / ``running_var``; every other leaf keeps its name). Layout rule: conv kernels
(kh, kw, in, out) <-> (out, in, kh, kw); dense kernels (in, out) <-> (out, in); everything else as
stored (embeddings, positional embeddings, ``text_projection``, the fused ``in_proj_weight``).
"""

import os
import zipfile
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from mlrpl_jax.errors import MissingFileError
from mlrpl_jax.models import clip, pretrained

IGNORED = ("input_resolution", "context_length", "vocab_size", "attn_mask")
_LEAF = {"kernel": "weight", "scale": "weight", "embedding": "weight",
         "mean": "running_mean", "var": "running_var"}  # fmt: skip


def _key(entry) -> str:
    return str(getattr(entry, "key", entry))


def torch_name(path: tuple) -> str:
    """The PyTorch state-dict key of a Flax variable path (below the collection)."""
    parts = [_key(p) for p in path]
    parts[-1] = _LEAF.get(parts[-1], parts[-1])
    return ".".join(parts)


def _to_torch_layout(value: np.ndarray, leaf: str) -> np.ndarray:
    if leaf == "kernel" and value.ndim == 4:
        return value.transpose(3, 2, 0, 1)
    if leaf == "kernel" and value.ndim == 2:
        return value.T
    return value


def _from_torch_layout(value: np.ndarray, leaf: str) -> np.ndarray:
    if leaf == "kernel" and value.ndim == 4:
        return value.transpose(2, 3, 1, 0)
    if leaf == "kernel" and value.ndim == 2:
        return value.T
    return value


def _is_ignored(key: str) -> bool:
    return key in IGNORED or key.endswith("num_batches_tracked")


def _is_torchscript(path: str) -> bool:
    """TorchScript archives are zip files with a ``code/`` directory (``torch.save`` zips have
    ``data.pkl`` but no code)."""
    with epath.Path(path).open("rb") as f:
        if not zipfile.is_zipfile(f):
            return False
        with zipfile.ZipFile(f) as z:
            return any("/code/" in f"/{n}" for n in z.namelist())


def read_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """{PyTorch key: float32 array} of a CLIP checkpoint (module docstring for the formats)."""
    path = os.fspath(path)
    if not epath.Path(path).is_file():
        raise MissingFileError(
            f"CLIP checkpoint not found: {path!r}. Download OpenAI's RN50.pt / RN101.pt (the URLs "
            "are in the `clip` package's clip.py, _MODELS) or save an open_clip model's "
            "state_dict(), then convert it once with `python scripts/convert_clip.py IN OUT.npz`."
        )
    if path.lower().endswith((".pt", ".pth")) and _is_torchscript(path):
        try:
            import torch
        except ImportError as e:
            raise ImportError(
                f"{path!r} is a TorchScript archive: reading it needs `pip install torch`; "
                "convert it once to a torch-free .npz with scripts/convert_clip.py."
            ) from e
        with epath.Path(path).open("rb") as f:
            module = torch.jit.load(f, map_location="cpu")
        state = {k: v.detach().float().numpy() for k, v in module.state_dict().items()}
    else:
        state = pretrained.read_state_dict(path)
    out = {}
    for key, value in state.items():
        value = np.asarray(value)
        out[key] = value.astype(np.float32) if value.dtype.kind == "f" else value
    return out


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray], config: clip.ClipConfig | None = None
) -> tuple[clip.ClipConfig, dict[str, Any]]:
    """(config, {'params', 'batch_stats'}) of ``clip.CLIP`` holding a PyTorch CLIP state dict.

    Args:
      state_dict: {PyTorch key: array} (OpenAI / open_clip names and layouts).
      config: the architecture; inferred from the shapes when None.

    Raises:
      ValueError: missing, unexpected or mis-shaped keys (all listed), or not a ResNet CLIP.
    """
    found = {k: v for k, v in state_dict.items() if not _is_ignored(k)}
    if config is None:
        config = clip.config_from_shapes({k: np.shape(v) for k, v in found.items()})
    abstract = clip.abstract_variables(config)
    expected, missing, mismatched = {}, [], []

    def fill(path, leaf):
        key = torch_name(path[1:])
        name = _key(path[-1])
        shape = tuple(_to_torch_layout(np.empty(leaf.shape, np.uint8), name).shape)
        expected[key] = shape
        if key not in found:
            missing.append(key)
            return jnp.zeros(leaf.shape, leaf.dtype)
        value = np.asarray(found[key], np.float32)
        if value.shape != shape:
            mismatched.append(f"{key}: expected {shape}, got {value.shape}")
            return jnp.zeros(leaf.shape, leaf.dtype)
        return jnp.asarray(_from_torch_layout(value, name), leaf.dtype)

    variables = jax.tree_util.tree_map_with_path(fill, dict(abstract))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected or mismatched:
        lines = [
            (
                f"Cannot load the CLIP checkpoint into {config}: {len(missing)} missing, "
                f"{len(unexpected)} unexpected and {len(mismatched)} mis-shaped key(s)."
            )
        ]
        for title, keys in (("Missing (in the model, not in the file)", sorted(missing)),
                            ("Unexpected (in the file, not in the model)", unexpected),
                            ("Shape mismatches (PyTorch layout)", sorted(mismatched))):  # fmt: skip
            if keys:
                lines.append(f"{title} [{len(keys)}]:")
                lines.extend(f"  {k}" for k in keys)
        raise ValueError("\n".join(lines))
    return config, variables


def to_state_dict(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The inverse of ``convert_state_dict``: {PyTorch key: float32 array in PyTorch layout}."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(dict(variables))[0]:
        out[torch_name(path[1:])] = _to_torch_layout(np.asarray(leaf, np.float32), _key(path[-1]))
    return out


def load(path: str | os.PathLike) -> tuple[clip.ClipConfig, dict[str, Any]]:
    """``convert_state_dict(read_checkpoint(path))``: a CLIP checkpoint as Flax variables."""
    return convert_state_dict(read_checkpoint(path))
