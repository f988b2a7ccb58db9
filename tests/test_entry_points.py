"""Every command runs as the README and the docstrings type it, from the repository root.

Each entry point is run in a subprocess (`python -m mlrpl_jax.X ...`, `python scripts/X.py ...`):
on tiny inputs it succeeds and prints what it did; on a user's mistake it prints one
`error: ...` message on stderr (no traceback), exits with status 2 and writes nothing. The cheap
error paths (no jax needed) come first; the full runs are `slow`. (The full runs of
`mlrpl_jax.pretrain` and `scripts/sweep.py` are tests/test_pretrain.py::test_pretrain_command_line
and tests/test_sweep.py.)
"""

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Commands whose --help answers before jax is imported, and those that import it first.
QUICK_HELP = (
    ("scripts/benchmark_clip.py",), ("scripts/benchmark_data.py",),
    ("scripts/benchmark_example_table.py",), ("scripts/convert_clip.py",),
    ("scripts/prepare_data.py",), ("scripts/sweep.py",), ("scripts/launch_local.py",),
    ("scripts/benchmark_multiprocess.py",), ("scripts/check_published.py",),
    ("scripts/benchmark_accelerator.py",), ("scripts/learning_margins.py",),
    ("scripts/mutation_score.py",),
    ("-m", "mlrpl_jax.pretrain"), ("-m", "mlrpl_jax.pretrain_clip"),
)  # fmt: skip
SLOW_HELP = (
    ("scripts/benchmark_heads.py",), ("scripts/benchmark_kmeans.py",),
    ("scripts/benchmark_train.py",), ("scripts/calibrate_transfer.py",),
    ("scripts/transfer_floors.py",), ("scripts/convert_torchvision_resnet.py",),
)  # fmt: skip


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python ARGS...` in the repository root, as a user types it."""
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        check=False,
    )  # fmt: skip


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str, absent=()) -> None:
    """Status 2, one `error: ...` message naming `needles` on stderr, no traceback, and none of
    the paths `absent` written."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    assert proc.stderr.startswith("error: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)
    for path in absent:
        assert not os.path.exists(path), f"{path} was written before the inputs were checked"


# --- scripts/prepare_data.py ---------------------------------------------------------------------


def fake_nus(root: str, bad_label_file: bool = False) -> None:
    """A NUS-WIDE manual directory (the README's layout): 3 train and 2 test images."""
    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(root, "ImageList"))
    os.makedirs(os.path.join(root, "Groundtruth", "TrainTestLabels"))
    concepts = [f"concept{c}" for c in range(81)]
    with open(os.path.join(root, "Concepts81.txt"), "w") as f:
        f.writelines(f"{c}\n" for c in concepts)
    for tag, n in (("Train", 3), ("Test", 2)):
        paths = [f"folder\\{tag}{i}.jpg" for i in range(n)]
        with open(os.path.join(root, "ImageList", f"{tag}Imagelist.txt"), "w") as f:
            f.writelines(f"{p}\n" for p in paths)
        labels = (rng.random((n, 81)) < 0.2).astype(np.uint8)
        labels[:, 0] = 1
        for c, concept in enumerate(concepts):
            name = os.path.join(
                root, "Groundtruth", "TrainTestLabels", f"Labels_{concept}_{tag}.txt"
            )
            with open(name, "w") as f:
                f.writelines(f"{v}\n" for v in labels[:, c])
        for p in paths:
            from PIL import Image

            os.makedirs(os.path.join(root, "Flickr", "folder"), exist_ok=True)
            pixels = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(os.path.join(root, "Flickr", *p.split("\\")), "JPEG")
    if bad_label_file:
        with open(os.path.join(root, "Groundtruth", "TrainTestLabels", "Labels_concept7_Test.txt"),
                  "w") as f:  # fmt: skip
            f.write("0\n2\n")


def test_prepare_data_unknown_dataset(tmp_path):
    data_dir = str(tmp_path / "tfds")
    proc = run("scripts/prepare_data.py", "imagenet", "--data_dir", data_dir)
    assert_user_error(proc, "unknown dataset 'imagenet'", "voc/2007", absent=[data_dir])


def test_prepare_data_manual_dataset_without_manual_dir_prints_the_layout(tmp_path):
    data_dir = str(tmp_path / "tfds")
    proc = run("scripts/prepare_data.py", "nus", "--data_dir", data_dir)
    assert_user_error(proc, "nus_wide needs --manual_dir", absent=[data_dir])
    assert "Concepts81.txt" in proc.stdout  # the layout, on stdout


def test_prepare_data_manual_dir_that_does_not_exist(tmp_path):
    data_dir = str(tmp_path / "tfds")
    proc = run("scripts/prepare_data.py", "cub", "--manual_dir", str(tmp_path / "raw"),
               "--data_dir", data_dir)  # fmt: skip
    assert_user_error(proc, f"--manual_dir {tmp_path / 'raw'} is not a directory",
                      absent=[data_dir])  # fmt: skip


def test_prepare_data_manual_dir_missing_files_or_with_a_bad_file(tmp_path):
    data_dir = str(tmp_path / "tfds")
    os.makedirs(tmp_path / "empty")
    proc = run("scripts/prepare_data.py", "nus_wide", "--manual_dir", str(tmp_path / "empty"),
               "--data_dir", data_dir)  # fmt: skip
    assert_user_error(proc, "lacks Concepts81.txt", "Expected layout", absent=[data_dir])
    fake_nus(str(tmp_path / "raw"), bad_label_file=True)
    proc = run("scripts/prepare_data.py", "nus_wide", "--manual_dir", str(tmp_path / "raw"),
               "--data_dir", data_dir)  # fmt: skip
    assert_user_error(proc, "Labels_concept7_Test.txt", absent=[data_dir])


def test_prepare_data_prepares_and_indexes_a_manual_dataset(tmp_path):
    fake_nus(str(tmp_path / "raw"))
    proc = run("scripts/prepare_data.py", "nus", "--manual_dir", str(tmp_path / "raw"),
               "--data_dir", str(tmp_path / "tfds"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "nus_wide: prepared in" in proc.stdout
    assert "nus_wide[train]: 3 images x 81 classes" in proc.stdout
    assert "nus_wide[test]: 2 images x 81 classes" in proc.stdout


# --- scripts/sweep.py ----------------------------------------------------------------------------


def test_sweep_config_file_that_does_not_exist(tmp_path):
    workdir = str(tmp_path / "sweep")
    proc = run("scripts/sweep.py", "--config", "configs/no_such_config.py", "--methods", "plain",
               "--proportions", "0.5", "--workdir", workdir)  # fmt: skip
    assert_user_error(proc, "configs/no_such_config.py: no such config file", absent=[workdir])


def test_sweep_unknown_method(tmp_path):
    workdir = str(tmp_path / "sweep")
    proc = run("scripts/sweep.py", "--config", "configs/tiny.py", "--methods", "plian",
               "--proportions", "0.5", "--workdir", workdir)  # fmt: skip
    assert_user_error(proc, "configs/tiny.py:plian: unknown method 'plian'", absent=[workdir])


def test_sweep_tabulates_finished_runs(tmp_path):
    """A sweep whose runs are finished (results.json) tabulates them without training."""
    workdir = tmp_path / "sweep"
    for seed, value in ((0, 40.0), (1, 50.0)):
        run_dir = workdir / f"plain_p0.5_s{seed}"
        os.makedirs(run_dir)
        (run_dir / "results.json").write_text(json.dumps({"metrics": {"mAP": value}}))
    proc = run("scripts/sweep.py", "--config", "configs/tiny.py", "--methods", "plain",
               "--proportions", "0.5", "--seeds", "0", "1", "--workdir", str(workdir))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| plain | 45.00 +- 7.07 (40.0, 50.0) |" in proc.stdout
    assert "done in" not in proc.stdout  # nothing trained
    with open(workdir / "summary.json") as f:
        assert json.load(f)["table"] == {"plain": {"0.5": [40.0, 50.0]}}


# --- scripts/convert_clip.py, scripts/convert_torchvision_resnet.py ------------------------------


def test_convert_clip_missing_input_or_wrong_output(tmp_path):
    out = str(tmp_path / "clip.npz")
    proc = run("scripts/convert_clip.py", str(tmp_path / "RN101.pt"), out)
    assert_user_error(proc, f"{tmp_path / 'RN101.pt'}: no such file", absent=[out])
    (tmp_path / "RN101.pt").write_bytes(b"")
    proc = run("scripts/convert_clip.py", str(tmp_path / "RN101.pt"), str(tmp_path / "clip.pth"))
    assert_user_error(proc, "must be a .npz file", absent=[tmp_path / "clip.pth"])


def test_convert_clip_input_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "RN101.npz").write_text("not a checkpoint\n")  # (.npz: no torch import)
    out = str(tmp_path / "clip.npz")
    proc = run("scripts/convert_clip.py", str(tmp_path / "RN101.npz"), out)
    assert_user_error(proc, "RN101.npz is not a readable checkpoint", absent=[out])


def test_convert_torchvision_resnet_missing_input(tmp_path):
    out = str(tmp_path / "resnet18.npz")
    proc = run("scripts/convert_torchvision_resnet.py", "--input", str(tmp_path / "r.pth"),
               "--arch", "resnet18", "--output", out)  # fmt: skip
    assert_user_error(proc, f"--input {tmp_path / 'r.pth'}: no such file", absent=[out])


@pytest.mark.slow
def test_convert_torchvision_resnet_converts_a_torchvision_state_dict(tmp_path):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    net = torchvision.models.resnet18()
    torch.save(net.state_dict(), tmp_path / "resnet18.pth")
    out = tmp_path / "resnet18.npz"
    proc = run("scripts/convert_torchvision_resnet.py", "--input", str(tmp_path / "resnet18.pth"),
               "--arch", "resnet18", "--output", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"wrote {out}: 100 tensors (resnet18 backbone" in proc.stdout
    with np.load(out) as npz:
        assert "fc.weight" not in npz.files and len(npz.files) == 100
        np.testing.assert_array_equal(npz["conv1.weight"], net.conv1.weight.detach().numpy())
    # Weights of another depth, a file that is no checkpoint: a message each, nothing written.
    other = tmp_path / "other.npz"
    proc = run("scripts/convert_torchvision_resnet.py", "--input", str(tmp_path / "resnet18.pth"),
               "--arch", "resnet34", "--output", str(other))  # fmt: skip
    assert_user_error(proc, "does not convert to resnet34", "Missing keys", absent=[other])
    (tmp_path / "text.pth").write_text("not a checkpoint\n")
    proc = run("scripts/convert_torchvision_resnet.py", "--input", str(tmp_path / "text.pth"),
               "--arch", "resnet18", "--output", str(other))  # fmt: skip
    assert_user_error(proc, "text.pth", absent=[other])


@pytest.mark.slow
def test_convert_clip_converts_an_open_clip_state_dict(tmp_path):
    torch = pytest.importorskip("torch")
    open_clip_model = pytest.importorskip("open_clip.model")
    torch.manual_seed(0)
    model = open_clip_model.CLIP(
        embed_dim=64,
        vision_cfg=open_clip_model.CLIPVisionCfg(layers=(1, 1, 1, 1), width=16, image_size=64),
        text_cfg=open_clip_model.CLIPTextCfg(context_length=16, vocab_size=100, width=64,
                                             heads=1, layers=1),
        quick_gelu=True,
    )  # fmt: skip
    torch.save(model.half().state_dict(), tmp_path / "tiny.pth")
    out = tmp_path / "tiny.npz"
    proc = run("scripts/convert_clip.py", str(tmp_path / "tiny.pth"), str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{tmp_path / 'tiny.pth'} -> {out}: " in proc.stdout and "parameters" in proc.stdout
    with np.load(out) as npz:
        assert npz["visual.conv1.weight"].dtype == np.float32


# --- python -m mlrpl_jax.pretrain / pretrain_clip ------------------------------------------------


@pytest.mark.slow
def test_pretrain_bad_config_key_or_output(tmp_path):
    workdir, out = str(tmp_path / "pre"), str(tmp_path / "w" / "backbone.npz")
    proc = run("-m", "mlrpl_jax.pretrain", "--workdir", workdir, "--out", out,
               "--config.train.num_epoch=3")  # fmt: skip
    assert_user_error(proc, "unknown config key in --config.train.num_epoch", absent=[workdir, out])
    proc = run("-m", "mlrpl_jax.pretrain", "--workdir", workdir, "--out", out + ".pth")
    assert_user_error(proc, "must end with .npz", absent=[workdir])


def test_pretrain_clip_config_without_a_clip(tmp_path):
    workdir, out = str(tmp_path / "pre"), str(tmp_path / "clip.npz")
    proc = run("-m", "mlrpl_jax.pretrain_clip", "--workdir", workdir, "--out", out,
               "--config", "configs/tiny.py")  # fmt: skip
    assert_user_error(proc, "--config: method 'plain' has no CLIP", absent=[workdir, out])


@pytest.mark.slow
def test_pretrain_clip_trains_exports_and_scores_zero_shot(tmp_path):
    # The smallest CLIP ('tiny_rn') on the tiny config's 32-px scenes.
    overrides = [f"--config.data.data_dir={tmp_path / 'data'}", "--config.train.num_epochs=1"]
    workdir, out = str(tmp_path / "pre"), str(tmp_path / "clip.npz")
    proc = run("-m", "mlrpl_jax.pretrain_clip", "--config", "configs/tiny.py:clip_pretrain",
               *overrides, "--config.method_config.clip_arch=tiny_rn",
               "--eval_config", "configs/tiny.py",
               *[o.replace("--config", "--eval_config") for o in overrides],
               "--workdir", workdir, "--out", out)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Wrote {out} (CLIP of step 4)." in proc.stdout
    with open(out + ".json") as f:
        report = json.load(f)
    assert 0 < report["evaluation_world_zero_shot_test_mAP"]["pretrained"] <= 100


# --- scripts/launch_local.py (its launches: tests/test_multiprocess.py) --------------------------


def test_launch_local_errors():
    assert_user_error(run("scripts/launch_local.py", "--processes", "2"), "no command")
    assert_user_error(run("scripts/launch_local.py", "--processes", "0", "--", "true"),
                      "at least 1")  # fmt: skip
    assert_user_error(run("scripts/launch_local.py", "--", "no-such-program-here"),
                      "cannot run 'no-such-program-here'")  # fmt: skip


def test_launch_local_runs_the_command_once_per_process_with_its_environment():
    script = ("import os; print(os.environ['JAX_PROCESS_ID'], os.environ['JAX_NUM_PROCESSES'], "
              "os.environ['XLA_FLAGS'].split('=')[-1])")  # fmt: skip
    proc = run("scripts/launch_local.py", "--processes", "3", "--devices_per_process", "2", "--",
               sys.executable, "-c", script)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == ["[p0] 0 3 2", "[p1] 1 3 2", "[p2] 2 3 2"]
    failing = run("scripts/launch_local.py", "--processes", "2", "--", sys.executable, "-c",
                  "import os, sys; sys.exit(3 * int(os.environ['JAX_PROCESS_ID']))")  # fmt: skip
    assert failing.returncode == 3  # the first non-zero status


# --- scripts/learning_margins.py (its runs: tests/test_methods_learn.py) --------------------------


@pytest.mark.slow
def test_learning_margins_errors_and_the_committed_margins(tmp_path):
    out = str(tmp_path / "m.json")
    assert_user_error(run("scripts/learning_margins.py", "--methods", "plainn", "--out", out),
                      "--methods: unknown ['plainn']", absent=[out])  # fmt: skip
    assert_user_error(run("scripts/learning_margins.py", "--seeds", "0", "--out", out),
                      "2 or more seeds", absent=[out])  # fmt: skip
    assert_user_error(run("scripts/learning_margins.py", "--from-json", "--out", out),
                      "no such file")  # fmt: skip
    proc = run("scripts/learning_margins.py", "--from-json")  # the committed file's margins
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(ROOT, "docs", "results", "learning_margins.json")) as f:
        assert json.loads(proc.stdout) == json.load(f)["margins"]


# --- scripts/mutation_score.py (not run by CI: hours) ----------------------------------------------


def _mutation_score_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "mutation_score", os.path.join(ROOT, "scripts", "mutation_score.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mutation_score_errors_and_a_report_of_results(tmp_path):
    pytest.importorskip("mutmut")  # the test extra installs it
    bad = tmp_path / "equivalent.json"
    bad.write_text(json.dumps([{"function": "f", "from": "a", "to": "b"}]))
    assert_user_error(run("scripts/mutation_score.py", "--equivalent", str(bad)),
                      "entry 0 needs function, from, to and a reason")  # fmt: skip
    assert_user_error(run("scripts/mutation_score.py", "--max_children", "0"), "--max_children=0")
    assert_user_error(run("scripts/mutation_score.py", "--save_every", "0"), "--save_every=0")
    absent = tmp_path / "no_mutants"
    assert_user_error(run("scripts/mutation_score.py", "--mutants_dir", str(absent)),
                      "only --report_only reads another directory")  # fmt: skip
    broken = tmp_path / "broken.json"
    broken.write_text('{"functions": {"m.x_f": {"hash": "0"}}}')
    assert_user_error(run("scripts/mutation_score.py", "--report_only", "--results", str(broken)),
                      "broken.json: not a mutation results file")  # fmt: skip
    # A scratch source tree with the project's mutmut settings: one loss, one metric, one method's
    # loss and its (out of scope) default config.
    root = tmp_path / "tree"
    (root / "mlrpl_jax" / "losses").mkdir(parents=True)
    (root / "mlrpl_jax" / "methods").mkdir()
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), root)
    (root / "mlrpl_jax" / "losses" / "partial_bce.py").write_text(
        'def partial_bce(x):\n    if x < 0:\n        raise ValueError(\n'
        '            "x must be positive"\n        )\n    return x + 1\n'
    )  # fmt: skip
    (root / "mlrpl_jax" / "metrics.py").write_text("def average_precision(x):\n    return x * 2\n")
    (root / "mlrpl_jax" / "methods" / "sst.py").write_text(
        "def loss_fn(x):\n    return x - 1\n\n\ndef default_config():\n    return 3\n"
    )
    empty = tmp_path / "empty.json"
    assert_user_error(run("scripts/mutation_score.py", "--report_only", "--root", str(root),
                          "--results", str(empty)), "no results yet")  # fmt: skip
    module = _mutation_score_module()
    mutants, code = module.generate(str(root))
    diffs = module.diffs_of(sorted(mutants), mutants, code)
    change = {n: module.changed_lines(d) for n, d in diffs.items()}
    # mutmut's own mutants; the message line is not mutated, the default config is not in scope.
    assert all("positive" not in before for before, _ in change.values()), change
    assert not any("default_config" in n for n in mutants), sorted(mutants)
    bce = sorted((n for n in mutants if ".partial_bce." in n), key=lambda n: int(n.split("_")[-1]))
    ap = {change[n][1]: n for n in mutants if ".metrics." in n}
    sst = [n for n in mutants if ".sst." in n]
    assert len(bce) >= 4 and {"return x / 2", "return x * 3"} <= set(ap) and sst, change
    # mutmut's working directory: exit codes and the hashes of the functions they were run on.
    codes = {bce[0]: 1, bce[1]: -24, bce[2]: 33,  # killed, timed out (killed), no test calls it
             ap["return x / 2"]: 0, ap["return x * 3"]: 0,  # survivors: one triaged below
             sst[0]: 1}  # fmt: skip
    for path in ("losses/partial_bce", "metrics", "methods/sst"):
        dotted = "mlrpl_jax." + path.replace("/", ".") + "."
        mine = {n: c for n, c in codes.items() if n.startswith(dotted)}
        hashes = {mutants[n].function.rpartition(".")[2]: mutants[n].hash for n in mine}
        if path == "methods/sst":  # run on an older source of loss_fn: its verdict does not count
            hashes = dict.fromkeys(hashes, "0ld")
        meta = tmp_path / "mutants" / "mlrpl_jax" / f"{path}.py.meta"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"exit_code_by_key": mine, "hash_by_function_name": hashes}))
    (tmp_path / "mutants" / "source_commit.txt").write_text("abc1234\n")
    equivalent = tmp_path / "equivalent.json"
    equivalent.write_text(json.dumps([{"function": "mlrpl_jax.metrics.average_precision",
                                       "from": "return x * 2", "to": "return x * 3",
                                       "reason": "x is never 0 here"}]))  # fmt: skip
    out, results = tmp_path / "mutation.md", tmp_path / "results.json"
    args = ("scripts/mutation_score.py", "--report_only", "--root", str(root), "--out", str(out),
            "--equivalent", str(equivalent), "--results", str(results))  # fmt: skip
    proc = run(*args, "--mutants_dir", str(tmp_path / "mutants"))
    assert proc.returncode == 0, proc.stderr
    first = out.read_text()
    # The verdicts that count are now in --results: from the working directory's run at abc1234.
    store = json.loads(results.read_text())["functions"]
    assert set(store) == {"mlrpl_jax.losses.partial_bce.x_partial_bce",
                          "mlrpl_jax.metrics.x_average_precision"}, store  # fmt: skip
    assert store["mlrpl_jax.metrics.x_average_precision"]["commit"] == "abc1234"
    assert store["mlrpl_jax.losses.partial_bce.x_partial_bce"]["exit_codes"] == {
        mutants[n].number: c for n, c in codes.items() if ".partial_bce." in n
    }
    # A clean clone has no mutmut directory: the committed results alone give the same report.
    out.unlink()
    proc = run(*args, "--mutants_dir", str(absent))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert text == first
    n_bce, n_ap, n_sst = len(bce), len(ap), len(sst)
    # partial_bce: 2 killed (one timed out), one without tests, the rest not run: 2 / 3.
    assert f"| losses (target 90 %) | {n_bce} | 2 | 1 | 0 | 0 | 1 | {n_bce - 3} | 66.7 % |" in text
    # metrics: an equivalent survivor and an untriaged one: 0 / 1.
    assert f"| metrics (target 90 %) | {n_ap} | 0 | 0 | 1 | 1 | 0 | {n_ap - 2} | 0.0 % |" in text
    assert f"| methods | {n_sst} | 0 | 0 | 0 | 0 | 0 | {n_sst} | - |" in text, text  # stale
    assert "verdicts from runs at abc1234 (5)" in text, text
    assert ("`mlrpl_jax.metrics.x_average_precision__mutmut_" in text
            and "```diff\n- return x * 2\n+ return x / 2\n```" in text), text  # fmt: skip
    assert "| `return x * 2` → `return x * 3` | x is never 0 here |" in text, text
    summary = json.loads((tmp_path / "mutation.json").read_text())
    assert summary["groups"]["losses"]["kill_rate"] == 66.7
    assert summary["untriaged_survivors"] == [ap["return x / 2"]]


