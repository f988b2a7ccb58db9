"""The README's notebook section (`## In a notebook`): its python block runs as printed, and the printed numbers are recomputed here independently.

(`test_readme_example.py` covers the README's other code: the worked example method.)
"""

import ast
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADING = "## In a notebook"


def notebook_section() -> tuple[str, str]:
    """(where, markdown of the section): README.md's `## In a notebook` up to the next `## `
    heading."""
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    match = re.search(
        rf"^{re.escape(HEADING)}[ \t]*\n(.*?)(?=^## |\Z)", readme, re.MULTILINE | re.DOTALL
    )
    assert match, f"README.md has no {HEADING!r} section"
    return "README.md", match.group(1)


def fenced(section: str, language: str) -> str | None:
    """The first ```language block of the section, or None."""
    match = re.search(rf"^```{language}[ \t]*\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    return match.group(1) if match else None


def literal_inputs(code: str) -> dict[str, np.ndarray]:
    """The block's `name = np.array(...)` assignments, evaluated on their own (no mlrpl_jax)."""
    inputs = {}
    for node in ast.parse(code).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            value = node.value
            if isinstance(value, ast.Call) and ast.unparse(value.func) == "np.array":
                inputs[node.targets[0].id] = eval(ast.unparse(value), {"np": np})
    return inputs


def expected_numbers(x, labels, pair_logits, full, theta=0.9):
    """Partial BCE and known fraction, completed labels, mAP / OF1 / CF1 (percent), by hand."""
    x = x.astype(np.float64)
    known = labels != 0
    bce = np.mean(np.log1p(np.exp(-labels[known] * x[known])))  # -log sigmoid(y x)

    c = labels.shape[1]
    i, j = np.triu_indices(c, k=1)
    completed = labels.copy()
    for b in range(labels.shape[0]):
        s = np.eye(c)
        s[i, j] = s[j, i] = 1.0 / (1.0 + np.exp(-pair_logits[b]))
        positives = labels[b] == 1
        score = s[:, positives].sum(axis=1) / max(positives.sum(), 1)
        completed[b] = np.where((labels[b] == 0) & (score >= theta), 1, labels[b])

    m_ap = 100 * np.mean([average_precision_score(full[:, k], x[:, k]) for k in range(c)])
    pred, truth = x >= 0, full == 1
    n_c, n_p, n_g = (pred & truth).sum(0), np.maximum(pred.sum(0), 1), truth.sum(0)
    op, o_r = n_c.sum() / n_p.sum(), n_c.sum() / n_g.sum()
    cp, cr = np.mean(n_c / n_p), np.mean(n_c / n_g)
    of1, cf1 = 200 * op * o_r / (op + o_r), 200 * cp * cr / (cp + cr)
    return bce, known.mean(), completed, m_ap, of1, cf1


@pytest.mark.slow
def test_notebook_section_runs_and_prints_what_it_promises():
    where, section = notebook_section()
    code = fenced(section, "python")
    assert code, f"{where}: the notebook section lost its python block"
    assert len(section.splitlines()) <= 40, f"{where}: keep the notebook section short"
    run = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout

    promised = fenced(section, "text")
    if promised is not None:
        assert out == promised, f"{where}: the printed output is not the one shown"

    inputs = literal_inputs(code)
    bce, known, completed, m_ap, of1, cf1 = expected_numbers(
        inputs["logits"], inputs["labels"], inputs["pair_logits"], inputs["full"]
    )
    got = re.search(r"partial BCE ([\d.]+) on (\d+)% known entries", out)
    assert got, out
    assert abs(float(got.group(1)) - bce) < 1e-4 and int(got.group(2)) == round(100 * known)
    got = re.search(r"completed labels (\[.*\])\n", out)
    assert got, out
    assert ast.literal_eval(got.group(1)) == completed.tolist()
    assert (completed != inputs["labels"]).any(), "the example should show a pseudo label"
    got = re.search(r"mAP ([\d.]+)  OF1 ([\d.]+)  CF1 ([\d.]+)", out)
    assert got, out
    np.testing.assert_allclose([float(v) for v in got.groups()], [m_ap, of1, cf1], atol=0.006)
