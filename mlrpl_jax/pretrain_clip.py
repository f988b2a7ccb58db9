r"""Pretrains the small CLIP a CPU can train (OpenAI CLIP's role at CPU scale) and measures it.

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

from mlrpl_jax import cli

cli.quiet_logs()

import json
import sys
import time
from typing import Any

from absl import flags
from ml_collections import config_flags

from mlrpl_jax import errors, pretrain

_FLAGS: dict = {}
# The config flags' defaults (the files are relative to the repository root).
CONFIG_DEFAULTS = {
    "config": "configs/pretrain_clip_synthetic.py",
    "eval_config": "configs/synthetic_transfer.py:plain",
}


def _define_flags() -> None:
    """The command line's flags (defined only when run as a program, as `mlrpl_jax.pretrain`'s)."""
    _FLAGS["config"] = config_flags.DEFINE_config_file(
        "config", CONFIG_DEFAULTS["config"], "Pretraining config.", lock_config=True
    )
    _FLAGS["eval_config"] = config_flags.DEFINE_config_file(
        "eval_config", CONFIG_DEFAULTS["eval_config"],
        "Config whose data is the evaluation world of the zero-shot test.", lock_config=True,
    )  # fmt: skip
    _FLAGS["workdir"] = flags.DEFINE_string("workdir", None, "Run directory of the pretraining.")
    _FLAGS["out"] = flags.DEFINE_string("out", None, "Where to write the CLIP weights (.npz).")
    _FLAGS["print_config"] = flags.DEFINE_bool(
        "print_config", False, "Print the resolved configs and exit."
    )


def export_clip(config, workdir: str, out: str) -> dict[str, Any]:
    """Writes the CLIP of `workdir`'s newest (final) checkpoint to `out` and checks the file reads
    back strictly into the same variables. Returns {'step', 'num_tensors'}."""
    import jax
    import numpy as np

    from mlrpl_jax.models import clip, clip_convert, pretrained

    state, step = pretrain.final_state(config, workdir)
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
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; every setting is a --flag (see --help).")
    # Every input is checked before the (long) training starts.
    workdir, out = _FLAGS["workdir"].value, _FLAGS["out"].value
    if not _FLAGS["print_config"].value:
        pretrain.check_workdir_and_out(workdir, out)
    config = pretrain.validated(_FLAGS["config"])
    if "clip_arch" not in config.method_config:
        raise errors.ConfigError(
            f"--config: method {config.method!r} has no CLIP to export (no "
            "config.method_config.clip_arch); give a CLIP method's config, such as "
            "configs/pretrain_clip_synthetic.py (clip_pretrain)."
        )
    eval_config = pretrain.validated(_FLAGS["eval_config"])
    if _FLAGS["print_config"].value:
        pretrain.print_configs(config=config, eval_config=eval_config)
        return
    import jax

    from mlrpl_jax import launch

    launch.setup_process()

    from mlrpl_jax.metric_writer import atomic_write_json
    from mlrpl_jax.models import clip, clip_convert

    report, final = pretrain.train_timed(config, workdir)
    report["pretraining_world_zero_shot_test"] = {k: final[k] for k in ("mAP", "OF1", "CF1")}
    report["export"] = export_clip(config, workdir, out)
    print(f"Wrote {out} (CLIP of step {report['export']['step']}).")
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
    sys.argv = pretrain.with_config_defaults(sys.argv, CONFIG_DEFAULTS)
    _define_flags()
    cli.run_absl(main, __doc__)
