"""Shared test helpers."""

import textwrap
import types

import numpy as np

from configs import tiny
from mlrpl_jax import methods


def tiny_run_config(data_dir, method: str = "plain", **overrides):
    """configs/tiny.py for `method` with its TFDS data in `data_dir` and dotted-key `overrides`."""
    config = tiny.get_config(method)
    config.data.data_dir = str(data_dir)
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config


def fake_data_info(
    num_classes: int, embedding_dim: int = 8, seed: int = 0, num_examples: int = 64
) -> methods.DataInfo:
    """A DataInfo with random category embeddings, a random row-stochastic-like adjacency and
    random partial labels (num_examples, C)."""
    rng = np.random.default_rng(seed)
    adjacency = rng.random((num_classes, num_classes)).astype(np.float32)
    np.fill_diagonal(adjacency, 1.0)
    semantics = types.SimpleNamespace(
        embeddings=rng.normal(size=(num_classes, embedding_dim)).astype(np.float32),
        adjacency=adjacency,
        embedding_source="random (test)",
    )
    partial = rng.integers(-1, 2, size=(num_examples, num_classes)).astype(np.int8)
    return methods.DataInfo(
        num_classes=num_classes,
        class_names=tuple(f"class_{c}" for c in range(num_classes)),
        num_train_examples=num_examples,
        train_partial_labels=lambda: partial,
        label_semantics=lambda: semantics,
    )


# Prepended to a subprocess script: makes `import tensorflow` fail, as if it were not installed.
NO_TENSORFLOW = textwrap.dedent(
    """
    import importlib.machinery, sys

    _find_spec = importlib.machinery.PathFinder.find_spec.__func__

    def find_spec(cls, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            return None  # As if TensorFlow were not installed.
        return _find_spec(cls, name, path, target)

    importlib.machinery.PathFinder.find_spec = classmethod(find_spec)
    """
)


def normalize(images):
    """ImageNet normalisation of uint8 images (the default `Method.normalize_images`)."""
    from mlrpl_jax.methods import base

    return base.imagenet_normalize(None, images)


def init_params(method, config, info, model, images, seed: int = 0) -> dict:
    """{'params': model params + the method's own at ['method'], 'batch_stats': ...}, as the
    trainer initialises them."""
    import jax

    variables = model.init(jax.random.PRNGKey(seed), images, train=False)
    params = dict(variables["params"])
    own = method.init_params(config, info)
    if own:
        params["method"] = {k: jax.numpy.asarray(v) for k, v in own.items()}
    return {"params": params, "batch_stats": variables.get("batch_stats", {})}


def restore_latest(config, workdir):
    """(experiment, latest TrainState) of a finished run in `workdir` (no pretrained loading)."""
    from mlrpl_jax import checkpointing, trainer

    exp = trainer.setup(config, pretrained=False)
    ckpt = checkpointing.Checkpointer(workdir, max_to_keep=2, keep_best=True)
    state, _ = ckpt.restore_state(exp.state, which="latest")
    ckpt.close()
    return exp, state


def refresh_on(method, config, model, variables, method_state, batches, epoch):
    """`method.refresh` before `epoch` over `batches` (uint8 images normalised, as the trainer
    passes them)."""
    seen = [{"image": normalize(b["image"]), "labels": b["labels"]} for b in batches]
    return method.refresh(
        config, model, variables["params"], variables["batch_stats"], method_state, epoch,
        lambda: iter(seen),
    )  # fmt: skip


def dot_precisions(fn, *args) -> list:
    """The `precision` of every dot_general in fn's jaxpr (sub-jaxprs of jit, vmap, while and
    cond included): what the program asks of an accelerator's matmul units, which XLA:CPU
    computes in float32 at any precision."""
    import jax

    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                found.append(eqn.params["precision"])
            for value in eqn.params.values():
                for sub in value if isinstance(value, (tuple, list)) else (value,):
                    if isinstance(sub, jax.extend.core.ClosedJaxpr):
                        walk(sub.jaxpr)
                    elif isinstance(sub, jax.extend.core.Jaxpr):
                        walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


def torch_asl(logits, target, *, gamma_pos: float, gamma_neg: float, clip: float = 0.05):
    """ASL as the authors' torch code computes it, per entry (the caller reduces): log terms
    clamped at 1e-8, p_neg = min(1 - p + clip, 1) (1 - p at clip 0), focusing weight
    torch.pow(1 - pt, gamma_pos y + gamma_neg (1 - y)) with pt = p y + p_neg (1 - y) and its
    gradient kept. `logits`, `target`: torch tensors of the same shape (target in {0, 1})."""
    import torch

    p = torch.sigmoid(logits)
    p_neg = (1 - p + clip).clamp(max=1) if clip > 0 else 1 - p
    log_terms = target * torch.log(p.clamp(min=1e-8)) + (1 - target) * torch.log(
        p_neg.clamp(min=1e-8)
    )
    pt = p * target + p_neg * (1 - target)
    return -log_terms * torch.pow(1 - pt, gamma_pos * target + gamma_neg * (1 - target))
