"""The one training loop: mesh, data, init, the jitted step, logging, evaluation and checkpoints.

No branch here depends on the method: everything method-specific comes through `methods.base.Method`.
A run lives in its workdir and resumes automatically from the newest checkpoint found there.
"""

import functools
import json
import math
import os
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from tqdm import tqdm

from mlrpl_jax import (
    checkpointing,
    config_validation,
    methods,
    metrics,
    optim,
    preemption,
    run_dir,
    sharding,
)
from mlrpl_jax.data import label_semantics, pipeline, sources
from mlrpl_jax.errors import ConfigError, TrainingDiverged
from mlrpl_jax.metric_writer import MetricWriter, atomic_write_json, format_table
from mlrpl_jax.train_state import TrainState, eval_step, model_input, split_params, train_step


class Experiment(NamedTuple):
    """Everything built from a config that training and evaluation share."""

    config: ml_collections.ConfigDict
    mesh: Any
    method: methods.Method
    model: Any
    num_classes: int
    steps_per_epoch: int
    total_steps: int
    state: TrainState  # freshly initialised (pretrained weights loaded), sharded
    state_sharding: Any
    step_fn: Any  # jitted (state, batch) -> (state, metrics), state donated
    eval_fns: dict[str, Any]  # 'raw' (and 'ema'): jitted (state, images) -> logits
    normalize_fn: Any  # jitted (uint8 images[, views]) -> the method's model input (model_input)
    train_source: Any
    val_source: Any  # None without a validation split
    test_source: Any


def make_data_info(config: ml_collections.ConfigDict, train_source: Any) -> methods.DataInfo:
    """The `DataInfo` of `train_source`; its partial labels and label semantics are computed on
    first use."""

    @functools.cache
    def partial_labels():
        return label_semantics.train_partial_labels(config.data, train_source)

    @functools.cache
    def semantics():
        result = label_semantics.label_semantics(config.data, train_source)
        if jax.process_index() == 0:
            print(f"Category embeddings {result.embeddings.shape}: {result.embedding_source}.")
        return result

    return methods.DataInfo(
        num_classes=train_source.num_classes,
        class_names=train_source.class_names,
        num_train_examples=len(train_source),
        train_partial_labels=partial_labels,
        label_semantics=semantics,
    )


def setup(config: ml_collections.ConfigDict, *, pretrained: bool = True) -> Experiment:
    """Validates the config (before any data is opened) and builds data sources, model, optimiser,
    initial state and jitted steps. `pretrained=False` skips `Method.load_pretrained` (for a state
    that is restored from a checkpoint anyway, e.g. `mlrpl_jax.evaluate`)."""
    config_validation.validate(config_validation.resolve_none(config))
    mesh = sharding.make_mesh()
    for batch_size in (config.train.batch_size, config.train.eval_batch_size):
        sharding.local_batch_size(batch_size, mesh)  # divisible by the devices, or a ConfigError
    method = methods.get(config.method)
    splits = pipeline.make_splits(config.data)
    steps_per_epoch = len(splits.train) // config.train.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"config.train.batch_size={config.train.batch_size} exceeds the {len(splits.train)} "
            f"examples of {config.data.name}[{splits.train.split}]; lower it."
        )
    if config.train.max_steps_per_epoch > 0:
        steps_per_epoch = min(steps_per_epoch, config.train.max_steps_per_epoch)
    total_steps = steps_per_epoch * config.train.num_epochs
    data_info = make_data_info(config, splits.train)
    fns = make_train_fns(
        config, method, data_info, mesh, steps_per_epoch, total_steps, pretrained=pretrained
    )
    return Experiment(
        config, mesh, method, fns.model, data_info.num_classes, steps_per_epoch, total_steps,
        fns.state, fns.state_sharding, fns.step_fn, fns.eval_fns, fns.normalize_fn,
        splits.train, splits.val, splits.test,
    )  # fmt: skip


class TrainFns(NamedTuple):
    """What `make_train_fns` builds."""

    model: Any
    state: TrainState
    state_sharding: Any
    step_fn: Any
    eval_fns: dict[str, Any]
    normalize_fn: Any


class StepFns(NamedTuple):
    """What `make_step_fns` builds: everything but the state's values."""

    model: Any
    init: Any  # (rng, method_state, own) -> TrainState
    abstract_state: TrainState  # ShapeDtypeStructs of the state, with their shardings
    state_sharding: Any
    step_fn: Any
    eval_fns: dict[str, Any]
    normalize_fn: Any


