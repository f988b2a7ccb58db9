"""`clip_pretrain`: generated captions, CLIP's contrastive loss written out in numpy, the word
vocabulary of the synthetic CLIP, and learning to match images with their captions."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import fake_data_info, tiny_run_config

from mlrpl_jax import trainer
from mlrpl_jax.data.tfds_builders import synthetic_scenes
from mlrpl_jax.methods import clip_pretrain
from mlrpl_jax.models import clip

STEPS_TO_FIT = 60
NAMES = ("red striped disc", "blue plain star", "light green dotted ring", "pink checkered bar")


@pytest.fixture(scope="module")
def tokenizer():
    return clip.make_tokenizer(clip.PRESETS["synthetic_rn"])


def decode(tokenizer, ids):
    words = {i: w for w, i in tokenizer.encoder.items()}
    words.update({tokenizer.sot_id: "<s>", tokenizer.eot_id: "</s>"})
    return " ".join(words[int(i)] for i in ids if i)


def test_synthetic_clip_vocabulary_is_the_caption_vocabulary():
    assert set(clip.SYNTHETIC_WORDS) == set(synthetic_scenes.CAPTION_WORDS) | set("0123456789")


def test_captions_name_the_known_positives_in_random_order(tokenizer):
    tokens = clip_pretrain.CaptionTokens(tokenizer, NAMES, max_objects=3, context_length=32)
    labels = jnp.asarray([[1, 1, -1, 1], [-1, -1, -1, -1], [1, 0, 1, 1], [0, 0, 1, 0],
                          [1, 1, 1, 1]], jnp.int8)  # fmt: skip
    seen_orders = set()
    for seed in range(6):
        ids = np.asarray(clip_pretrain.make_captions(tokens, labels, jax.random.key(seed)))
        assert ids.shape == (5, 32) and ids.dtype == np.int32
        texts = [decode(tokenizer, row) for row in ids]
        assert texts[1] == "<s> a photo of . </s>"
        assert texts[3] == "<s> a photo of a light green dotted ring . </s>"
        for row, text in ((0, texts[0]), (2, texts[2])):
            body = text.removeprefix("<s> a photo of ").removesuffix(" . </s>")
            named = body.split(" and ")
            positives = [NAMES[c] for c in np.flatnonzero(np.asarray(labels[row]) == 1)]
            assert sorted(n.removeprefix("a ") for n in named) == sorted(positives)
        seen_orders.add(texts[0])
        four = texts[4].removeprefix("<s> a photo of ").removesuffix(" . </s>").split(" and ")
        assert len(four) == 3 and len(set(four)) == 3  # max_objects of the 4 positives
        # Everything after end-of-text is padding; end-of-text is the largest id.
        eot = ids.argmax(axis=1)
        assert all((ids[r, eot[r] + 1 :] == 0).all() for r in range(5))
    assert len(seen_orders) > 1


def test_captions_that_cannot_fit_are_an_error(tokenizer):
    with pytest.raises(ValueError, match="max_objects"):
        clip_pretrain.CaptionTokens(tokenizer, NAMES, max_objects=4, context_length=20)


def test_contrastive_loss_is_clips_symmetric_infonce():
    rng = np.random.default_rng(0)
    image, text = rng.normal(size=(6, 8)), rng.normal(size=(6, 8))
    t = np.log(20.0)
    loss, _ = clip_pretrain.contrastive_loss(
        jnp.asarray(image), jnp.asarray(text), jnp.asarray(t), 100.0
    )
    u = image / np.linalg.norm(image, axis=1, keepdims=True)
    v = text / np.linalg.norm(text, axis=1, keepdims=True)
    logits = 20.0 * u @ v.T

    def ce(z):
        z = z - z.max(axis=1, keepdims=True)
        return -np.mean(np.diag(z) - np.log(np.exp(z).sum(axis=1)))

    np.testing.assert_allclose(loss, (ce(logits) + ce(logits.T)) / 2, rtol=1e-5)
    # The temperature is clipped at the maximum scale.
    _, m = clip_pretrain.contrastive_loss(
        jnp.asarray(image), jnp.asarray(text), jnp.asarray(np.log(500.0)), 100.0
    )
    np.testing.assert_allclose(m["logit_scale"], 100.0, rtol=1e-6)


@pytest.mark.slow
def test_pretraining_learns_to_match_a_batch_of_images_with_their_captions():
    """clip_pretrain learns (scripts/learning_margins.py leaves it out: from scratch it needs far
    longer than a check to score zero-shot): the smallest CLIP, trained by the trainer's own step on
    one batch of 24 images whose label sets (so captions) all differ, comes to retrieve each
    image's caption among the 24 (chance 1 in 24) and its contrastive loss falls far below
    chance's ln 24. Its export and zero-shot scoring: tests/test_entry_points.py."""
    from itertools import combinations

    from mlrpl_jax import methods, sharding

    num_classes, batch_size = 5, 24
    config = tiny_run_config(
        "/nonexistent", "clip_pretrain",
        **{"method_config.clip_arch": "tiny_rn", "data.setting": "fal", "train.batch_size": 24,
           "optim.name": "adamw", "optim.learning_rate": 3e-3},
    )  # fmt: skip
    subsets = [s for k in range(1, 6) for s in combinations(range(num_classes), k)][:batch_size]
    labels = -np.ones((batch_size, num_classes), np.int8)
    for row, subset in enumerate(subsets):
        labels[row, list(subset)] = 1
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.integers(0, 256, size=(batch_size, 32, 32, 3), dtype=np.uint8),
        "labels": labels,
        "example_id": np.arange(batch_size, dtype=np.int32),
        "full_labels": (labels > 0).astype(np.uint8),
    }
    info = fake_data_info(num_classes)._replace(class_names=synthetic_scenes.class_names(5))
    mesh = sharding.make_mesh()
    fns = trainer.make_train_fns(config, methods.get("clip_pretrain"), info, mesh, 100, 100)
    state, history = fns.state, []
    for _ in range(STEPS_TO_FIT):
        state, metrics = fns.step_fn(state, sharding.host_to_global(batch, mesh))
        history.append((float(metrics["contrastive"]), float(metrics["retrieval_top1"])))
    print(history[0], history[-1])
    assert history[0][0] > 0.9 * np.log(batch_size) and history[0][1] < 0.2
    assert history[-1][0] < 0.25 * np.log(batch_size)
    assert history[-1][1] >= 0.9
