"""Pretrains the small CLIP a CPU can train (OpenAI CLIP's role at CPU scale) and measures it.

  python -m mlrpl_jax.pretrain_clip --workdir runs/pretrain_clip_synthetic \
      --out weights/synthetic_clip_rn.npz

Three stages, each safe to interrupt and rerun:

1. **Train** `--config` (default ``configs/pretrain_clip_synthetic.py``: `clip_pretrain`, the
   contrastive loss on generated captions, on the 40-class *pretraining world*) in ``--workdir``
   with the usual trainer (resumes from the newest checkpoint; a finished run is not repeated).
2. **Export** the last checkpoint's CLIP (both towers, BatchNorm statistics, temperature) as a
   PyTorch-layout ``.npz`` state dict at ``--out`` (``models.clip_convert.to_state_dict``, written
   atomically), the file `config.method_config.clip_weights` of the CLIP methods reads; it is read
   back strictly into the preset's architecture and compared before the command ends.
3. **Zero-shot** on the *evaluation world* (``--eval_config``, default the transfer benchmark's
   data, ``configs/synthetic_transfer.py``: 10 classes, seed 0): the test images' embeddings
   against "a photo of a <name>." for each class name (cosine), test mAP over the classes,
   compared with the same CLIP at its random initialisation. (Every test label is used, as for any
   evaluation; nothing is trained on the evaluation world.)

The figures (zero-shot mAP on the pretraining world's test split from the trainer, on the
evaluation world, wall times) are printed and written beside the weights as ``<out>.json``.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json
import time
from typing import Any

from absl import app, flags
from ml_collections import config_flags

_FLAGS: dict = {}


def _define_flags() -> None:
    _FLAGS["config"] = config_flags.DEFINE_config_file(
        "config", "configs/pretrain_clip_synthetic.py", "Pretraining config.", lock_config=True
    )
    _FLAGS["eval_config"] = config_flags.DEFINE_config_file(
        "eval_config", "configs/synthetic_transfer.py:plain",
        "Config whose data is the evaluation world of the zero-shot test.", lock_config=True,
    )  # fmt: skip
    _FLAGS["workdir"] = flags.DEFINE_string("workdir", None, "Run directory of the pretraining.")
    _FLAGS["out"] = flags.DEFINE_string("out", None, "Where to write the CLIP weights (.npz).")
    flags.mark_flags_as_required(["workdir", "out"])


def export_clip(config, workdir: str, out: str) -> dict[str, Any]:
    """Writes the CLIP of `workdir`'s newest (final) checkpoint to `out` and checks the file reads
    back strictly into the same variables. Returns {'step', 'num_tensors'}."""
    import jax
    import numpy as np

    from mlrpl_jax.models import clip, clip_convert, pretrained
    from mlrpl_jax.pretrain import final_state

    state, step = final_state(config, workdir)
    variables = {"params": state.params["clip"], "batch_stats": state.batch_stats["clip"]}
    variables = jax.device_get(variables)
    state_dict = clip_convert.to_state_dict(variables)
    pretrained.save_npz(out, state_dict)
    arch = clip.PRESETS[config.method_config.clip_arch]
    _, reread = clip_convert.convert_state_dict(clip_convert.read_checkpoint(out), arch)
    for a, b in zip(jax.tree.leaves(reread), jax.tree.leaves(variables), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    return {"step": step, "num_tensors": len(state_dict)}


def zero_shot_map(eval_config, arch, variables, batch_size: int = 100) -> float:
    """Test mAP (%) of the zero-shot scores cos(image, "a photo of a <name>.") on the data of
    `eval_config` (evaluation transform, CLIP normalisation)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mlrpl_jax import metrics
    from mlrpl_jax.data import pipeline
    from mlrpl_jax.models import clip

    splits = pipeline.make_splits(eval_config.data)
    names = splits.test.class_names
    ids = clip.make_tokenizer(arch).tokenize(
        [f"a photo of a {n.replace('_', ' ')}." for n in names], arch.context_length
    )
    model = clip.CLIP(arch)

    @jax.jit
    def scores(images):
        x = clip.normalize(images.astype(jnp.float32) / 255.0)
        image = model.apply(variables, x, method=clip.CLIP.encode_image)
        text = model.apply(variables, jnp.asarray(ids), method=clip.CLIP.encode_text)
        image = image / jnp.linalg.norm(image, axis=-1, keepdims=True)
        text = text / jnp.linalg.norm(text, axis=-1, keepdims=True)
        return image @ text.T

    out, labels = [], []
    for batch in pipeline.eval_batches(eval_config.data, splits.test, batch_size):
        valid = batch["valid"]
        out.append(np.asarray(scores(batch["image"]))[valid])
        labels.append(batch["targets"][valid])
    ap = metrics.average_precision(np.concatenate(out), np.concatenate(labels))
    return float(np.mean(ap) * 100)


def main(argv):
    del argv
    import jax

    from mlrpl_jax.metric_writer import atomic_write_json
    from mlrpl_jax.models import clip, clip_convert
    from mlrpl_jax.pretrain import train_timed

    config, workdir, out = (_FLAGS[k].value for k in ("config", "workdir", "out"))
    report, final = train_timed(config, workdir)
    report["pretraining_world_zero_shot_test"] = {k: final[k] for k in ("mAP", "OF1", "CF1")}
    report["export"] = export_clip(config, workdir, out)
    print(f"Wrote {out} (CLIP of step {report['export']['step']}).")
    eval_config = _FLAGS["eval_config"].value
    arch = clip.PRESETS[config.method_config.clip_arch]
    start = time.perf_counter()
    _, trained = clip_convert.convert_state_dict(clip_convert.read_checkpoint(out), arch)
    report["evaluation_world_zero_shot_test_mAP"] = {
        "pretrained": zero_shot_map(eval_config, arch, trained),
        "random_init": zero_shot_map(eval_config, arch, clip.init_variables(arch, jax.random.key(0))),
    }  # fmt: skip
    report["zero_shot_seconds"] = time.perf_counter() - start
    report["eval_data"] = eval_config.data.synthetic.to_dict()
    atomic_write_json(out + ".json", report)
    print(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=2))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
