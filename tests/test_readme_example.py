"""The README's worked example method (contract v2) runs, unchanged, through the trainer."""

import os
import re
import types

import jax
import numpy as np
import pytest
from helpers import restore_latest, tiny_run_config

from mlrpl_jax import methods, trainer
from mlrpl_jax.ops import example_table

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def readme_method():
    with open(README) as f:
        text = f.read()
    match = re.search(r"<!-- example-method -->\n```python\n(.*?)```", text, re.DOTALL)
    assert match, "README lost its worked example"
    module = types.ModuleType("soft_table")
    code = compile(match.group(1), "README.md:soft_table", "exec")
    exec(code, module.__dict__)  # noqa: S102 - the README's own example
    return module.METHOD


def test_example_is_short():
    with open(README) as f:
        text = f.read()
    code = re.search(r"<!-- example-method -->\n```python\n(.*?)```", text, re.DOTALL).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 60


@pytest.mark.slow
def test_readme_example_method_trains_through_the_trainer(tmp_path, monkeypatch):
    method = readme_method()
    monkeypatch.setitem(methods.METHODS, "soft_table", method)
    config = tiny_run_config(tmp_path / "tfds", method="soft_table")
    workdir = str(tmp_path / "work")
    final = trainer.run(config, workdir)
    assert 0.0 <= final["mAP"] <= 100.0
    exp, state = restore_latest(config, workdir)
    table = state.method_state["table"]
    assert table.sharding.spec == example_table.PARTITION and table.dtype == np.uint8
    values = np.asarray(jax.device_get(table))[:64]
    partial = trainer.make_data_info(config, exp.train_source).train_partial_labels()
    np.testing.assert_array_equal(values[partial == 1], 255)  # known entries never change
    np.testing.assert_array_equal(values[partial == -1], 0)
    assert np.any(values[partial == 0] != 128)  # the unknown entries moved from 0.5
    config.method_config.storage = "float16"
    with pytest.raises(ValueError, match="storage='float16'"):
        trainer.setup(config)