def make_step_fns(
    config: ml_collections.ConfigDict,
    method: methods.Method,
    data_info: methods.DataInfo,
    mesh: Any,
    steps_per_epoch: int,
    total_steps: int,
    method_state: Any,
    own: dict,
) -> StepFns:
    """The model, the state's shapes and shardings (the method's rules) and the jitted steps for
    `mesh`, without creating the state: `method_state` and `own` (the method's state and own
    parameters) may be arrays or ShapeDtypeStructs (`mlrpl_jax.plan` compiles the steps on
    abstract shapes). The steps: step_fn(state, batch) -> (state, metrics) donates its state;
    eval_fns['raw'] (and 'ema' with weight EMA)(state, images) -> logits (B, C)."""
    groups = tuple(method.param_groups(config))
    tx, schedule = optim.make_optimizer(config.optim, steps_per_epoch, total_steps, groups)
    model = method.make_model(config, data_info)
    size = pipeline.image_size(config.data)
    use_ema = config.train.ema_decay > 0

    def init(rng, method_state, own):
        init_rng, state_rng, _ = jax.random.split(rng, 3)
        variables = model.init(init_rng, jnp.zeros((1, size, size, 3), jnp.float32), train=False)
        params = dict(variables["params"])
        if own:
            params[methods.base.METHOD_PARAMS] = own
        batch_stats = variables.get("batch_stats", {})
        trainable, _ = split_params(params, groups)
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(trainable),
            batch_stats=batch_stats,
            method_state=method_state,
            rng=state_rng,
            ema={"params": params, "batch_stats": batch_stats} if use_ema else {},
        )

    rng = jax.random.PRNGKey(config.seed)
    rules = tuple(method.state_sharding(config))
    abstract = jax.eval_shape(init, rng, method_state, own)
    state_sharding = sharding.tree_shardings(abstract, mesh, rules)
    abstract = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, state_sharding
    )
    batch_sh = sharding.batch_sharding(mesh)
    step_fn = jax.jit(
        functools.partial(
            train_step,
            model=model,
            config=config,
            method=method,
            tx=tx,
            groups=groups,
            learning_rate_fn=schedule,
            steps_per_epoch=steps_per_epoch,
        ),
        in_shardings=(state_sharding, batch_sh),
        out_shardings=(state_sharding, sharding.replicated(mesh)),
        donate_argnums=0,
    )
    eval_fns = {
        name: jax.jit(
            functools.partial(
                eval_step, model=model, config=config, method=method, use_ema=name == "ema"
            ),
            in_shardings=(state_sharding, batch_sh),
            out_shardings=batch_sh,
        )
        for name in (("raw", "ema") if use_ema else ("raw",))
    }
    normalize_fn = jax.jit(functools.partial(model_input, config, method), out_shardings=batch_sh)
    return StepFns(model, init, abstract, state_sharding, step_fn, eval_fns, normalize_fn)


def make_train_fns(
    config: ml_collections.ConfigDict,
    method: methods.Method,
    data_info: methods.DataInfo,
    mesh: Any,
    steps_per_epoch: int,
    total_steps: int,
    *,
    pretrained: bool = True,
) -> TrainFns:
    """Model, initial TrainState (sharded by the method's rules) and the jitted steps for `mesh`
    (`make_step_fns`).

    With `pretrained`, the new state is filled by `method.load_pretrained` (e.g. ImageNet weights
    from `config.model.backbone_weights`).
    """
    rng = jax.random.PRNGKey(config.seed)
    # The method's state and own parameters are built outside jit (they may hold large host
    # tables, which jit would embed as constants) and placed on the mesh with the method's
    # sharding, each device receiving its part.
    method_state = method.init_state(config, data_info, jax.random.split(rng, 3)[2])
    own = dict(method.init_params(config, data_info))
    fns = make_step_fns(
        config, method, data_info, mesh, steps_per_epoch, total_steps, method_state, own
    )
    state_sharding = fns.state_sharding
    method_state = jax.device_put(method_state, state_sharding.method_state)
    if own:
        own = jax.device_put(own, state_sharding.params[methods.base.METHOD_PARAMS])
    state = jax.jit(fns.init, out_shardings=state_sharding)(rng, method_state, own)
    if pretrained:
        params, batch_stats = method.load_pretrained(
            config, sharding.tree_to_host(state.params), sharding.tree_to_host(state.batch_stats)
        )
        use_ema = config.train.ema_decay > 0
        ema = {"params": params, "batch_stats": batch_stats} if use_ema else {}
        state = jax.device_put(
            state.replace(params=params, batch_stats=batch_stats, ema=ema), state_sharding
        )
    return TrainFns(fns.model, state, state_sharding, fns.step_fn, fns.eval_fns, fns.normalize_fn)