def test_mutation_score_forgets_mutmuts_test_map_when_a_test_changes(tmp_path):
    """mutmut maps again only tests with new names: after a test file it runs, a test helper or
    its settings change, the script deletes the map so that mutmut makes it afresh."""
    module = _mutation_score_module()
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("def test_a():\n    pass\n")
    (tmp_path / "tests" / "test_b.py").write_text("def test_b():\n    pass\n")
    (tmp_path / "tests" / "helpers.py").write_text("X = 1\n")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.mutmut]\npytest_add_cli_args_test_selection = ["tests/test_a.py"]\n'
    )
    mutants = tmp_path / "mutants"
    mutants.mkdir()
    stats = mutants / "mutmut-stats.json"
    stats.write_text("{}")
    assert module.forget_stale_test_map(str(mutants), str(tmp_path))  # made before any mark
    assert not stats.exists()
    stats.write_text("{}")
    assert not module.forget_stale_test_map(str(mutants), str(tmp_path)) and stats.exists()
    (tmp_path / "tests" / "test_b.py").write_text("def test_b():\n    assert 1\n")
    assert not module.forget_stale_test_map(str(mutants), str(tmp_path))  # not a selected test
    (tmp_path / "tests" / "test_a.py").write_text("def test_a():\n    assert 1\n")
    assert module.forget_stale_test_map(str(mutants), str(tmp_path)) and not stats.exists()
    assert not module.forget_stale_test_map(str(mutants), str(tmp_path))  # no map: nothing to do
    for path, text in (("tests/helpers.py", "X = 2\n"),
                       ("pyproject.toml", "[tool.mutmut]\ntimeout_multiplier = 20\n")):  # fmt: skip
        stats.write_text("{}")
        (tmp_path / path).write_text(text)
        assert module.forget_stale_test_map(str(mutants), str(tmp_path)), path


