"""`clip_pretrain`: generated captions, CLIP's contrastive loss written out in numpy, the word
vocabulary of the synthetic CLIP, and a short pretraining + export + zero-shot round trip."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_run_config

from mlrpl_jax import trainer
from mlrpl_jax.data.tfds_builders import synthetic_scenes
from mlrpl_jax.methods import clip_pretrain
from mlrpl_jax.models import clip

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
def test_pretraining_learns_exports_and_scores_zero_shot(tmp_path, monkeypatch):
    from mlrpl_jax import pretrain_clip
    from mlrpl_jax.models import clip_convert

    tiny = clip.ClipConfig(
        embed_dim=32, vision_layers=(1, 1, 1, 1), vision_width=8, image_size=32,
        context_length=32, vocab_size=len(clip.SYNTHETIC_WORDS) + 3, text_width=64,
        text_heads=1, text_layers=1, words=clip.SYNTHETIC_WORDS,
    )  # fmt: skip
    monkeypatch.setitem(clip.PRESETS, "test_tiny", tiny)
    config = tiny_run_config(
        tmp_path / "data", "clip_pretrain",
        **{"method_config.clip_arch": "test_tiny", "data.setting": "fal",
           "train.num_epochs": 6, "train.batch_size": 32, "optim.learning_rate": 3e-3},
    )  # fmt: skip
    final = trainer.run(config, str(tmp_path / "run"))
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    losses = [r["train/contrastive"] for r in records if "train/contrastive" in r]
    assert losses[-1] < losses[0]
    assert 0.0 < final["mAP"] <= 100.0
    out = str(tmp_path / "clip.npz")
    info = pretrain_clip.export_clip(config, str(tmp_path / "run"), out)
    assert info["num_tensors"] > 0
    _, variables = clip_convert.convert_state_dict(clip_convert.read_checkpoint(out), tiny)
    zero_shot = pretrain_clip.zero_shot_map(config, tiny, variables)
    assert 0.0 < zero_shot <= 100.0