def evaluate_weights(
    exp: Experiment, state: TrainState, split: str, weights: tuple[str, ...]
) -> dict[str, tuple[dict[str, float], np.ndarray, np.ndarray]]:
    """Scores a whole split ('test' or 'val') with each of `weights` ('raw', 'ema') in one pass
    over its data. Returns {weights: (metrics in %, logits (N, C), targets (N, C))}.

    The test split, and the validation split with `config.data.val_labels='full'`, are scored on
    their full labels (`metrics.compute_metrics`); a validation split with 'partial' labels, and
    any split of a natively partially labelled dataset (Open Images), on its known entries only
    (`metrics.partial_label_metrics`, mAP).
    """
    cfg = exp.config
    source = exp.test_source if split == "test" else exp.val_source
    masked = split == "val" and cfg.data.val_labels == "partial"
    mask = pipeline.make_mask_transform(cfg.data, source, validation=True) if masked else None
    partial = masked or sources.native_partial(source)
    local_bs = sharding.local_batch_size(cfg.train.eval_batch_size, exp.mesh)
    outputs = []
    for batch in pipeline.eval_batches(
        cfg.data, source, local_bs, jax.process_index(), jax.process_count(), mask=mask
    ):
        batch = sharding.host_to_global(batch, exp.mesh)
        logits = [exp.eval_fns[w](state, batch["image"]) for w in weights]
        outputs.append((*logits, batch["targets"], batch["valid"]))
    columns = [
        np.concatenate([sharding.to_host(o[i]) for o in outputs]) for i in range(len(weights) + 2)
    ]
    targets, valid = columns[-2][columns[-1]], columns[-1]
    results = {}
    for w, logits in zip(weights, columns[:-2], strict=True):
        logits = logits[valid]
        if partial:
            scores = metrics.partial_label_metrics(logits, targets, ap_mode=cfg.train.ap_mode)
        else:
            scores = metrics.compute_metrics(
                logits, targets, from_logits=True, ap_mode=cfg.train.ap_mode
            )
        results[w] = (scores, logits, targets)
    return results


