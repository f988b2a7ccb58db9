"""The committed result tables and floors are what their documented commands make
(`scripts/check_published.py`, run as a user types it), and a typed change to any of them is found."""

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/check_published.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip


def test_every_committed_table_is_what_its_command_makes():
    proc = check()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 8 and all(line.startswith("ok  ") for line in lines), proc.stdout


def test_a_typed_cell_or_floor_is_found(tmp_path):
    results = tmp_path / "docs" / "results"
    shutil.copytree(os.path.join(ROOT, "docs", "results"), results,
                    ignore=shutil.ignore_patterns("*.png"))  # fmt: skip
    table = results / "synthetic_transfer" / "table.md"
    text = table.read_text()
    assert "| plain | 77.8 +- 1.2 |" in text
    table.write_text(text.replace("| plain | 77.8 +- 1.2 |", "| plain | 78.8 +- 1.2 |"))
    floors = results / "synthetic_transfer_floors.json"
    data = json.loads(floors.read_text())
    data["floors"]["hst"]["floor"] += 0.5
    floors.write_text(json.dumps(data))
    archived = results / "readings" / "imbalance" / "table.csv"
    lines = archived.read_text().splitlines()
    lines[1] = lines[1].replace(lines[1].split(",")[4], "99.0000", 1)
    archived.write_text("\n".join(lines) + "\n")
    margins = results / "learning_margins.json"
    data = json.loads(margins.read_text())
    data["margins"]["sst"] -= 2.0
    margins.write_text(json.dumps(data))
    configs = results / "paper_configs.md"  # a typed time per step
    text = configs.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `sst_coco.py` |"))
    cells = row.split(" | ")
    cells[10] = f"{float(cells[10]) + 1:.1f}"
    configs.write_text(text.replace(row, " | ".join(cells)))
    proc = check("--root", str(tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    differs = [line for line in proc.stdout.splitlines() if line.startswith("DIFFERS")]
    assert len(differs) == 5, proc.stdout
    assert "paper_configs.md" in proc.stdout
    assert "learning_margins.json: committed" in proc.stdout
    assert "78.8 +- 1.2" in proc.stdout and "hst committed" in proc.stdout
    assert "readings/imbalance/table.csv" in proc.stdout
