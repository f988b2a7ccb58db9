"""End to end: train, log, checkpoint, resume, evaluate, and stop cleanly on NaN, on a tiny config."""

import json
import os

import jax
import numpy as np
import pytest
from helpers import tiny_run_config

from mlrpl_jax import checkpointing, evaluate, methods, trainer


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One complete 2-epoch run (8 steps) of the tiny config."""
    root = tmp_path_factory.mktemp("run")
    config = tiny_run_config(root / "tfds")
    workdir = str(root / "work")
    final = trainer.run(config, workdir)
    return config, workdir, final


def test_run_writes_metrics_checkpoints_and_results(finished_run):
    _, workdir, final = finished_run
    assert set(final) >= {"mAP", "OP", "OR", "OF1", "CP", "CR", "CF1", "OF1_top3", "CF1_top3"}
    assert 0.0 <= final["mAP"] <= 100.0
    records = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    train = [r for r in records if "train/loss" in r]
    assert [r["step"] for r in train] == list(range(1, 9))
    assert all(np.isfinite(r["train/loss"]) and r["train/images_per_second"] > 0 for r in train)
    evals = [r for r in records if "eval/synthetic_scenes/mAP" in r]
    assert [r["epoch"] for r in evals] == [1, 2]
    assert evals[-1]["eval/synthetic_scenes/mAP"] == pytest.approx(final["mAP"])
    with open(os.path.join(workdir, "results.json")) as f:
        assert json.load(f)["metrics"]["mAP"] == pytest.approx(final["mAP"])
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(f"{workdir}/tensorboard"))
    assert sorted(os.listdir(f"{workdir}/checkpoints")) == ["4", "8"]
    assert len(os.listdir(f"{workdir}/best")) == 1
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["train"]["num_epochs"] == 2


def test_rerun_resumes_instead_of_restarting(finished_run, capsys):
    config, workdir, final = finished_run
    again = trainer.run(config, workdir)
    assert "Resumed from" in capsys.readouterr().out
    assert again["mAP"] == pytest.approx(final["mAP"], abs=1e-6)
    # No training step was repeated: still exactly one train record per step.
    steps = [r["step"] for r in read_jsonl(f"{workdir}/metrics.jsonl") if "train/loss" in r]
    assert steps == list(range(1, 9))


@pytest.mark.slow
def test_resume_from_epoch_one_equals_uninterrupted_run(finished_run, tmp_path):
    """Delete the final checkpoint: resuming from epoch 1 must reproduce the same final metrics."""
    config, workdir, final = finished_run
    import shutil

    copy = str(tmp_path / "work")
    shutil.copytree(workdir, copy)
    shutil.rmtree(os.path.join(copy, "checkpoints", "8"))
    resumed = trainer.run(config, copy)
    for key, value in final.items():
        assert resumed[key] == pytest.approx(value, abs=1e-4), key


def test_evaluate_cli_function_restores_the_best_checkpoint(finished_run):
    config, workdir, final = finished_run
    best = evaluate.evaluate_workdir(config, workdir, "best")
    latest = evaluate.evaluate_workdir(config, workdir, "latest")
    assert latest["mAP"] == pytest.approx(final["mAP"], abs=1e-6)
    ckpt = checkpointing.Checkpointer(workdir, max_to_keep=2, keep_best=True)
    best_step = ckpt.best.best_step()
    # The best checkpoint is the one with the highest *validation* mAP (partial labels), and
    # evaluating it on the test split gives the test mAP logged at that step.
    records = [
        r for r in read_jsonl(f"{workdir}/metrics.jsonl") if "eval/synthetic_scenes/mAP" in r
    ]
    val = {r["step"]: r["eval/synthetic_scenes/val/mAP"] for r in records}
    assert best_step == max(val, key=lambda k: (val[k], -k))
    assert ckpt.best_map() == pytest.approx(val[best_step], abs=1e-6)
    test_at_best = [r["eval/synthetic_scenes/mAP"] for r in records if r["step"] == best_step]
    assert best["mAP"] == pytest.approx(test_at_best[0], abs=1e-6)
    ckpt.close()
    assert os.path.exists(f"{workdir}/eval_best.json")
    with open(os.path.join(workdir, "results.json")) as f:
        selection = json.load(f)["selection"]
    assert (
        selection["select_on"] == "val" and "validation split (partial labels)" in selection["rule"]
    )


def test_evaluation_scores_every_test_example_with_the_configured_ap(finished_run):
    from mlrpl_jax import metrics

    config, workdir, final = finished_run
    exp = trainer.setup(config)
    ckpt = checkpointing.Checkpointer(workdir, max_to_keep=2, keep_best=True)
    state, _ = ckpt.restore_state(exp.state, which="latest")
    ckpt.close()
    scores, logits, targets = trainer.evaluate(exp, state)
    assert logits.shape == (24, 5)  # all 24 test images, although 24 is not a multiple of 16
    np.testing.assert_array_equal(targets, exp.test_source.labels_matrix())
    assert scores["mAP"] == pytest.approx(final["mAP"], abs=1e-6)
    config.train.ap_mode = "voc"
    voc, _, _ = trainer.evaluate(trainer.setup(config), state)
    config.train.ap_mode = "sklearn"
    expected = metrics.compute_metrics(logits, targets, ap_mode="voc")["mAP"]
    assert voc["mAP"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow  # a run up to its 6th step (~10 s)
def test_nan_loss_stops_with_step_and_terms_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    plain = methods.get("plain")

    def nan_after_epoch_one(model, config, params, batch_stats, method_state, batch, rng, clock):
        loss, aux = plain.loss_fn(
            model, config, params, batch_stats, method_state, batch, rng, clock
        )
        bad = np.float32(np.nan)
        return loss + (
            clock.step >= 5
        ) * bad, aux  # steps 0-4 are fine, step index 5 is the 6th step

    monkeypatch.setitem(methods.METHODS, "plain", plain._replace(loss_fn=nan_after_epoch_one))
    config = tiny_run_config(tmp_path / "tfds", **{"train.log_every_steps": 100})
    workdir = str(tmp_path / "work")
    with pytest.raises(
        FloatingPointError, match=r"at step 5: .*'loss': nan.*last good checkpoint \(step 4\)"
    ):
        trainer.run(config, workdir)
    assert sorted(os.listdir(f"{workdir}/checkpoints")) == ["4"]
    assert not os.path.exists(f"{workdir}/results.json")


def test_missing_dataset_says_how_to_prepare(tmp_path):
    config = tiny_run_config(tmp_path / "empty", **{"data.name": "voc/2007"})
    with pytest.raises(FileNotFoundError, match=r"(?s)voc/2007.*download_and_prepare"):
        trainer.run(config, str(tmp_path / "work"))


@pytest.mark.slow  # a whole run (~10 s)
def test_refresh_runs_before_every_epoch_with_a_deterministic_pass(tmp_path, monkeypatch):
    """`Method.refresh` is called before each epoch with one seeded pass over the train split."""
    plain = methods.get("plain")
    calls = []

    def refresh(config, model, params, batch_stats, method_state, epoch, batches):
        seen = list(batches())
        assert all(set(b) == {"image", "labels", "example_id"} for b in seen)  # no full labels
        assert all(b["image"].dtype == np.float32 for b in seen)  # normalised like loss_fn's
        ids = [np.asarray(jax.device_get(b["example_id"])) for b in seen]
        again = [np.asarray(jax.device_get(b["example_id"])) for b in batches()]
        calls.append((epoch, len(ids), np.concatenate(ids)))
        np.testing.assert_array_equal(np.concatenate(ids), np.concatenate(again))
        return method_state

    monkeypatch.setitem(methods.METHODS, "plain", plain._replace(refresh=refresh))
    config = tiny_run_config(tmp_path / "tfds")
    trainer.run(config, str(tmp_path / "work"))
    assert [(e, n) for e, n, _ in calls] == [(0, 4), (1, 4)]
    for _, _, ids in calls:  # 4 batches of 16 = one pass over the 64 train images
        assert sorted(ids.tolist()) == list(range(64))
    assert not np.array_equal(calls[0][2], calls[1][2])  # a new permutation each epoch


@pytest.mark.slow
def test_early_stop_when_selection_map_drops_and_a_rerun_does_not_resume(tmp_path, monkeypatch):
    """train.early_stop_drop: stop once the validation mAP is more than `drop` below its best
    (LargeLoss's protocol, 3 points); results.json records it and a rerun trains no further."""
    config = tiny_run_config(tmp_path / "tfds", **{"train.num_epochs": 4,
                                                    "train.early_stop_drop": 3.0})  # fmt: skip
    real = trainer.evaluate_epoch
    scores = iter([50.0, 52.0, 48.5, 40.0])

    def fake(exp, state):
        results = real(exp, state)
        results["val"]["mAP"] = next(scores)
        return results

    monkeypatch.setattr(trainer, "evaluate_epoch", fake)
    workdir = str(tmp_path / "work")
    trainer.run(config, workdir)
    with open(os.path.join(workdir, "results.json")) as f:
        results = json.load(f)
    stop = results["early_stopped"]
    assert (stop["epoch"], stop["best_mAP"], stop["mAP"]) == (3, 52.0, 48.5)
    assert results["step"] == 3 * 4  # 64 images / 16 per batch = 4 steps per epoch
    train_records = [r for r in read_jsonl(os.path.join(workdir, "metrics.jsonl"))
                     if "train/loss" in r]  # fmt: skip
    monkeypatch.setattr(trainer, "evaluate_epoch", real)
    trainer.run(config, workdir)
    again = [r for r in read_jsonl(os.path.join(workdir, "metrics.jsonl")) if "train/loss" in r]
    assert len(again) == len(train_records)  # nothing trained on the rerun


@pytest.mark.slow  # ~40 s on 2 cores
def test_an_epoch_whose_ratios_never_engaged_writes_no_bare_record(tmp_path):
    """SST before its pseudo labels start reports precision/recall counts with zero denominators:
    the epoch end writes no `train_epoch/` record for them (once a bare {step, epoch} line)."""
    config = tiny_run_config(tmp_path / "tfds", "sst", **{"method_config.generate_label_epoch": 5,
                                                          "train.num_epochs": 1})  # fmt: skip
    trainer.run(config, str(tmp_path / "work"))
    records = read_jsonl(str(tmp_path / "work" / "metrics.jsonl"))
    assert records and all(set(r) - {"step", "epoch"} for r in records), records
    assert any(k.endswith("/den") for r in records for k in r), "SST reports no counts"