def evaluate(
    exp: Experiment, state: TrainState, split: str = "test", weights: str = "raw"
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """`evaluate_weights` for one set of weights: (metrics in %, logits (N, C), targets (N, C))."""
    return evaluate_weights(exp, state, split, (weights,))[weights]


def refresh_batches(exp: Experiment, epoch: int):
    """One pass (steps_per_epoch global batches) of augmented, shuffled training data for a method's
    `refresh` at the start of `epoch` (the reference collects prototype features from its train
    loader): {'image' (normalised by the method), 'labels', 'example_id'}, no full labels. Seeded by
    (config.seed, epoch) and independent of the training iterator, so a resumed run refreshes exactly
    as an uninterrupted one."""
    cfg = exp.config
    seed = int(np.random.SeedSequence([cfg.seed, epoch, 0x5EF]).generate_state(1)[0])
    loader = pipeline.make_train_loader(cfg.data, exp.train_source, cfg.train.batch_size, seed)
    for _ in range(exp.steps_per_epoch):
        batch = next(loader)
        batch = sharding.host_to_global(
            {k: batch[k] for k in ("image", "view", "labels", "example_id") if k in batch}, exp.mesh
        )
        view = batch.pop("view", None)
        yield dict(batch, image=exp.normalize_fn(batch["image"], view))


def run_refresh(exp: Experiment, state: TrainState, epoch: int) -> TrainState:
    """`Method.refresh` before `epoch` (under the mesh), with its new method state."""
    with jax.set_mesh(exp.mesh):
        method_state = exp.method.refresh(
            exp.config, exp.model, state.params, state.batch_stats, state.method_state, epoch,
            functools.partial(refresh_batches, exp, epoch),
        )  # fmt: skip
    return state.replace(method_state=jax.device_put(method_state, exp.state_sharding.method_state))


def evaluate_epoch(exp: Experiment, state: TrainState) -> dict[str, dict[str, float]]:
    """{'<split>' or '<split>/ema': metrics} for the test split and the validation split (if any),
    with the raw weights and, with weight EMA, the EMA weights."""
    results = {}
    splits = ("val", "test") if exp.val_source is not None else ("test",)
    for split in splits:
        scored = evaluate_weights(exp, state, split, tuple(exp.eval_fns))
        for weights, (values, _, _) in scored.items():
            results[split if weights == "raw" else f"{split}/ema"] = values
    return results


def selection_score(cfg: ml_collections.ConfigDict, results: dict) -> tuple[float, str]:
    """(mAP used to select the best checkpoint, which results entry gave it): on
    `config.train.select_on`'s split, the better of the raw and EMA weights when EMA is on."""
    split = cfg.train.select_on
    candidates = [k for k in results if k.split("/")[0] == split]

    def key(name):
        value = results[name]["mAP"]
        return (value if math.isfinite(value) else -math.inf, name == split)

    best = max(candidates, key=key)
    return results[best]["mAP"], best


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
            raise TrainingDiverged(
                f"non-finite training values at step {step}: {bad} (all terms: {values}). "
                f"Training stopped; {_kept(workdir, last_ckpt)}"
            )


def _kept(workdir: str, last_ckpt: int | None) -> str:
    """What a stopped run leaves behind, and what to do next."""
    if last_ckpt is None:
        where = f"no checkpoint had been written to {workdir} yet"
    else:
        where = f"the last good checkpoint (step {last_ckpt}) in {workdir} is kept"
    return (
        f"{where}. Lower config.optim.learning_rate or check the data, and train in a new "
        "--workdir (or resume this one with --allow_config_change, which records the change)."
    )


def _check_divergence(
    step: int, loss: float, reference: float | None, factor: float, workdir: str, last_ckpt
) -> None:
    """Stops the run when the logged mean loss exceeds `factor` x the first logged mean loss of
    the run (floored at 1e-3, so a run starting near zero is not stopped by noise):
    `config.train.divergence_factor`, 0 = never."""
    if factor <= 0 or reference is None:
        return
    limit = factor * max(abs(reference), 1e-3)
    if abs(loss) > limit:
        raise TrainingDiverged(
            f"training diverged at step {step}: mean loss {loss:.4g} is more than "
            f"config.train.divergence_factor={factor:g} times the first logged loss "
            f"({reference:.4g}). Training stopped; {_kept(workdir, last_ckpt)}"
        )


def _first_loss(path: str | os.PathLike) -> float | None:
    """The first logged mean train loss in metrics.jsonl (the divergence reference), or None."""
    path = epath.Path(path)
    if not path.exists():
        return None
    with path.open() as f:
        for line in f:
            record = json.loads(line)
            if "train/loss" in record:
                return float(record["train/loss"])
    return None


def run(
    config: ml_collections.ConfigDict, workdir: str, *, allow_config_change: bool = False
) -> dict[str, float]:
    """Trains (resuming from `workdir` if it holds a checkpoint), evaluates, returns the final test
    metrics (of the raw weights; results.json also holds the EMA and validation metrics and the
    selected checkpoint).

    Nothing is written before the config validates and matches the run already in `workdir`
    (`run_dir`: another config is refused unless `allow_config_change`, which records the
    change). Raises `errors.UserError` subclasses for what the user can fix."""
    config_validation.validate(config_validation.resolve_none(config))
    if not allow_config_change and epath.Path(workdir).is_dir():
        run_dir.check_same_config(workdir, config, training=True)  # fail before the (slow) set-up
    exp = setup(config)
    cfg = exp.config
    train_ops = pipeline.train_operations(cfg.data, exp.train_source)  # checks a labels file
    # Created once the data, its labels and the model are all built.
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    ckpt = checkpointing.Checkpointer(
        workdir, max_to_keep=cfg.checkpoint.max_to_keep, keep_best=cfg.checkpoint.keep_best
    )
    state = exp.state
    restored = ckpt.restore_newest(state)
    start = None if restored is None else restored[1]
    if jax.process_index() == 0:
        run_dir.start(workdir, cfg, start, allow_change=allow_config_change)
    writer = MetricWriter(workdir, resume_step=start)
    if restored is not None:
        state = restored[0]
        print(f"Resumed from {workdir}/checkpoints/{start}.")
        writer.event(start, "resume")
    first_loss = _first_loss(writer.path)
    step = int(jax.device_get(state.step))
    spe, total = exp.steps_per_epoch, exp.total_steps
    # The data position is the step: global batch `step` comes next, on any process layout.
    train_iter = pipeline.make_train_loader(
        cfg.data, exp.train_source, cfg.train.batch_size, cfg.seed, start_step=step,
        operations=train_ops,
    )  # fmt: skip
    results_path = epath.Path(workdir) / "results.json"
    stopped = _early_stop_record(results_path)
    if (step >= total or stopped) and results_path.exists():
        print(f"{workdir} already holds a finished run (step {step}); evaluating it again.")
    bar = tqdm(
        total=total, initial=step, disable=not _show_progress(cfg), dynamic_ncols=True,
        desc="train",
    )  # fmt: skip
    try:
        with preemption.watch() as preempt:
            step, state, results, stopped = _train_loop(
                exp, state, step, train_iter, ckpt, writer, bar, first_loss, preempt, workdir,
                stopped,
            )  # fmt: skip
    except preemption.Preempted:
        bar.close()
        writer.close()
        ckpt.close()
        raise
    bar.close()
    if results is None:  # nothing left to train: evaluate the restored final state
        results = evaluate_epoch(exp, state)
    final = results["test"]
    if jax.process_index() == 0:
        _, source = selection_score(cfg, results)
        best_summary = _best_summary(ckpt)
        atomic_write_json(
            results_path,
            {
                "step": step,
                "epoch": step / spe,
                "metrics": final,
                "all_metrics": results,
                "early_stopped": stopped or None,
                "selection": {
                    "select_on": cfg.train.select_on,
                    # Which weights (raw or EMA) on which split selected the best checkpoint.
                    "best_checkpoint_source": (best_summary or {}).get("selection_source")
                    or source,
                    "rule": "best checkpoint (workdir/best) by mAP on "
                    + ("the test split (paper reproduction)" if cfg.train.select_on == "test"
                       else f"the validation split ({cfg.data.val_labels} labels)")
                    + (", raw or EMA weights, whichever is higher" if "test/ema" in results
                       else ""),
                    "best_checkpoint": best_summary,
                },
            },
        )  # fmt: skip
        print(
            format_table(
                final, title=f"{cfg.method} on {cfg.data.name}: test metrics (%) at step {step}"
            )
        )
    writer.close()
    ckpt.close()
    return final


def _train_loop(exp, state, step, train_iter, ckpt, writer, bar, first_loss, preempt, workdir,
                stopped):  # fmt: skip
    """Trains from `step` to the end (or an early stop): logging, evaluation, checkpoints.
    Returns (step, state, the last evaluation's results or None, the early-stop record or None).
    Raises `preemption.Preempted` after saving a checkpoint when `preempt` says so."""
    cfg = exp.config
    spe, total = exp.steps_per_epoch, exp.total_steps
    results = None
    pending, tick, tick_step = [], time.perf_counter(), step
    epoch_counts: dict[str, float] = {}  # sums of '<name>/num' and '<name>/den' metrics this epoch
    while step < total and not stopped:
        if exp.method.refresh is not None and step % spe == 0:
            state = run_refresh(exp, state, step // spe)
        batch = sharding.host_to_global(next(train_iter), exp.mesh)
        with jax.transfer_guard("disallow"):  # the step itself never moves data implicitly
            state, step_metrics = exp.step_fn(state, batch)
        pending.append((step, step_metrics))
        step += 1
        bar.update(1)
        epoch_end = step % spe == 0 or step == total
        preempted = preempt.reached(step)  # on every process, every step
        if step % cfg.train.log_every_steps == 0 or epoch_end or preempted:
            history = [(s, {k: float(v) for k, v in m.items()}) for s, m in jax.device_get(pending)]
            _check_finite(history, workdir, ckpt.latest_step())
            pending = []
            now = time.perf_counter()
            ips = (step - tick_step) * cfg.train.batch_size / max(now - tick, 1e-9)
            tick, tick_step = now, step
            sums = {k: float(np.sum([m[k] for _, m in history])) for k in history[0][1]}
            mean = {f"train/{k}": v / len(history) for k, v in sums.items()}
            if first_loss is None:
                first_loss = mean["train/loss"]
            _check_divergence(
                step, mean["train/loss"], first_loss, cfg.train.divergence_factor, workdir,
                ckpt.latest_step(),
            )  # fmt: skip
            mean.update({f"train/{k}": v for k, v in _ratios(sums).items()})
            mean["train/images_per_second"] = ips
            writer.write(step, mean, epoch=step / spe)
            for k, v in sums.items():
                if k.endswith(("/num", "/den")):
                    epoch_counts[k] = epoch_counts.get(k, 0.0) + v
            if epoch_end and epoch_counts:
                ratios = {f"train_epoch/{k}": v for k, v in _ratios(epoch_counts).items()}
                if ratios:  # every denominator zero (nothing engaged): no record
                    writer.write(step, ratios, epoch=math.ceil(step / spe))
                epoch_counts = {}
            bar.set_postfix(loss=f"{mean['train/loss']:.4f}", img_s=f"{ips:.0f}")
        if epoch_end:
            results, stopped = _end_epoch(exp, state, step, ckpt, writer, bar, stopped, results)
        if preempted and step < total and not stopped:  # (at the end, just finish)
            ckpt.save(state)
            writer.event(step, "preempted")
            raise preemption.Preempted(step, workdir)
    return step, state, results, stopped


def _end_epoch(exp, state, step, ckpt, writer, bar, stopped, results):
    """Evaluation, best-checkpoint selection, early stopping and the periodic checkpoint at the end
    of an epoch. Returns (results, stopped)."""
    cfg = exp.config
    spe, total = exp.steps_per_epoch, exp.total_steps
    epoch = math.ceil(step / spe)
    if epoch % cfg.train.eval_every_epochs == 0 or step == total:
        results = evaluate_epoch(exp, state)
        writer.write(step, _eval_record(cfg, results), epoch=epoch)
        score, source = selection_score(cfg, results)
        _say(bar, f"epoch {epoch}: test mAP {results['test']['mAP']:.2f}" + (
            f", selection mAP ({source}) {score:.2f}" if source != "test" else ""
        ))  # fmt: skip
        best = max(ckpt.best_map(), score)
        ckpt.save_best(
            state,
            {"mAP": score, "source": source, "step": step, "epoch": epoch,
             "results": _finite(results)},
        )  # fmt: skip
        drop = cfg.train.early_stop_drop
        if drop > 0 and best - score > drop:
            stopped = {"epoch": epoch, "step": step, "best_mAP": best, "mAP": score,
                       "rule": f"selection mAP more than {drop:g} below its best"}  # fmt: skip
            _say(bar, f"Early stop after epoch {epoch}: {source} mAP {score:.2f}, "
                      f"best {best:.2f}.")  # fmt: skip
    if epoch % cfg.checkpoint.every_epochs == 0 or step == total or stopped:
        ckpt.save(state)
    return results, stopped


def _show_progress(cfg: ml_collections.ConfigDict) -> bool:
    """The progress bar: asked for, on process 0, and only on a terminal (not in a log file)."""
    return bool(cfg.train.progress_bar and jax.process_index() == 0 and sys.stderr.isatty())


def _say(bar, text: str) -> None:
    """A line for the user (process 0 only), above the progress bar when there is one."""
    if jax.process_index() == 0:
        bar.write(text)


def _finite(results: dict) -> dict:
    """`results` with NaN/inf values as None (stored as JSON beside the best checkpoint)."""
    return {
        name: {k: (v if math.isfinite(v) else None) for k, v in values.items()}
        for name, values in results.items()
    }


def _best_summary(ckpt: checkpointing.Checkpointer) -> dict | None:
    """The selected (best) checkpoint for results.json: step, epoch, the selection mAP and which
    weights and split gave it, and every split's metrics at that epoch (raw and EMA)."""
    record = ckpt.best_record()
    if record is None:
        return None
    return {
        "path": f"best/{record.get('step')}",
        "step": record.get("step"),
        "epoch": record.get("epoch"),
        "selection_mAP": record["mAP"],
        "selection_source": record.get("source"),
        "metrics": record.get("results"),
    }


def _early_stop_record(results_path: str | os.PathLike) -> dict | None:
    """The early-stop record of a run that stopped early (results.json), else None."""
    results_path = epath.Path(results_path)
    if not results_path.exists():
        return None
    with results_path.open() as f:
        return json.load(f).get("early_stopped")


def _eval_record(cfg: ml_collections.ConfigDict, results: dict) -> dict[str, float]:
    """Metric-writer record of `evaluate_epoch`'s results: 'eval/<dataset>/<k>' for the test split
    (as before), 'eval/<dataset>/<split>/<k>' for the others."""
    record = {}
    for name, values in results.items():
        prefix = f"eval/{cfg.data.name}" + ("" if name == "test" else f"/{name}")
        record.update({f"{prefix}/{k}": v for k, v in values.items()})
    return record
