"""The one training loop: mesh, data, init, the jitted step, logging, evaluation and checkpoints.

No branch here depends on the method: everything method-specific comes through `methods.base.Method`.
A run lives in its workdir and resumes automatically from the newest checkpoint found there.
"""

import functools
import math
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from mlrpl_jax import checkpointing, config_validation, methods, metrics, optim, sharding
from mlrpl_jax.data import label_semantics, pipeline
from mlrpl_jax.metric_writer import MetricWriter, atomic_write_json, format_table
from mlrpl_jax.models import pretrained
from mlrpl_jax.train_state import TrainState, eval_step, split_params, train_step


class Experiment(NamedTuple):
    """Everything built from a config that training and evaluation share."""

    config: ml_collections.ConfigDict
    mesh: Any
    method: methods.Method
    model: Any
    num_classes: int
    steps_per_epoch: int
    total_steps: int
    state: TrainState  # freshly initialised, sharded
    state_sharding: Any
    step_fn: Any  # jitted (state, batch) -> (state, metrics), state donated
    eval_fn: Any  # jitted (state, images) -> logits
    train_source: Any
    test_source: Any


def setup(config: ml_collections.ConfigDict) -> Experiment:
    """Validates the config and builds data sources, model, optimiser, initial state and jitted steps."""
    config_validation.validate(config)
    mesh = sharding.make_mesh()
    method = methods.get(config.method)
    train_source = pipeline.make_source(config.data, config.data.train_split)
    test_source = pipeline.make_source(config.data, config.data.test_split)
    num_classes = train_source.num_classes
    steps_per_epoch = len(train_source) // config.train.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"config.train.batch_size={config.train.batch_size} exceeds the {len(train_source)} "
            f"examples of {config.data.name}[{config.data.train_split}]; lower it."
        )
    if config.train.max_steps_per_epoch > 0:
        steps_per_epoch = min(steps_per_epoch, config.train.max_steps_per_epoch)
    total_steps = steps_per_epoch * config.train.num_epochs

    @functools.cache
    def semantics():
        result = label_semantics.label_semantics(config.data, train_source)
        if jax.process_index() == 0:
            print(f"Category embeddings {result.embeddings.shape}: {result.embedding_source}.")
        return result

    data_info = methods.DataInfo(num_classes, train_source.class_names, semantics)
    model, state, state_sharding, step_fn, eval_fn = make_train_fns(
        config, method, data_info, mesh, steps_per_epoch, total_steps
    )
    return Experiment(
        config, mesh, method, model, num_classes, steps_per_epoch, total_steps, state,
        state_sharding, step_fn, eval_fn, train_source, test_source,
    )  # fmt: skip


def make_train_fns(
    config: ml_collections.ConfigDict,
    method: methods.Method,
    data_info: methods.DataInfo,
    mesh: Any,
    steps_per_epoch: int,
    total_steps: int,
) -> tuple[Any, TrainState, Any, Any, Any]:
    """Model, initial replicated TrainState and the jitted train/eval steps for `mesh`.

    The backbone starts from `config.model.backbone_weights` when it names a file.

    Returns (model, state, state_sharding, step_fn, eval_fn) where step_fn(state, batch) -> (state,
    metrics) donates its state and eval_fn(state, images) -> logits (B, C).
    """
    delayed = method.delayed_params(config) if method.delayed_params is not None else ()
    tx, schedule = optim.make_optimizer(config.optim, steps_per_epoch, total_steps, delayed)
    model = method.make_model(config, data_info)
    frozen = method.frozen_params(config)
    size = pipeline.image_size(config.data)

    def init(rng):
        init_rng, state_rng, method_rng = jax.random.split(rng, 3)
        variables = model.init(init_rng, jnp.zeros((1, size, size, 3), jnp.float32), train=False)
        params = variables["params"]
        trainable, _ = split_params(params, frozen)
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(trainable),
            batch_stats=variables.get("batch_stats", {}),
            method_state=method.init_state(config, data_info, method_rng),
            rng=state_rng,
        )

    rng = jax.random.PRNGKey(config.seed)
    state_sharding = sharding.tree_replicated(jax.eval_shape(init, rng), mesh)
    state = jax.jit(init, out_shardings=state_sharding)(rng)
    if config.model.backbone_weights is not None:
        params, batch_stats = pretrained.load_backbone_weights(
            config.model.backbone_weights,
            jax.device_get(state.params),
            jax.device_get(state.batch_stats),
        )
        state = jax.device_put(
            state.replace(params=params, batch_stats=batch_stats), state_sharding
        )
    batch_sh = sharding.batch_sharding(mesh)
    step_fn = jax.jit(
        functools.partial(
            train_step,
            model=model,
            config=config,
            method=method,
            tx=tx,
            frozen=frozen,
            learning_rate_fn=schedule,
            steps_per_epoch=steps_per_epoch,
        ),
        in_shardings=(state_sharding, batch_sh),
        out_shardings=(state_sharding, sharding.replicated(mesh)),
        donate_argnums=0,
    )
    eval_fn = jax.jit(
        functools.partial(eval_step, model=model, config=config, method=method),
        in_shardings=(state_sharding, batch_sh),
        out_shardings=batch_sh,
    )
    return model, state, state_sharding, step_fn, eval_fn


