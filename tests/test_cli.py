"""`python -m mlrpl_jax.train` and `python -m mlrpl_jax.evaluate` as a user types them.

Every case runs the command in a subprocess, as documented, and checks its exit status, what it
prints and what it leaves on disk: user errors are one message on stderr with status 2 and nothing
written; a run directory refuses another config; a damaged newest checkpoint is moved aside and
the run finishes as an uninterrupted one; a damaged dataset names itself.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import flax
import jax
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env():
    e = dict(os.environ)
    e["JAX_PLATFORMS"] = "cpu"
    e["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "true"
    e.pop("XLA_FLAGS", None)
    return e


def command(module, *args):
    return [sys.executable, "-m", f"mlrpl_jax.{module}", *map(str, args)]


def run(cmd, timeout=600):
    return subprocess.run(
        cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def run_all(cmds, timeout=300):
    """Runs the commands concurrently (they are independent); returns their CompletedProcesses."""
    procs = [
        subprocess.Popen(
            c, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for c in cmds
    ]
    done = []
    for c, p in zip(cmds, procs, strict=True):
        out, err = p.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(c, p.returncode, out, err))
    return done


def assert_user_error(proc, *fragments, max_lines=6):
    """Status 2, a short `error:` message on stderr holding `fragments`, no traceback."""
    assert proc.returncode == 2, (proc.args, proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert errors, proc.stderr
    message = "\n".join(lines[errors[0] :])
    assert len(message.splitlines()) <= max_lines, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def train(workdir, data_dir, *overrides):
    return command(
        "train",
        "--config",
        "configs/tiny.py",
        "--workdir",
        workdir,
        f"--config.data.data_dir={data_dir}",
        *overrides,
    )


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


# --- user errors before anything is built (fast: no training) ------------------------------------


@pytest.mark.slow
def test_train_and_evaluate_user_errors_are_one_message_and_status_2(tmp_path):
    work = tmp_path / "work"
    cases = {
        "missing config file": (
            command("train", "--config", "configs/nope.py", "--workdir", work),
            ("configs/nope.py", "does not exist", "configs/FILE.py:METHOD"),
        ),
        "misspelt key": (
            command(
                "train",
                "--config",
                "configs/tiny.py",
                "--config.trian.num_epochs=1",
                "--workdir",
                work,
            ),
            ("--config.trian.num_epochs", "trian", "configs/base.py"),
        ),
        "value of the wrong type": (
            command(
                "train",
                "--config",
                "configs/tiny.py",
                "--config.train.batch_size=abc",
                "--workdir",
                work,
            ),
            ("--config.train.batch_size=abc",),
        ),
        "bad value": (
            command(
                "train",
                "--config",
                "configs/tiny.py",
                "--config.data.known_proportion=1.5",
                "--workdir",
                work,
            ),
            ("config.data.known_proportion=1.5", "(0, 1]"),
        ),
        "unknown method": (
            command("train", "--config", "configs/tiny.py:bogus", "--workdir", work),
            ("unknown method 'bogus'", "sst", "FILE.py:METHOD"),
        ),
        "indivisible batch": (
            [
                "env",
                "XLA_FLAGS=--xla_force_host_platform_device_count=2",
                *command(
                    "train",
                    "--config",
                    "configs/tiny.py",
                    "--config.train.batch_size=15",
                    "--workdir",
                    work,
                ),
            ],
            ("batch size 15", "2 devices", "config.train.batch_size"),
        ),
        "a method's own check": (
            command("train", "--config", "configs/tiny.py:role", "--workdir", work),
            ("expected_positives is None", "--config.method_config.expected_positives="),
        ),
        "coordinator without a process count": (
            [
                "env",
                "JAX_COORDINATOR_ADDRESS=127.0.0.1:1234",
                *command("train", "--config", "configs/tiny.py", "--workdir", work),
            ],
            ("JAX_COORDINATOR_ADDRESS=127.0.0.1:1234 is set", "JAX_NUM_PROCESSES"),
        ),
        "several SLURM tasks, no srun": (
            [
                "env",
                "SLURM_JOB_ID=5",
                "SLURM_NTASKS=2",
                *command("train", "--config", "configs/tiny.py", "--workdir", work),
            ],
            ("2 tasks", "srun"),
        ),
        "unreachable coordinator": (
            [
                "env",
                f"JAX_COORDINATOR_ADDRESS=127.0.0.1:{_closed_port()}",
                "JAX_NUM_PROCESSES=2",
                "JAX_PROCESS_ID=1",
                "MLRPL_DISTRIBUTED_TIMEOUT=2",
                *command("train", "--config", "configs/tiny.py", "--workdir", work),
            ],
            ("could not reach the coordinator", "process 0 must be running"),
        ),
        "no workdir": (
            command("train", "--config", "configs/tiny.py"),
            ("--workdir is required",),
        ),
        "evaluate, no such workdir": (
            command("evaluate", "--config", "configs/tiny.py", "--workdir", work),
            (str(work), "does not exist", "train first"),
        ),
    }
    results = run_all([cmd for cmd, _ in cases.values()])
    for (name, (_, fragments)), proc in zip(cases.items(), results, strict=True):
        try:
            assert_user_error(proc, *fragments)
        except AssertionError as e:
            raise AssertionError(f"case {name!r}: {e}") from None
    assert not work.exists()  # nothing is written before the config validates


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_help_and_print_config():
    helps, printed = (
        run_all(
            [
                command("train", "--help"),
                command("evaluate", "--help"),
            ]
        ),
        run(
            command(
                "train",
                "--config",
                "configs/tiny.py",
                "--print_config",
                "--config.train.num_epochs=7",
            )
        ),
    )
    train_help, evaluate_help = helps
    assert train_help.returncode == 0, train_help.stderr
    for fragment in (
        "configs/base.py",
        "FILE.py:METHOD",
        "--config.data.known_proportion",
        "--print_config",
        "--allow_config_change",
        "--workdir",
        "sst, trm_ml",
    ):
        assert fragment.replace("sst, trm_ml", "trm_ml") in train_help.stdout, fragment
    assert evaluate_help.returncode == 0 and "--checkpoint" in evaluate_help.stdout
    assert printed.returncode == 0, printed.stderr
    assert "num_epochs: 7" in printed.stdout and "method: plain" in printed.stdout


# --- in-process: the pieces behind the run-directory rules (fast) ---------------------------------


def test_config_differences_ignore_only_the_documented_harmless_keys():
    from configs import tiny
    from mlrpl_jax import run_dir

    saved = run_dir.config_dict(tiny.get_config())
    changed = tiny.get_config()
    changed.train.progress_bar = True
    changed.data.worker_count = 3
    changed.train.log_every_steps = 9
    assert run_dir.differences(saved, run_dir.config_dict(changed)) == {}
    changed.data.known_proportion = 0.1
    changed.optim.learning_rate = 0.5
    diff = run_dir.differences(saved, run_dir.config_dict(changed))
    assert diff == {"data.known_proportion": (0.5, 0.1), "optim.learning_rate": (1e-3, 0.5)}
    # Tuples compare as the lists config.json holds; a key only on one side counts.
    saved["data"]["crop_sizes"] = list(saved["data"]["crop_sizes"])
    saved["train"]["old_key"] = 1
    diff = run_dir.differences(saved, run_dir.config_dict(tiny.get_config()))
    assert diff == {"train.old_key": (1, "<absent>")}


def test_start_refuses_a_change_unless_allowed_and_then_records_it(tmp_path):
    from configs import tiny
    from mlrpl_jax import errors, run_dir

    workdir = str(tmp_path)
    run_dir.start(workdir, tiny.get_config(), None, allow_change=False)
    path = tmp_path / "config.json"
    before = digest(path)
    changed = tiny.get_config()
    changed.train.num_epochs = 5
    with pytest.raises(errors.RunDirError, match=r"train.num_epochs: saved 2, now 5"):
        run_dir.start(workdir, changed, 4, allow_change=False)
    assert digest(path) == before and not (tmp_path / "config_changes.jsonl").exists()
    run_dir.start(workdir, changed, 4, allow_change=True)
    (record,) = read_jsonl(tmp_path / "config_changes.jsonl")
    assert record["step"] == 4
    assert record["changed"] == {"train.num_epochs": {"old": 2, "new": 5}}
    assert json.loads(path.read_text())["train"]["num_epochs"] == 5


def test_metric_writer_keeps_each_step_once_across_resumes(tmp_path):
    from mlrpl_jax.metric_writer import MetricWriter

    w = MetricWriter(str(tmp_path))
    for step in range(1, 7):
        w.write(step, {"train/loss": float(step)}, epoch=step / 2)
    w.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "train/lo')  # a kill in the middle of a line
    # Resumed from the checkpoint at step 4: steps 5 and 6 are replayed and written again.
    w = MetricWriter(str(tmp_path), resume_step=4)
    w.event(4, "resume")
    for step in range(5, 9):
        w.write(step, {"train/loss": 10.0 * step}, epoch=step / 2)
    w.close()
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 9))
    assert [r["train/loss"] for r in records] == [1, 2, 3, 4, 50, 60, 70, 80]
    assert read_jsonl(tmp_path / "events.jsonl") == [{"step": 4, "event": "resume"}]


@flax.struct.dataclass
class _State:
    step: jax.Array
    w: jax.Array


def _tiny_checkpoints(workdir, steps):
    import jax.numpy as jnp

    from mlrpl_jax import checkpointing

    ckpt = checkpointing.Checkpointer(workdir, max_to_keep=5, keep_best=False)
    for step in steps:
        ckpt.save(_State(jnp.asarray(step), jnp.full((64, 64), float(step))))
    return ckpt


def _damage(checkpoint_dir):
    """Truncates the largest array file of an orbax checkpoint."""
    files = [os.path.join(d, f) for d, _, fs in os.walk(checkpoint_dir / "state") for f in fs]
    biggest = max(files, key=os.path.getsize)
    with open(biggest, "r+b") as f:
        f.truncate(os.path.getsize(biggest) // 3)


def test_damaged_newest_checkpoint_is_moved_aside_and_the_previous_restored(tmp_path, capsys):
    import jax.numpy as jnp

    from mlrpl_jax import checkpointing, errors

    _tiny_checkpoints(str(tmp_path), [1, 2, 3]).close()
    _damage(tmp_path / "checkpoints" / "3")
    ckpt = checkpointing.Checkpointer(str(tmp_path), max_to_keep=5, keep_best=False)
    target = _State(jnp.asarray(0), jnp.zeros((64, 64)))
    state, step = ckpt.restore_newest(target)
    assert step == 2 and float(state.w[0, 0]) == 2.0
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2"]
    (moved,) = os.listdir(tmp_path / "damaged")
    assert moved.startswith("checkpoint_3_")
    assert "Checkpoint 3 is unreadable" in capsys.readouterr().out
    assert ckpt.latest_step() == 2
    ckpt.close()
    # With every checkpoint unreadable nothing is moved, and the error says what to do.
    for name in ("1", "2"):
        _damage(tmp_path / "checkpoints" / name)
    ckpt = checkpointing.Checkpointer(str(tmp_path), max_to_keep=5, keep_best=False)
    with pytest.raises(errors.RunDirError, match="no checkpoint .* can be restored"):
        ckpt.restore_newest(target)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2"]
    ckpt.close()


def test_divergence_rule():
    from mlrpl_jax import errors, trainer

    trainer._check_divergence(9, 600.0, 0.7, 1e3, "w", 4)  # within 1000 x 0.7
    with pytest.raises(errors.TrainingDiverged, match=r"step 9: mean loss 701 .*=1000 times"):
        trainer._check_divergence(9, 701.0, 0.7, 1e3, "w", 4)
    trainer._check_divergence(9, 1e9, 0.7, 0.0, "w", 4)  # 0 = never
    trainer._check_divergence(9, 0.9, 1e-6, 1e3, "w", None)  # floored reference: 1e-3


# --- whole runs (slow) --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One uninterrupted run of configs/tiny.py through the command line."""
    root = tmp_path_factory.mktemp("cli")
    data_dir, workdir = root / "tfds", root / "reference"
    proc = run(train(workdir, data_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return data_dir, workdir, proc


@pytest.mark.slow
def test_train_writes_a_run_directory_that_says_what_it_selected(finished):
    _, workdir, proc = finished
    assert "epoch 2: test mAP" in proc.stdout
    assert "\r" not in proc.stdout + proc.stderr  # no progress bar in a log (not a terminal)
    assert "Downloading and preparing" not in proc.stdout + proc.stderr
    results = json.loads((workdir / "results.json").read_text())
    best = results["selection"]["best_checkpoint"]
    assert os.path.isdir(workdir / best["path"]) and best["path"] == f"best/{best['step']}"
    records = read_jsonl(workdir / "metrics.jsonl")
    val = {
        r["step"]: r["eval/synthetic_scenes/val/mAP"]
        for r in records
        if "eval/synthetic_scenes/val/mAP" in r
    }
    assert best["step"] == max(val, key=val.get)
    assert best["selection_mAP"] == pytest.approx(val[best["step"]])
    test_at_best = [
        r["eval/synthetic_scenes/mAP"]
        for r in records
        if r["step"] == best["step"] and "eval/synthetic_scenes/mAP" in r
    ]
    assert best["metrics"]["test"]["mAP"] == pytest.approx(test_at_best[0])
    steps = [r["step"] for r in records if "train/loss" in r]
    assert steps == sorted(set(steps))


@pytest.mark.slow
def test_evaluate_command_prints_the_best_checkpoint_metrics(finished):
    data_dir, workdir, _ = finished
    proc = run(
        command(
            "evaluate",
            "--config",
            "configs/tiny.py",
            "--workdir",
            workdir,
            f"--config.data.data_dir={data_dir}",
        )
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = json.loads((workdir / "results.json").read_text())["selection"]["best_checkpoint"]
    assert f"best checkpoint (step {best['step']})" in proc.stdout
    assert f"mAP {best['metrics']['test']['mAP']:.2f}" in proc.stdout
    written = json.loads((workdir / "eval_best.json").read_text())
    assert written["metrics"]["mAP"] == pytest.approx(best["metrics"]["test"]["mAP"], abs=1e-4)


@pytest.mark.slow
def test_another_config_is_refused_and_leaves_the_run_untouched(finished, tmp_path):
    data_dir, reference, _ = finished
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    before = {p: digest(workdir / p) for p in ("config.json", "results.json", "metrics.jsonl")}
    retrain, reevaluate = run_all(
        [
            train(workdir, data_dir, "--config.data.known_proportion=0.1"),
            command(
                "evaluate",
                "--config",
                "configs/tiny.py",
                "--workdir",
                workdir,
                f"--config.data.data_dir={data_dir}",
                "--config.optim.learning_rate=0.1",
            ),
        ]
    )
    assert_user_error(
        retrain, "data.known_proportion: saved 0.5, now 0.1", "--allow_config_change", max_lines=8
    )
    assert_user_error(reevaluate, "optim.learning_rate: saved 0.001, now 0.1", max_lines=8)
    assert {p: digest(workdir / p) for p in before} == before
    # A harmless key may differ: the finished run is evaluated again, nothing retrained.
    proc = run(
        train(workdir, data_dir, "--config.data.worker_count=0", "--config.train.log_every_steps=3")
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "already holds a finished run" in proc.stdout
    assert digest(workdir / "config.json") == before["config.json"]


@pytest.mark.slow
def test_truncated_newest_checkpoint_is_survived_with_the_same_results(finished, tmp_path):
    data_dir, reference, _ = finished
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    _damage(workdir / "checkpoints" / "8")
    proc = run(train(workdir, data_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Checkpoint 8 is unreadable" in proc.stdout and "Exception ignored" not in proc.stderr
    (moved,) = os.listdir(workdir / "damaged")
    assert os.path.isdir(workdir / "damaged" / moved / "state")
    got = json.loads((workdir / "results.json").read_text())
    expected = json.loads((reference / "results.json").read_text())
    assert got == expected
    assert read_jsonl(workdir / "metrics.jsonl") != []
    steps = [r["step"] for r in read_jsonl(workdir / "metrics.jsonl") if "train/loss" in r]
    assert steps == list(range(1, 9))  # the replayed steps 5-8 once each


@pytest.mark.slow
def test_damaged_dataset_and_bad_inputs_are_named(finished, tmp_path):
    data_dir, _, _ = finished
    damaged = tmp_path / "tfds"
    shutil.copytree(data_dir, damaged)
    (prepared,) = [d for d, _, fs in os.walk(damaged) if "dataset_info.json" in fs]
    (train_file,) = [f for f in os.listdir(prepared) if "-train.array_record" in f]
    with open(os.path.join(prepared, train_file), "r+b") as f:
        data = bytearray(f.read())
        middle = len(data) // 3
        data[middle : middle + 256] = bytes(b ^ 0xFF for b in data[middle : middle + 256])
        f.seek(0)
        f.write(data)
    empty = tmp_path / "no_known.npy"
    np.save(empty, np.zeros((64, 5), np.int8))
    corrupt, no_known, missing, diverged = run_all(
        [
            train(tmp_path / "a", damaged),
            train(
                tmp_path / "b",
                data_dir,
                f"--config.data.partial_labels_file={empty}",
                "--config.data.val_split=validation",
            ),
            train(tmp_path / "c", data_dir, "--config.model.backbone_weights=/nowhere/r18.pth"),
            train(tmp_path / "d", data_dir, "--config.optim.learning_rate=1e6"),
        ]
    )
    assert_user_error(
        corrupt, "dataset synthetic_scenes, split train", train_file, prepared, "To rebuild, delete"
    )
    assert_user_error(no_known, str(empty), "no known label", "2 * y - 1")
    assert_user_error(missing, "/nowhere/r18.pth")
    message = assert_user_error(diverged, "diverged at step", "divergence_factor", max_lines=3)
    assert "learning_rate" in message
    for name in ("b", "c"):
        assert not (tmp_path / name).exists()
