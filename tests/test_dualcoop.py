"""DualCoOp (`models.prompting`, `methods.dualcoop`): the prompt assembly and the logits of both
variants written out by hand, gradients reaching the contexts only, frozen towers without
optimiser state, strict CLIP loading, and a short training run on a tiny random CLIP (which tests
the wiring, not the method)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import fake_data_info, tiny_run_config

from mlrpl_jax import config_validation, losses, methods, sharding, trainer
from mlrpl_jax.data.tfds_builders import synthetic_scenes
from mlrpl_jax.methods import dualcoop
from mlrpl_jax.models import clip, clip_convert, prompting

WORDS = clip.SYNTHETIC_WORDS
TINY = clip.ClipConfig(
    embed_dim=32, vision_layers=(1, 1, 1, 1), vision_width=8, image_size=32, context_length=24,
    vocab_size=len(WORDS) + 3, text_width=32, text_heads=1, text_layers=1, words=WORDS,
)  # fmt: skip


@pytest.fixture(autouse=True)
def tiny_preset(monkeypatch):
    monkeypatch.setitem(clip.PRESETS, "test_tiny", TINY)


def data_info(num_classes=5):
    """A DataInfo whose class names are synthetic scenes' (words of the tiny CLIP)."""
    return fake_data_info(num_classes)._replace(
        class_names=synthetic_scenes.class_names(num_classes)
    )


def config_for(data_dir, **overrides):
    overrides = {"method_config.clip_arch": "test_tiny", "method_config.n_ctx": 4, **overrides}
    return tiny_run_config(data_dir, "dualcoop", **overrides)


def build(variant, class_specific=True, num_classes=5, seed=0):
    config = config_for("/nonexistent", **{"method_config.variant": variant,
                                           "method_config.class_specific": class_specific})  # fmt: skip
    info = data_info(num_classes)
    model = dualcoop.make_model(config, info)
    images = jax.random.normal(jax.random.key(seed), (2, 64, 64, 3))
    variables = model.init(jax.random.key(seed + 1), images)
    # Non-trivial contexts and scales.
    params = jax.tree_util.tree_map(lambda x: x, variables["params"])
    prompts = dict(params["prompts"])
    prompts["ctx_pos"] = jax.random.normal(jax.random.key(7), prompts["ctx_pos"].shape)
    prompts["ctx_neg"] = jax.random.normal(jax.random.key(8), prompts["ctx_neg"].shape)
    params = {**params, "prompts": prompts}
    return config, model, {**variables, "params": params}, images


def by_hand(model, variables, images):
    """The logits from CLIP's own functions and numpy (module docstring of models.prompting)."""
    p = variables["params"]
    tower = clip.CLIP(model.clip_config)
    tv = {"params": p["prompts"]["clip"],
          "batch_stats": variables["batch_stats"]["prompts"]["clip"]}  # fmt: skip
    ids = np.asarray(model.prompt_ids)
    c, n = ids.shape[0], model.n_ctx
    # The whole context here; the model cuts the sequences after the last end-of-text token.
    assert ids.argmax(-1).max() + 1 < ids.shape[1]
    emb = np.asarray(tower.apply(tv, jnp.asarray(ids), method=clip.CLIP.embed_tokens))

    def text(ctx):
        ctx = np.broadcast_to(np.asarray(ctx), (c, n, emb.shape[-1]))
        seq = np.concatenate([emb[:, :1], ctx, emb[:, 1 + n :]], axis=1)
        assert seq.shape == emb.shape
        g = np.asarray(tower.apply(tv, jnp.asarray(seq), jnp.asarray(ids.argmax(-1)),
                                   method=clip.CLIP.encode_embeddings))  # fmt: skip
        return g / np.linalg.norm(g, axis=-1, keepdims=True)

    g_pos, g_neg = text(p["prompts"]["ctx_pos"]), text(p["prompts"]["ctx_neg"])
    fmap = tower.apply(tv, images, method=clip.CLIP.image_features)
    mode = "value" if model.variant == "author" else "official"
    f = np.asarray(tower.apply(tv, fmap, mode, method=clip.CLIP.dense))
    f = f / np.linalg.norm(f, axis=-1, keepdims=True)
    cos_pos, cos_neg = f @ g_pos.T, f @ g_neg.T  # (B, T, C)
    if model.variant == "official":
        a, s = 20.0, 100.0
    else:
        a, s = np.exp(float(p["spatial_t"])), np.exp(float(p["scale_t"]))
    w = np.exp(a * cos_pos - (a * cos_pos).max(axis=1, keepdims=True))
    w = w / w.sum(axis=1, keepdims=True)
    return s * (w * cos_pos).sum(1), s * (w * cos_neg).sum(1)


@pytest.mark.parametrize(("variant", "class_specific"),
                         [("author", True), ("official", True), ("author", False)])  # fmt: skip
