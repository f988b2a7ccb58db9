"""`python -m mlrpl_jax.plan`: a config's parameters, FLOPs and memory from abstract shapes, checked
against a hand count of torchvision's ResNet-18 and the per-example table's known size."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from mlrpl_jax import plan
from mlrpl_jax.ops import example_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    return subprocess.run([sys.executable, "-m", "mlrpl_jax.plan", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip


@pytest.mark.slow  # > 10 s on 2 cores; the fast loop stays under 5 minutes
def test_plan_as_a_user_types_it_and_its_errors():
    proc = run("--config", "configs/tiny.py", "--device_memory", "1GB")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "plain on synthetic_scenes" in out and "N = 64 train images, C = 5, 32 px" in out
    assert "model.backbone: 'resnet101' -> 'resnet18'" in out  # differences from the base
    assert "parameters: total" in out and "largest batch in 1.00 GB per device" in out
    bad = run("--config", "configs/tiny.py", "--device_memory", "lots")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --device_memory='lots'")
    assert "Traceback" not in bad.stderr


def test_parse_bytes_and_split_sizes():
    assert plan.parse_bytes("80GB") == 80 * 10**9 and plan.parse_bytes("16GiB") == 16 * 2**30
    assert plan.parse_bytes("1.5 tb") == 1.5e12
    assert plan.split_size(plan.DATASETS["voc/2007"], "train+validation") == 5011


def test_abstract_tables_allocate_nothing_and_have_the_table_shape():
    labels = jax.ShapeDtypeStruct((5_600_000, 600), np.int8)
    with example_table.abstract_tables():
        table = example_table.from_partial_labels(labels, dtype="uint8")
        corrections = example_table.full(5_600_000, 600, 0.0, "float32")
    rows = example_table.padded_rows(5_600_000)
    assert table == jax.ShapeDtypeStruct((rows, 600), np.uint8)
    assert corrections == jax.ShapeDtypeStruct((rows, 600), np.float32)
    assert isinstance(example_table.full(3, 2, 0.5), np.ndarray)  # outside: concrete again


@pytest.mark.slow
def test_flops_follow_xla_s_convention_two_per_multiply_add():
    """plan's eval FLOPs per image of torchvision's ResNet-18 at 224 px = 2 x its multiply-adds,
    counted by hand over every Conv2d and Linear of the torchvision model. XLA counts only the
    multiply-adds whose input is not padding (7 % fewer than torchvision's 1.81 GMAC count, which
    includes the padded border taps), and adds the elementwise work (BatchNorm, ReLU, pooling,
    residual additions: within 1 %)."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    from configs import base

    config = base.get_config("plain")
    config.model.backbone, config.model.width, config.model.avg_pool_2x2 = "resnet18", 64, False
    config.data.size_factor = 224 / 448
    config.data.name = "coco/2014"
    config.train.batch_size = config.train.eval_batch_size = 4
    result = plan.plan(config, device_memory="16GB")
    model = torchvision.models.resnet18(num_classes=80)
    macs, padded = [], []

    def taps(size, out, kernel, stride, pad):  # kernel taps on the input, summed over outputs
        return sum(sum(0 <= o * stride - pad + k < size for k in range(kernel)) for o in range(out))

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            (h, w), (oh, ow) = inputs[0].shape[-2:], output.shape[-2:]
            valid = taps(h, oh, module.kernel_size[0], module.stride[0], module.padding[0]) * taps(
                w, ow, module.kernel_size[1], module.stride[1], module.padding[1]
            )
            padded.append(output.numel() * module.kernel_size[0] * module.kernel_size[1]
                          * module.in_channels // module.groups)  # fmt: skip
            macs.append(valid * module.out_channels * module.in_channels // module.groups)
        elif isinstance(module, torch.nn.Linear):
            macs.append(module.in_features * module.out_features)
            padded.append(module.in_features * module.out_features)

    for module in model.modules():
        module.register_forward_hook(count)
    model.eval()(torch.zeros(1, 3, 224, 224))
    by_hand = 2 * sum(macs) / 1e9
    assert sum(padded) / 1e9 == pytest.approx(1.81, abs=0.01)  # torchvision: 1.81 "GFLOPS"
    got = result["gflops_per_image"]["eval_image_part"]
    assert by_hand <= got <= 1.01 * by_hand, (got, by_hand)
    assert result["parameters"]["total"] == pytest.approx(
        sum(p.numel() for p in model.parameters()), rel=1e-3
    )
