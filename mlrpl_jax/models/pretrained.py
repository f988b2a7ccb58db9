"""ImageNet weights for our ResNets, converted from torchvision state dicts.

What: ``load_backbone_weights`` replaces the (randomly initialised) backbone subtree of a model's
``params`` and ``batch_stats`` with the weights of a torchvision ResNet checkpoint, e.g. the
ImageNet ResNet-101 the reference code loads from ``./data/checkpoint/resnet101.pth``
(``shared/reference/hcp_mlr_pl_notes.md`` §1.1). The trainer calls it with
``config.model.backbone_weights``.

Formats (``read_state_dict``), all holding torchvision key names and torchvision layouts:

* ``.pth`` / ``.pt``: ``torch.save`` of a state dict, e.g.
  ``torchvision.models.resnet101(weights='IMAGENET1K_V1').state_dict()``. Reading needs torch
  (imported lazily); ``{'state_dict': ...}`` / ``{'model': ...}`` wrappers and the ``module.``
  prefix of ``nn.DataParallel`` are removed.
* ``.safetensors``: read with ``safetensors.numpy`` (no torch needed).
* ``.npz``: ``numpy.savez`` with one array per torchvision key (no extra package needed).

``scripts/convert_torchvision_resnet.py`` turns a ``.pth`` into a checked, torch-free ``.npz`` or
``.safetensors`` (backbone tensors only, still in torchvision names and layouts).

Name mapping (``resnet.torchvision_name``): Flax ``params`` path ``('layer1', '0', 'conv1',
'kernel')`` is torchvision's ``layer1.0.conv1.weight``; BatchNorm ``scale``/``bias`` are
``weight``/``bias``; ``batch_stats`` ``mean``/``var`` are ``running_mean``/``running_var``. Conv
weights (out, in, kh, kw) are transposed by (2, 3, 1, 0) to Flax's (kh, kw, in, out).

As in the reference, ``fc.*`` (the ImageNet classifier) and the ``num_batches_tracked`` buffers
are ignored. Unlike the reference, which leaves backbone parameters missing from the file at their
random init, loading is strict in both directions: a missing key, an unexpected key or a shape
mismatch is an error that lists every offending key.
"""

import os
import pickle
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from mlrpl_jax.errors import InputError, MissingFileError
from mlrpl_jax.models import resnet

SUPPORTED_EXTENSIONS = (".pth", ".pt", ".safetensors", ".npz")

_HOW_TO_GET = (
    "Set config.model.backbone_weights to a torchvision ImageNet ResNet state dict of the "
    "configured depth, e.g. for ResNet-101 `torch.save(torchvision.models.resnet101("
    "weights='IMAGENET1K_V1').state_dict(), 'resnet101.pth')` (the reference code's "
    "./data/checkpoint/resnet101.pth), optionally converted to a torch-free .npz/.safetensors "
    "with scripts/convert_torchvision_resnet.py; or set it to None to start from random weights."
)

# (stage sizes, block) -> torchvision model name, for error hints.
_KNOWN_ARCHS = {
    (tuple(f.keywords["stage_sizes"]), f.keywords["block"]): name
    for name, f in resnet.RESNETS.items()
}


def _is_ignored(key: str) -> bool:
    """torchvision keys without a counterpart in our backbone: the classifier, BN counters."""
    return key.startswith("fc.") or key.endswith("num_batches_tracked")