@pytest.mark.slow
@pytest.mark.mutation
def test_logits_match_the_equations(variant, class_specific):
    _, model, variables, images = build(variant, class_specific)
    logits, aux = model.apply(variables, images)
    pos, neg = by_hand(model, variables, images)
    np.testing.assert_allclose(aux["pos_logits"], pos, rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(aux["neg_logits"], neg, rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(logits, pos - neg, rtol=2e-4, atol=2e-4)
    # 64-px images on a CLIP of 32-px grid: 2x2 maps, the official variant's 1x1 positional
    # grid resized to them.
    assert aux["pos_logits"].shape == (2, 5)


@pytest.mark.slow  # ~40 s on 2 cores (four CLIP compiles)
def test_model_dtype_reaches_the_clip_towers():
    """config.model.dtype='bfloat16' computes DualCoOp and TRM-ML in bfloat16 (it once stayed float32
    silently); the logits stay within bfloat16's precision of the float32 model's."""
    from mlrpl_jax.methods import trm_ml as trm_ml_method

    info = data_info()
    images = jax.random.normal(jax.random.key(0), (2, 64, 64, 3))
    for make, method in ((dualcoop.make_model, "dualcoop"), (trm_ml_method.make_model, "trm_ml")):
        outputs = {}
        for dtype in ("float32", "bfloat16"):
            config = tiny_run_config("/nonexistent", method, **{
                "method_config.clip_arch": "test_tiny", "method_config.n_ctx": 4,
                "model.dtype": dtype})  # fmt: skip
            model = make(config, info)
            assert model.dtype == {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[dtype]
            if dtype == "float32":
                variables = model.init(jax.random.key(1), images)
            out = model.apply(variables, images)
            outputs[dtype] = np.asarray(out[0] if isinstance(out, tuple) else out, np.float32)
        assert not np.array_equal(outputs["float32"], outputs["bfloat16"]), method
        scale = np.abs(outputs["float32"]).max()  # logits are cosines x CLIP's logit scale
        np.testing.assert_allclose(outputs["bfloat16"], outputs["float32"], atol=0.03 * scale)


def test_prompt_template_and_ids():
    assert prompting.prompt_templates(["traffic_light"], 3) == ["X X X traffic light."]
    config = config_for("/nonexistent")
    ids = dualcoop.prompt_ids(config, ("red plain disc", "light blue dotted star"))
    words = ("<pad>", *WORDS)
    sot, eot = len(words), len(words) + 1
    x, dot = words.index("x"), words.index(".")
    red, plain, disc = (words.index(w) for w in ("red", "plain", "disc"))
    np.testing.assert_array_equal(ids[0, :10], [sot, x, x, x, x, red, plain, disc, dot, eot])
    assert ids[1, 5] == words.index("light") and ids[1, 10] == eot and ids[1, 11] == 0
    # A template that would be truncated is an error.
    config.method_config.n_ctx = 20
    with pytest.raises(ValueError, match="truncated"):
        dualcoop.prompt_ids(config, ("red plain disc",))


@pytest.mark.slow  # > 9 s on 2 cores; the fast loop stays under 5 minutes
def test_gradients_reach_the_contexts_and_scales_only():
    config, model, variables, images = build("author")
    labels = jnp.asarray([[1, -1, 0, 1, -1], [0, 1, -1, -1, 1]], jnp.int8)

    def loss(params):
        _, aux = model.apply({**variables, "params": params}, images)
        return dualcoop.asl_loss(config, aux, labels)[0]

    grads = jax.grad(loss)(variables["params"])
    for name in ("ctx_pos", "ctx_neg"):
        assert float(jnp.abs(grads["prompts"][name]).sum()) > 0, name
    for name in ("scale_t", "spatial_t"):
        assert float(jnp.abs(grads[name]).sum()) > 0, name
    image_tower = grads["prompts"]["clip"]["visual"]
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree_util.tree_leaves(image_tower))


@pytest.mark.slow
@pytest.mark.mutation
def test_remat_modes_give_the_same_gradients():
    """What the text blocks keep for the backward pass changes memory, not the gradients."""
    config, model, variables, images = build("author")
    labels = jnp.asarray([[1, -1, 0, 1, -1], [0, 1, -1, -1, 1]], jnp.int8)
    grads = {}
    for mode in clip.REMAT_MODES:
        m = model.clone(remat_text=mode)

        def loss(params, m=m):
            _, aux = m.apply({**variables, "params": params}, images)
            return dualcoop.asl_loss(config, aux, labels)[0]

        grads[mode] = jax.grad(loss)(variables["params"])["prompts"]["ctx_pos"]
    for mode in ("dots", "full"):
        np.testing.assert_allclose(grads[mode], grads["none"], rtol=1e-5, atol=1e-7)


@pytest.mark.slow
@pytest.mark.mutation
def test_losses_of_the_variants_and_loss_w():
    config, model, variables, images = build("official")
    labels = jnp.asarray([[1, -1, 0, 1, -1], [0, 1, -1, -1, 1]], jnp.int8)
    _, aux = model.apply(variables, images)
    config.method_config.loss_w = 0.03
    got, _ = dualcoop.asl_loss(config, aux, labels)
    want, _ = losses.softmax_pair_asl(aux["neg_logits"], aux["pos_logits"], labels, eps=1e-6)
    np.testing.assert_allclose(got, 0.03 * want, rtol=1e-6)
    config.method_config.variant, config.method_config.loss_w = "author", 1.0
    got, _ = dualcoop.asl_loss(config, aux, labels)
    want, _ = losses.sigmoid_difference_asl(
        aux["neg_logits"], aux["pos_logits"], labels.astype(jnp.float32)
    )
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("known", [0.5, 0.1, 0.9])
def test_official_recipe_weighs_the_summed_loss_by_the_known_proportion(known):
    """`recipes.dualcoop_official_scale`: the published loss_w 0.03 at p = 0.5 and 0.03 x 0.5 / p
    at any other p, i.e. the same weight per known entry of the summed loss: on the whole grid of
    entries, the weighted loss of a batch whose known entries are a fraction p of a fully known
    batch's, all with the same per-entry loss, does not depend on p."""
    from configs import base, recipes

    config = config_for("/nonexistent", **{"method_config.variant": "official"})
    recipe = recipes.dualcoop_official_scale(base.get_config("dualcoop"), "coco")
    recipe.data.known_proportion = known  # as --config.data.known_proportion does
    config.method_config.loss_w = recipe.method_config.loss_w
    np.testing.assert_allclose(config.method_config.loss_w, 0.015 / known, rtol=1e-12)
    # Every entry a known negative with the same logits: each contributes the same term.
    aux = {"neg_logits": jnp.zeros((2, 100)), "pos_logits": jnp.full((2, 100), -1.0)}
    labels = np.zeros((2, 100), np.int8)
    labels[:, : round(100 * known)] = -1
    got, _ = dualcoop.asl_loss(config, aux, jnp.asarray(labels))
    per_entry, _ = losses.softmax_pair_asl(aux["neg_logits"][:1, :1], aux["pos_logits"][:1, :1],
                                           jnp.full((1, 1), -1, jnp.int8), eps=1e-6)  # fmt: skip
    np.testing.assert_allclose(got, 0.03 * 0.5 * 200 * per_entry, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.mutation
def test_frozen_towers_have_no_optimiser_state():
    config = config_for("/nonexistent")
    info = data_info(5)
    fns = trainer.make_train_fns(config, methods.get("dualcoop"), info, sharding.make_mesh(), 1, 4)
    sizes = {
        jax.tree_util.keystr(path): leaf.size
        for path, leaf in jax.tree_util.tree_flatten_with_path(fns.state.opt_state)[0]
        if hasattr(leaf, "size") and leaf.ndim > 0
    }
    assert sizes and not any("clip" in k for k in sizes), sorted(sizes)[:5]
    trained = 2 * 5 * 4 * TINY.text_width
    assert sum(sizes.values()) == 2 * trained  # Adam's two moments of ctx_pos and ctx_neg


@pytest.mark.slow
@pytest.mark.mutation
def test_the_model_holds_every_clip_variable_in_the_checkpoint_layout():
    _, _, variables, _ = build("official")
    want = clip.abstract_variables(TINY)
    for collection in ("params", "batch_stats"):
        got = variables[collection]["prompts"]["clip"]
        assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(
            want[collection]
        ), collection


@pytest.mark.slow
@pytest.mark.mutation
def test_clip_weights_are_loaded_strictly_and_checked_against_the_arch(tmp_path):
    variables = clip.init_variables(TINY, jax.random.key(3))
    path = tmp_path / "tiny_clip.npz"
    np.savez(path, **clip_convert.to_state_dict(variables))
    config = config_for("/nonexistent", **{"method_config.clip_weights": str(path)})
    _, _, init, _ = build("author")
    params, stats = dualcoop.load_clip(config, init["params"], init["batch_stats"])
    np.testing.assert_array_equal(
        stats["prompts"]["clip"]["visual"]["bn1"]["var"],
        variables["batch_stats"]["visual"]["bn1"]["var"],
    )
    np.testing.assert_array_equal(
        params["prompts"]["clip"]["text_projection"], variables["params"]["text_projection"]
    )
    assert params["prompts"]["ctx_pos"] is init["params"]["prompts"]["ctx_pos"]
    other = dataclasses.replace(TINY, text_layers=2)
    np.savez(path, **clip_convert.to_state_dict(clip.init_variables(other, jax.random.key(0))))
    with pytest.raises(ValueError, match="clip_arch='test_tiny'") as e:
        dualcoop.load_clip(config, init["params"], init["batch_stats"])
    assert "transformer.resblocks.1.attn.in_proj_weight" in str(e.value)


def test_bad_method_config_values_are_errors():
    for key, value, match in (("variant", "dual", "variant"), ("loss", "bce", "loss"),
                              ("clip_arch", "ViT-B/32", "clip_arch"), ("n_ctx", 0, "n_ctx"),
                              ("remat_text", "some", "remat_text")):  # fmt: skip
        config = config_for("/nonexistent", **{f"method_config.{key}": value})
        with pytest.raises(ValueError, match=match):
            config_validation.validate(config)