def evaluate(exp: Experiment, state: TrainState) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Scores the whole test split. Returns (metrics in %, logits (N, C), targets (N, C))."""
    local_bs = sharding.local_batch_size(exp.config.train.eval_batch_size, exp.mesh)
    outputs = []
    for batch in pipeline.eval_batches(
        exp.config.data, exp.test_source, local_bs, jax.process_index(), jax.process_count()
    ):
        batch = sharding.host_to_global(batch, exp.mesh)
        outputs.append((exp.eval_fn(state, batch["image"]), batch["targets"], batch["valid"]))
    logits, targets, valid = (
        np.concatenate([sharding.to_host(o[i]) for o in outputs]) for i in range(3)
    )
    logits, targets = logits[valid], targets[valid]
    scores = metrics.compute_metrics(
        logits, targets, from_logits=True, ap_mode=exp.config.train.ap_mode
    )
    return scores, logits, targets


def refresh_batches(exp: Experiment, epoch: int):
    """One pass (steps_per_epoch global batches) of augmented, shuffled training data for a method's
    `refresh` at the start of `epoch` (the reference collects prototype features from its train
    loader). Seeded by (config.seed, epoch) and independent of the training iterator, so a resumed run
    refreshes exactly as an uninterrupted one."""
    cfg = exp.config
    local_bs = sharding.local_batch_size(cfg.train.batch_size, exp.mesh)
    seed = int(np.random.SeedSequence([cfg.seed, epoch, 0x5EF]).generate_state(1)[0])
    loader = pipeline.make_train_loader(cfg.data, exp.train_source, local_bs, seed)
    for _ in range(exp.steps_per_epoch):
        yield sharding.host_to_global(next(loader), exp.mesh)


def _ratios(sums: dict[str, float]) -> dict[str, float]:
    """'<name>' = sum('<name>/num') / sum('<name>/den') for every such pair with a non-zero sum.

    Methods report ratios that must aggregate exactly (e.g. pseudo-label precision over an epoch) as
    two count metrics, '<name>/num' and '<name>/den'.
    """
    out = {}
    for key, num in sums.items():
        if key.endswith("/num"):
            den = sums.get(key[: -len("num")] + "den", 0.0)
            if den > 0:
                out[key[: -len("/num")]] = num / den
    return out


def _check_finite(history: list[tuple[int, dict[str, float]]], workdir: str, last_ckpt) -> None:
    """Stops the run on a non-finite loss or norm, naming the step and every term."""
    for step, values in history:
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            kept = (
                f"the last good checkpoint (step {last_ckpt}) in {workdir} is kept"
                if last_ckpt is not None
                else f"no checkpoint had been written to {workdir} yet"
            )
            raise FloatingPointError(
                f"Non-finite training values at step {step}: {bad} (all terms: {values}). Training "
                f"stopped; {kept}. Lower config.optim.learning_rate or check the data, then rerun "
                "to resume."
            )


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Trains (resuming from `workdir` if it holds a checkpoint), evaluates, returns final metrics."""
    os.makedirs(workdir, exist_ok=True)
    exp = setup(config)
    cfg = exp.config
    if jax.process_index() == 0:
        atomic_write_json(os.path.join(workdir, "config.json"), cfg.to_dict())
    local_bs = sharding.local_batch_size(cfg.train.batch_size, exp.mesh)
    train_iter = pipeline.make_train_loader(cfg.data, exp.train_source, local_bs, cfg.seed)
    ckpt = checkpointing.Checkpointer(
        workdir, max_to_keep=cfg.checkpoint.max_to_keep, keep_best=cfg.checkpoint.keep_best
    )
    writer = MetricWriter(workdir)
    state = exp.state
    start = ckpt.latest_step()
    if start is not None:
        state = ckpt.restore(state, train_iter, start)
        print(f"Resumed from {workdir}/checkpoints/{start}.")
        writer.write(start, {}, event="resume")
    step = int(jax.device_get(state.step))
    spe, total = exp.steps_per_epoch, exp.total_steps
    final = None
    results_path = os.path.join(workdir, "results.json")
    if step >= total and os.path.exists(results_path):
        print(f"{workdir} already holds a finished run (step {step}); evaluating it again.")
    bar = tqdm(
        total=total, initial=step, disable=not cfg.train.progress_bar or jax.process_index() != 0,
        dynamic_ncols=True, desc="train",
    )  # fmt: skip
    pending, tick, tick_step = [], time.perf_counter(), step
    epoch_counts: dict[str, float] = {}  # sums of '<name>/num' and '<name>/den' metrics this epoch
    while step < total:
        if exp.method.refresh is not None and step % spe == 0:
            epoch = step // spe
            state = exp.method.refresh(
                cfg, exp.model, state, epoch, functools.partial(refresh_batches, exp, epoch)
            )
        batch = sharding.host_to_global(next(train_iter), exp.mesh)
        with jax.transfer_guard("disallow"):  # the step itself never moves data implicitly
            state, step_metrics = exp.step_fn(state, batch)
        pending.append((step, step_metrics))
        step += 1
        bar.update(1)
        epoch_end = step % spe == 0 or step == total
        if step % cfg.train.log_every_steps == 0 or epoch_end:
            history = [(s, {k: float(v) for k, v in m.items()}) for s, m in jax.device_get(pending)]
            _check_finite(history, workdir, ckpt.latest_step())
            pending = []
            now = time.perf_counter()
            ips = (step - tick_step) * cfg.train.batch_size / max(now - tick, 1e-9)
            tick, tick_step = now, step
            sums = {k: float(np.sum([m[k] for _, m in history])) for k in history[0][1]}
            mean = {f"train/{k}": v / len(history) for k, v in sums.items()}
            mean.update({f"train/{k}": v for k, v in _ratios(sums).items()})
            mean["train/images_per_second"] = ips
            writer.write(step, mean, epoch=step / spe)
            for k, v in sums.items():
                if k.endswith(("/num", "/den")):
                    epoch_counts[k] = epoch_counts.get(k, 0.0) + v
            if epoch_end and epoch_counts:
                ratios = {f"train_epoch/{k}": v for k, v in _ratios(epoch_counts).items()}
                writer.write(step, ratios, epoch=math.ceil(step / spe))
                epoch_counts = {}
            bar.set_postfix(loss=f"{mean['train/loss']:.4f}", img_s=f"{ips:.0f}")
        if not epoch_end:
            continue
        epoch = math.ceil(step / spe)
        if epoch % cfg.train.eval_every_epochs == 0 or step == total:
            final, _, _ = evaluate(exp, state)
            writer.write(
                step, {f"eval/{cfg.data.name}/{k}": v for k, v in final.items()}, epoch=epoch
            )
            bar.write(f"epoch {epoch}: test mAP {final['mAP']:.2f}")
            ckpt.save_best(state, final)
        if epoch % cfg.checkpoint.every_epochs == 0 or step == total:
            ckpt.save(state, train_iter)
    bar.close()
    if final is None:  # nothing left to train: evaluate the restored final state
        final, _, _ = evaluate(exp, state)
    if jax.process_index() == 0:
        atomic_write_json(results_path, {"step": step, "epoch": step / spe, "metrics": final})
        print(
            format_table(
                final, title=f"{cfg.method} on {cfg.data.name}: test metrics (%) at step {step}"
            )
        )
    writer.close()
    ckpt.close()
    return final