def _strip_module_prefix(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Removes the ``module.`` prefix that ``nn.DataParallel`` puts on every key."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return state_dict


def _read_torch(path: str) -> dict[str, np.ndarray]:
    """Reads a ``torch.save``-d state dict (possibly wrapped) into numpy arrays."""
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"Reading {path!r} needs PyTorch: `pip install torch`, or convert the file once to "
            "a torch-free .npz/.safetensors with scripts/convert_torchvision_resnet.py (on a "
            "machine with torch)."
        ) from e
    try:
        with epath.Path(path).open("rb") as f:
            obj = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise InputError(
            f"{path!r} is not a plain state dict (torch.load(weights_only=True) refused it: "
            "it pickles other objects, e.g. a whole nn.Module); save `model.state_dict()` "
            "instead."
        ) from e
    # Training checkpoints wrap the state dict: {'state_dict': ...} or {'model': ...}.
    while isinstance(obj, Mapping) and not any(torch.is_tensor(v) for v in obj.values()):
        inner = [obj[k] for k in ("state_dict", "model") if isinstance(obj.get(k), Mapping)]
        if not inner:
            break
        obj = inner[0]
    if not isinstance(obj, Mapping):
        # The file's content is wrong, not an argument's type.
        raise InputError(f"{path!r} holds a {type(obj).__name__}, not a state dict.")
    bad = sorted(str(k) for k, v in obj.items() if not torch.is_tensor(v))
    if bad:
        raise InputError(f"{path!r} is not a state dict of tensors; non-tensor entries: {bad}")
    out = {}
    for key, tensor in obj.items():
        tensor = tensor.detach().cpu()
        if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16
            tensor = tensor.float()
        out[str(key)] = tensor.numpy()
    return out


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a torchvision-style state dict from ``.pth``/``.pt``, ``.safetensors`` or ``.npz``.

    Args:
        path: the file, local or any path `etils.epath` handles (e.g. ``gs://...``).
            ``.pth``/``.pt`` need torch (imported here, not at module level);
            ``.safetensors`` needs the ``safetensors`` package; ``.npz`` needs only numpy.

    Returns:
        {torchvision key: numpy array in torchvision layout}, with wrappers
        (``{'state_dict': ...}``, ``{'model': ...}``) and a leading ``module.`` prefix removed.

    Raises:
        FileNotFoundError: if ``path`` is not a file (the message says how to get one).
        ValueError: for an unsupported extension or a file that is not a state dict.
        ImportError: if the package needed for the format is missing.
    """
    path = os.fspath(path)
    ext = epath.Path(path).suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise InputError(
            f"Unsupported weights file {path!r}: the extension must be one of "
            f"{', '.join(SUPPORTED_EXTENSIONS)}."
        )
    if not epath.Path(path).is_file():
        raise MissingFileError(f"Backbone weights file not found: {path!r}. {_HOW_TO_GET}")
    if ext in (".pth", ".pt"):
        state_dict = _read_torch(path)
    elif ext == ".safetensors":
        try:
            import safetensors.numpy
        except ImportError as e:
            raise ImportError(
                f"Reading {path!r} needs `pip install safetensors` (or use an .npz file)."
            ) from e
        state_dict = safetensors.numpy.load(epath.Path(path).read_bytes())
    else:
        with epath.Path(path).open("rb") as f, np.load(f, allow_pickle=False) as npz:
            state_dict = {k: npz[k] for k in npz.files}
    return _strip_module_prefix(state_dict)


def _natural_order(key: str) -> list[tuple[int, int, str]]:
    """Sort key that puts ``layer3.9`` before ``layer3.10``."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in key.split(".")]


def _torch_layout(flax_shape: tuple[int, ...], is_kernel: bool) -> tuple[int, ...]:
    """The torchvision shape of a Flax leaf: (kh, kw, in, out) -> (out, in, kh, kw) for kernels."""
    if is_kernel and len(flax_shape) == 4:
        kh, kw, cin, cout = flax_shape
        return (cout, cin, kh, kw)
    return tuple(flax_shape)


def _describe(keys) -> tuple[tuple[int, ...], str, str]:
    """(blocks per stage, block type, a readable name) of a set of torchvision ResNet keys."""
    blocks = [0, 0, 0, 0]
    bottleneck = False
    for key in keys:
        parts = key.split(".")
        if len(parts) > 2 and parts[0] in ("layer1", "layer2", "layer3", "layer4"):
            if parts[1].isdigit():
                stage = int(parts[0][-1]) - 1
                blocks[stage] = max(blocks[stage], int(parts[1]) + 1)
            bottleneck |= parts[2] == "conv3"
    sizes, block = tuple(blocks), "bottleneck" if bottleneck else "basic"
    name = _KNOWN_ARCHS.get((sizes, block), "an unknown ResNet")
    return sizes, block, f"{name} (blocks per stage {sizes}, {block} blocks)"


def _hint(expected: Mapping[str, tuple], found: Mapping[str, tuple]) -> str:
    """A guess at why a state dict does not fit: wrong depth, wrong width, not a ResNet."""
    if not any(k.startswith("layer") for k in found):
        return (
            "The file does not look like a torchvision ResNet state dict (no layer1..layer4 "
            "keys); it must use torchvision's key names."
        )
    model, file = _describe(expected), _describe(found)
    if model[:2] != file[:2]:
        return (
            f"Wrong depth: the file looks like {file[2]}, the model is {model[2]}; "
            "set config.model.backbone to match the weights, or use weights of the right depth."
        )
    if "conv1.weight" in expected and "conv1.weight" in found:
        model_width, file_width = expected["conv1.weight"][0], found["conv1.weight"][0]
        if model_width != file_width:
            return (
                f"Wrong width: the file's stem has {file_width} channels, the model's "
                f"{model_width}; config.model.width must be {file_width} for these weights"
                + (" (as for all torchvision ImageNet weights)." if file_width == 64 else ".")
            )
    return "The file must be a torchvision ResNet state dict of the model's depth and width."


def torchvision_resnet_to_flax(
    state_dict: Mapping[str, np.ndarray], variables: Mapping[str, Any]
) -> dict[str, Any]:
    """Fills a ResNet's Flax variables from a torchvision state dict.

    Args:
        state_dict: {torchvision key: array in torchvision layout}, as ``read_state_dict``
            returns it. ``fc.*`` keys and ``num_batches_tracked`` buffers are ignored.
        variables: ``{'params': ..., 'batch_stats': ...}`` of a ``resnet.ResNet`` (as
            ``model.init`` returns it, without an outer scope). Only the structure, shapes and
            dtypes are used, so ``jax.eval_shape(model.init, ...)`` output works too (and avoids
            initialising random weights).

    Returns:
        A new tree of the same structure, shapes and dtypes (``jax.Array`` leaves) holding the
        file's weights; conv weights are transposed to (kh, kw, in, out).

    Raises:
        ValueError: if a model variable has no key in the file, the file has a key the model
            does not use, or shapes differ. The message lists every offending key and a hint.
    """
    if set(variables) != {"params", "batch_stats"}:
        raise InputError(
            "variables must be {'params': ..., 'batch_stats': ...} of a ResNet, got keys "
            f"{sorted(variables)}"
        )
    found = {k: v for k, v in state_dict.items() if not _is_ignored(k)}
    expected, missing, mismatched = {}, [], []

    def convert(path, leaf):
        key = resnet.torchvision_name(path)
        is_kernel = str(getattr(path[-1], "key", path[-1])) == "kernel"
        shape = _torch_layout(tuple(leaf.shape), is_kernel)
        expected[key] = shape
        if key not in found:
            missing.append(key)
            return leaf
        value = np.asarray(found[key])
        if value.shape != shape:
            mismatched.append(
                f"{key}: expected shape {shape} (torchvision layout), got {value.shape}"
            )
            return leaf
        if is_kernel:
            value = value.transpose(2, 3, 1, 0)
        return jnp.asarray(value, dtype=leaf.dtype)

    converted = jax.tree_util.tree_map_with_path(convert, dict(variables))
    unexpected = sorted(set(found) - set(expected), key=_natural_order)
    if missing or unexpected or mismatched:
        found_shapes = {k: tuple(np.shape(v)) for k, v in found.items()}
        lines = [
            (
                f"Cannot load torchvision ResNet weights: {len(missing)} missing, "
                f"{len(unexpected)} unexpected and {len(mismatched)} mis-shaped key(s)."
            ),
            "Hint: " + _hint(expected, found_shapes),
        ]
        for title, keys in (
            ("Missing keys (in the model, not in the file)", sorted(missing, key=_natural_order)),
            ("Unexpected keys (in the file, not in the model)", unexpected),
            ("Shape mismatches", sorted(mismatched, key=_natural_order)),
        ):
            if keys:
                lines.append(f"{title} [{len(keys)}]:")
                lines.extend(f"  {k}" for k in keys)
        raise InputError("\n".join(lines))
    return converted


def load_backbone_weights(
    path: str | os.PathLike,
    params: Mapping[str, Any],
    batch_stats: Mapping[str, Any],
    scope: str | None = "backbone",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Replaces a model's ResNet backbone variables with converted torchvision weights.

    Args:
        path: ``config.model.backbone_weights``: a ``.pth``/``.pt``, ``.safetensors`` or ``.npz``
            torchvision ResNet state dict (see ``read_state_dict``).
        params: the model's ``params`` tree; ``params[scope]`` is the backbone's.
        batch_stats: the model's ``batch_stats`` tree; ``batch_stats[scope]`` is the backbone's.
        scope: name of the backbone submodule, or None if the trees are the ResNet's own.

    Returns:
        (params, batch_stats): new trees, equal to the inputs except that the backbone subtrees
        hold the file's weights. The inputs are not modified.

    Raises:
        FileNotFoundError, ImportError, ValueError: as ``read_state_dict`` and
            ``torchvision_resnet_to_flax``; messages name ``config.model.backbone_weights``.
    """
    path = os.fspath(path)
    if scope is None:
        backbone = {"params": params, "batch_stats": batch_stats}
    else:
        absent = [
            name
            for name, tree in (("params", params), ("batch_stats", batch_stats))
            if scope not in tree
        ]
        if absent:
            raise InputError(
                f"config.model.backbone_weights={path}: the model has no {scope!r} subtree in "
                f"{' and '.join(absent)} (top-level names: {sorted(params)})."
            )
        backbone = {"params": params[scope], "batch_stats": batch_stats[scope]}
    try:
        loaded = torchvision_resnet_to_flax(read_state_dict(path), backbone)
    except ValueError as e:
        raise InputError(f"config.model.backbone_weights={path}:\n{e}") from e
    if scope is None:
        return loaded["params"], loaded["batch_stats"]
    return (
        {**params, scope: loaded["params"]},
        {**batch_stats, scope: loaded["batch_stats"]},
    )


def flax_resnet_to_torchvision(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The inverse of ``torchvision_resnet_to_flax``: a ResNet's Flax variables as a state dict.

    Args:
        variables: ``{'params': ..., 'batch_stats': ...}`` of a ``resnet.ResNet`` (no outer scope).

    Returns:
        {torchvision key: float32 numpy array in torchvision layout}: conv kernels transposed from
        (kh, kw, in, out) to (out, in, kh, kw); no ``fc.*`` and no ``num_batches_tracked`` keys
        (``read_state_dict`` + ``torchvision_resnet_to_flax`` read it back exactly).
    """
    if set(variables) != {"params", "batch_stats"}:
        raise InputError(
            "variables must be {'params': ..., 'batch_stats': ...} of a ResNet, got keys "
            f"{sorted(variables)}"
        )
    state_dict = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(dict(variables))[0]:
        value = np.asarray(jax.device_get(leaf), dtype=np.float32)
        if str(getattr(path[-1], "key", path[-1])) == "kernel" and value.ndim == 4:
            value = value.transpose(3, 2, 0, 1)
        state_dict[resnet.torchvision_name(path)] = value
    return dict(sorted(state_dict.items(), key=lambda kv: _natural_order(kv[0])))


def save_npz(path: str | os.PathLike, state_dict: Mapping[str, np.ndarray]) -> None:
    """Writes a state dict as ``.npz`` atomically (a temporary file renamed into place), so a
    crash never leaves a truncated weights file where a complete one is expected."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise InputError(f"save_npz writes .npz files, got {path!r}")
    epath.Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = epath.Path(f"{path}.tmp-{os.getpid()}.npz")
    try:
        with tmp.open("wb") as f:
            np.savez(f, **state_dict)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def unreadable_file_errors() -> tuple[type[BaseException], ...]:
    """What the weight readers (torch.load, torch.jit.load, numpy, safetensors) raise for a file
    that is not a checkpoint (damaged, truncated, another format): the file's fault, not a bug."""
    import zipfile

    types: tuple[type[BaseException], ...] = (
        ValueError, KeyError, EOFError, RuntimeError, OSError, pickle.UnpicklingError,
        zipfile.BadZipFile,
    )  # fmt: skip
    try:
        import safetensors

        types += (safetensors.SafetensorError,)
    except (ImportError, AttributeError):
        pass
    return types
