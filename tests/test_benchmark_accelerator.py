"""scripts/benchmark_accelerator.py as a user types it: the tiny CPU mode end to end (every case
measured, the JSON filled in as the cases finish), its MFU from a given peak, and a user error.
The device's peak-FLOP/s table is checked by device kind (the GPU/TPU figures cannot run here)."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "benchmark_accelerator.py")


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python scripts/benchmark_accelerator.py ARGS...` in the repository root."""
    return subprocess.run(
        [sys.executable, "scripts/benchmark_accelerator.py", *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


def load_script():
    spec = importlib.util.spec_from_file_location("benchmark_accelerator", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # ~1 min on 2 cores: 4 + 1 cases (a ResNet, a CLIP), each in its own process
def test_tiny_mode_as_a_user_types_it(tmp_path):
    # The synthetic scenes and the XLA cache go to tmp_path (TFDS's and the library's variables).
    env = dict(os.environ, TFDS_DATA_DIR=str(tmp_path / "tfds"),
               MLRPL_JAX_CACHE=str(tmp_path / "cache"))  # fmt: skip
    # One CPU device, as a user's shell has it (conftest simulates 8 for the in-process tests).
    flags = env.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "")
    env["XLA_FLAGS"] = flags.strip()
    out = tmp_path / "bench.json"
    proc = run("--tiny", "--methods", "plain,dualcoop", "--steps", "2", "--out", str(out),
               env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    table = proc.stdout[proc.stdout.index("method     dtype") :]
    cases = json.loads(out.read_text())["cases"]
    assert [(c["method"], c["dtype"]) for c in cases] == [
        (m, d) for d in ("bfloat16", "float32") for m in ("plain", "dualcoop")
    ]
    for c in cases:
        assert c["status"] == "ok", c
        assert c["images_per_s"] > 0 and c["images_per_s_step_only"] > 0
        assert 0 <= c["input_wait_share"] <= 1
        assert c["gflops_per_image"] > 0 and c["batch"] == 4 and c["image_size"] == 64
        assert c["peak_memory_bytes"] is None and c["step_memory_bytes"] > 0  # CPU: no stats
        assert c["mfu"] is None and c["mfu_with_input"] is None  # CPU: no peak FLOP/s known
        row = next(
            line
            for line in table.splitlines()
            if line.startswith(f"{c['method']:<10} {c['dtype']}")
        )
        assert row.split()[2:4] == ["4", "64"] and "n/a" in row
    assert (tmp_path / "cache" / "xla_benchmark").is_dir()  # the compilation cache

    # With a peak given, MFU is a finite fraction (a re-run: the compiled step comes from the cache).
    out2 = tmp_path / "bench2.json"
    proc = run("--tiny", "--methods", "plain", "--dtypes", "float32", "--steps", "1",
               "--peak_tflops", "0.5", "--out", str(out2), env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (case,) = json.loads(out2.read_text())["cases"]
    assert case["peak_tflops"] == 0.5 and math.isfinite(case["mfu"]) and 0 < case["mfu"]
    expected = case["gflops_per_image"] * 1e9 * case["images_per_s_step_only"] / 0.5e12
    assert case["mfu"] == pytest.approx(expected)
    row = proc.stdout.splitlines()[-1]
    assert row.startswith("plain      float32") and row.split()[-2] == f"{100 * case['mfu']:.1f}%"


def test_unknown_method_is_a_user_error(tmp_path):
    out = tmp_path / "bench.json"
    proc = run("--tiny", "--methods", "plain,ssgrll", "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: --methods: unknown ['ssgrll']")
    assert "known: plain, ssgrl, sst, hst, sarb, dsrb, imbalance, dualcoop, trm_ml" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
    bad = run("--dtypes", "float16")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --dtypes: unknown ['float16']")


def test_peak_flops_by_device_kind():
    bench = load_script()
    peak = bench.peak_tflops
    assert peak("NVIDIA H100 80GB HBM3", "bfloat16") == 989.4  # SXM
    assert peak("NVIDIA H100 80GB HBM3", "float32") == 494.7  # TF32: XLA's default on GPU
    assert peak("NVIDIA H100 PCIe", "bfloat16") == 756.5
    assert peak("NVIDIA H200", "bfloat16") == 989.4
    assert peak("NVIDIA A100-SXM4-40GB", "float32") == 156.0
    assert peak("Tesla V100-SXM2-16GB", "bfloat16") == 15.7  # no bf16 units
    assert peak("NVIDIA L4", "bfloat16") == 121.0 and peak("NVIDIA L40S", "bfloat16") is None
    assert peak("TPU v4", "bfloat16") == 275.0 and peak("TPU v5 lite", "float32") == 197.0
    assert peak("TPU v5p", "bfloat16") == 459.0 and peak("TPU v6 lite", "bfloat16") == 918.0
    assert peak("cpu", "float32") is None
    assert peak("cpu", "float32", (2.0, 1.0)) == 1.0 and peak("cpu", "bfloat16", (2.0, 1.0)) == 2.0