# --- --help ----------------------------------------------------------------------------------------


def assert_helps(commands) -> None:
    """`--help` of each command (run at once): its usage and flags, status 0."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(commands)) as pool:
        procs = list(pool.map(lambda c: run(*c, "--help", timeout=120), commands))
    for command, proc in zip(commands, procs, strict=True):
        assert proc.returncode == 0, (command, proc.stderr[-3000:])
        assert "Traceback" not in proc.stderr, (command, proc.stderr[-3000:])
        if command[0] == "-m":  # absl: the module docstring, then the flags
            assert f"python -m {command[1]} --workdir" in proc.stdout, proc.stdout
            assert "Flags:" in proc.stdout and "--out:" in proc.stdout, proc.stdout
        else:
            assert proc.stdout.startswith(f"usage: {os.path.basename(command[0])}"), proc.stdout


def test_help_of_the_commands_that_answer_before_importing_jax():
    assert_helps(QUICK_HELP)


@pytest.mark.slow
def test_help_of_the_scripts_that_import_jax_first():
    assert_helps(SLOW_HELP)


def test_mutation_score_names_a_dirty_tree_only_for_what_the_mutants_come_from(tmp_path):
    """The report's source commit gains '(with uncommitted changes)' for a change to the code,
    tests or configs, not for the report the script itself writes under docs/."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "mutation_score", os.path.join(ROOT, "scripts", "mutation_score.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for path in ("mlrpl_jax/a.py", "docs/results/mutation.md"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x = 1\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "c"], cwd=tmp_path, check=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    (tmp_path / "docs/results/mutation.md").write_text("a report\n")
    assert module.git_commit(str(tmp_path)) == head
    (tmp_path / "mlrpl_jax/a.py").write_text("x = 2\n")
    assert module.git_commit(str(tmp_path)) == head + " (with uncommitted changes)"
