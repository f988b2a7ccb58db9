"""`ssgrl` end to end: the trainer wires label semantics in, trains, checkpoints, evaluates, learns."""

import numpy as np
import pytest
from helpers import tiny_run_config

from mlrpl_jax import checkpointing, trainer
from mlrpl_jax.data import label_semantics, pipeline


def ssgrl_config(root, **overrides):
    return tiny_run_config(
        root / "tfds",
        method="ssgrl",
        **{
            "model.feature_dim": 16,
            "model.attention_dim": 8,
            "data.cache_dir": str(root / "cache"),
            **overrides,
        },
    )


@pytest.mark.slow  # a whole run (~30 s)
def test_ssgrl_run_uses_the_known_label_graph(tmp_path):
    config = ssgrl_config(tmp_path)
    workdir = str(tmp_path / "work")
    final = trainer.run(config, workdir)
    assert 0.0 <= final["mAP"] <= 100.0
    # The checkpointed graph is the co-occurrence of the *known* train labels, with diagonal 1.
    source = pipeline.make_source(config.data, config.data.train_split)
    partial = label_semantics.train_partial_labels(config.data, source)
    expected = label_semantics.cooccurrence_adjacency(partial)
    exp = trainer.setup(config)
    ckpt = checkpointing.Checkpointer(workdir, max_to_keep=2, keep_best=True)
    state, _ = ckpt.restore_state(exp.state, which="latest")
    ckpt.close()
    np.testing.assert_allclose(np.asarray(state.params["head"]["adjacency"]), expected)
    np.testing.assert_array_equal(np.diag(expected), 1.0)
    # The synthetic fallback embeddings (class attributes), zero-padded to data.label_embedding_dim.
    assert state.params["head"]["label_embeddings"].shape == (5, 300)
    # The restored model scores the test split as the run did.
    again, _, _ = trainer.evaluate(exp, state)
    assert again["mAP"] == pytest.approx(final["mAP"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("category_features", ["sa"])  # 'sd', the default: test_methods_learn.py
def test_ssgrl_learns_on_synthetic_scenes(tmp_path, category_features):
    """A few epochs on 96-px scenes beat the label-frequency baseline by a wide margin."""
    config = ssgrl_config(
        tmp_path,
        **{
            "model.category_features": category_features,
            "data.synthetic.image_size": 96,
            "data.synthetic.num_train": 480,
            "data.synthetic.num_test": 200,
            "data.size_factor": 96 / 448,
            "data.known_proportion": 0.5,
            "train.num_epochs": 5,
            "train.batch_size": 32,
            "train.eval_batch_size": 40,
            "train.eval_every_epochs": 5,
            "train.log_every_steps": 15,
            "optim.learning_rate": 3e-3,
        },
    )
    final = trainer.run(config, str(tmp_path / "work"))
    test = pipeline.make_source(config.data, config.data.test_split).labels_matrix()
    baseline = 100 * test.mean(axis=0).mean()  # mAP of a constant score per class
    print(f"{category_features}: mAP {final['mAP']:.1f}, frequency baseline {baseline:.1f}")
    assert final["mAP"] > baseline + 15
