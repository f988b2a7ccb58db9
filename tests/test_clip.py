"""Flax CLIP (`models.clip`), its converter (`models.clip_convert`) and tokenizer
(`models.clip_tokenizer`) against open_clip (test-only oracle) built with random weights."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

import jax.numpy as jnp
import torch.nn.functional as F
from open_clip.model import CLIP as TorchCLIP
from open_clip.model import CLIPTextCfg, CLIPVisionCfg

from mlrpl_jax.data import sources
from mlrpl_jax.models import clip, clip_convert, clip_tokenizer

TOL = 1e-4


def _randomize_batchnorm(model, seed=0):
    """open_clip's init leaves BN at identity (and bn3 at zero); random statistics make the
    parity test see every BN parameter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
    return model.eval()


def tiny_torch_clip(quick_gelu=True, seed=0):
    torch.manual_seed(seed)
    model = TorchCLIP(
        embed_dim=64,
        vision_cfg=CLIPVisionCfg(layers=(1, 2, 1, 1), width=16, image_size=64),
        text_cfg=CLIPTextCfg(context_length=16, vocab_size=100, width=64, heads=1, layers=2),
        quick_gelu=quick_gelu,
    )
    return _randomize_batchnorm(model, seed)


def state_dict(model, dtype=np.float32):
    return {k: v.detach().numpy().astype(dtype) for k, v in model.state_dict().items()}


def nhwc(images):
    return jnp.asarray(images.numpy().transpose(0, 2, 3, 1))


def torch_dense(model, images, official):
    """The dense joint-space features written out in torch: c_proj(v_proj(token)) per token
    (official DualCoOp: mean token first, bicubic-resized positional embedding added)."""
    v = model.visual
    with torch.no_grad():
        x = v.layer4(v.layer3(v.layer2(v.layer1(v.stem(images)))))
        b, d, h, w = x.shape
        tokens = x.reshape(b, d, h * w).permute(0, 2, 1)
        if official:
            pos = v.attnpool.positional_embedding
            g = round((pos.shape[0] - 1) ** 0.5)
            grid = pos[1:].reshape(1, g, g, d).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
            pos = torch.cat([pos[:1], grid.reshape(d, h * w).T], dim=0)
            tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1) + pos
        return v.attnpool.c_proj(v.attnpool.v_proj(tokens)).numpy()


def check_parity(torch_model, size, text_len, vocab, dense=True, seed=0):
    config, variables = clip_convert.convert_state_dict(state_dict(torch_model))
    model = clip.CLIP(config)
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 3, size, size, generator=g)
    ids = torch.randint(1, vocab - 2, (2, text_len), generator=g)
    ids[0, 5], ids[1, text_len - 1] = vocab - 1, vocab - 1  # end-of-text = largest id
    with torch.no_grad():
        ref_image = torch_model.encode_image(images).numpy()
        ref_text = torch_model.encode_text(ids).numpy()
    image = model.apply(variables, nhwc(images), method=clip.CLIP.encode_image)
    text = model.apply(variables, jnp.asarray(ids.numpy()), method=clip.CLIP.encode_text)
    np.testing.assert_allclose(image, ref_image, atol=TOL, rtol=TOL)
    np.testing.assert_allclose(text, ref_text, atol=TOL, rtol=TOL)
    if dense:
        fmap = model.apply(variables, nhwc(images), method=clip.CLIP.image_features)
        for mode, official in (("value", False), ("official", True)):
            got = model.apply(variables, fmap, mode, method=clip.CLIP.dense)
            want = torch_dense(torch_model, images, official)
            np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)
    return config, variables


@pytest.mark.slow
def test_tiny_clip_matches_open_clip_embeddings_and_dense_features():
    torch_model = tiny_torch_clip()
    config, variables = check_parity(torch_model, size=64, text_len=16, vocab=100)
    assert config == clip.ClipConfig(
        embed_dim=64, vision_layers=(1, 2, 1, 1), vision_width=16, image_size=64,
        context_length=16, vocab_size=100, text_width=64, text_heads=1, text_layers=2,
    )  # fmt: skip
    np.testing.assert_allclose(
        float(variables["params"]["logit_scale"]), float(torch_model.logit_scale)
    )
    # Round trip back to the PyTorch state dict.
    back = clip_convert.to_state_dict(variables)
    ref = state_dict(torch_model)
    assert set(back) == {k for k in ref if not k.endswith("num_batches_tracked")}
    for k, v in back.items():
        np.testing.assert_array_equal(v, ref[k], err_msg=k)


@pytest.mark.slow
def test_dense_features_at_twice_the_pretraining_resolution():
    # 128 px on a 64-px CLIP: a 4x4 map, the 2x2 positional grid resized bicubically (official).
    torch_model = tiny_torch_clip(seed=1)
    config, variables = clip_convert.convert_state_dict(state_dict(torch_model))
    images = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    model = clip.CLIP(config)
    fmap = model.apply(variables, nhwc(images), method=clip.CLIP.image_features)
    assert fmap.shape == (1, 4, 4, 512)
    for mode, official, tokens in (("value", False, 16), ("official", True, 17)):
        got = model.apply(variables, fmap, mode, method=clip.CLIP.dense)
        assert got.shape == (1, tokens, 64)
        np.testing.assert_allclose(got, torch_dense(torch_model, images, official), atol=TOL)


def test_torch_bicubic_matrix_matches_torch_interpolate():
    x = torch.randn(1, 3, 7, 5)
    for h, w in ((14, 10), (3, 2), (7, 5), (9, 13)):
        want = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)[0].numpy()
        got = np.einsum(
            "hi,cij,wj->chw",
            clip.torch_bicubic_matrix(7, h), x[0].numpy(), clip.torch_bicubic_matrix(5, w),
        )  # fmt: skip
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_exact_gelu_variant_and_fp16_checkpoint():
    torch_model = tiny_torch_clip(quick_gelu=False, seed=2)
    sd = state_dict(torch_model)
    config, variables = clip_convert.convert_state_dict(sd)
    config = clip.ClipConfig(**{**config.__dict__, "quick_gelu": False})
    ids = torch.randint(1, 98, (2, 16), generator=torch.Generator().manual_seed(0))
    ids[:, 7] = 99
    with torch.no_grad():
        want = torch_model.encode_text(ids).numpy()
    got = clip.CLIP(config).apply(variables, jnp.asarray(ids.numpy()), method=clip.CLIP.encode_text)
    np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)
    # An fp16 state dict converts to float32 values equal to the fp16 ones.
    half = {k: (v.astype(np.float16) if v.dtype == np.float32 else v) for k, v in sd.items()}
    _, from_half = clip_convert.convert_state_dict(half)
    kernel = from_half["params"]["visual"]["conv1"]["kernel"]
    assert kernel.dtype == jnp.float32
    np.testing.assert_array_equal(
        kernel,
        sd["visual.conv1.weight"].astype(np.float16).astype(np.float32).transpose(2, 3, 1, 0),
    )


@pytest.mark.filterwarnings("ignore")  # torch.jit's tracer and deprecation warnings
def test_torchscript_archive_and_npz_are_read(tmp_path):
    torch_model = tiny_torch_clip(seed=3)
    example = (torch.randn(1, 3, 64, 64), torch.randint(0, 99, (1, 16)))
    traced = torch.jit.trace(torch_model, example, strict=False)
    traced.save(str(tmp_path / "RN_tiny.pt"))
    config, variables = clip_convert.load(tmp_path / "RN_tiny.pt")
    ref = state_dict(torch_model)
    np.testing.assert_array_equal(
        variables["batch_stats"]["visual"]["layer2"]["1"]["bn2"]["var"],
        ref["visual.layer2.1.bn2.running_var"],
    )
    np.savez(tmp_path / "tiny.npz", **clip_convert.to_state_dict(variables))
    config2, variables2 = clip_convert.load(tmp_path / "tiny.npz")
    assert config2 == config
    for a, b in zip(
        jax_leaves(variables), jax_leaves(variables2), strict=True
    ):  # fmt: skip
        np.testing.assert_array_equal(a, b)


def jax_leaves(tree):
    import jax

    return jax.tree_util.tree_leaves(tree)


def test_converter_is_strict_and_lists_every_bad_key():
    sd = state_dict(tiny_torch_clip())
    sd["input_resolution"] = np.array(64)  # OpenAI's scalars are ignored
    bad = dict(sd)
    del bad["visual.layer1.0.bn1.running_mean"]
    del bad["transformer.resblocks.1.mlp.c_fc.bias"]
    bad["visual.extra.weight"] = np.zeros(3, np.float32)
    bad["visual.attnpool.c_proj.weight"] = np.zeros((64, 256), np.float32)
    with pytest.raises(ValueError) as e:
        clip_convert.convert_state_dict(bad, clip_convert.convert_state_dict(sd)[0])
    msg = str(e.value)
    assert "2 missing, 1 unexpected and 1 mis-shaped" in msg
    for key in ("visual.layer1.0.bn1.running_mean", "transformer.resblocks.1.mlp.c_fc.bias",
                "visual.extra.weight", "visual.attnpool.c_proj.weight: expected (64, 512)"):  # fmt: skip
        assert key in msg
    with pytest.raises(ValueError, match="ViT CLIP"):
        clip_convert.convert_state_dict({"visual.class_embedding": np.zeros(8), "visual.proj": 0})


def test_missing_checkpoint_says_how_to_get_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="convert_clip.py"):
        clip_convert.read_checkpoint(tmp_path / "RN50.pt")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["RN50", "RN101"])
def test_rn50_rn101_match_open_clip(name):
    # open_clip's RN50 / RN101 architectures (QuickGELU as OpenAI's weights) with random weights.
    torch.manual_seed(0)
    torch_model = open_clip.create_model(f"{name}-quickgelu", pretrained=None)
    _randomize_batchnorm(torch_model)
    config, _ = check_parity(torch_model, size=224, text_len=77, vocab=49408)
    assert config == clip.PRESETS[name]


# --- tokenizer ------------------------------------------------------------------------------

TEXTS = [
    "a photo of a dog.", "X", ".", "traffic light.", "potted plant", "",
    "X X X X X X X X X X X X X X X X person.",
    "Hello,   World!! <b>bold</b> &amp; &lt;tag&gt; 'tis isn't we'll they've I'm you'd",
    "naïve café 東京 ümlaut — “quotes” emoji 😀 Ελληνικά", "123 4.56 1,000,000 3rd 2026-12-04",
    "x" * 300, "word " * 100, "\u00a0nbsp\tTab\nnewline  ", "l'été SHOUT MiXeD",
    "a<end_of_text>b <start_of_text>", "a<|endoftext|>b", "C++ & C# @user #tag $5 100%",
    "a striped red disc and a blue star",
]  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer():
    return clip_tokenizer.Tokenizer()


def test_tokenizer_matches_open_clip(tokenizer):
    from open_clip import tokenizer as oc_tokenizer

    from mlrpl_jax.data.tfds_builders import synthetic_scenes

    # Every dataset's class names (VG-200's come from the user's files; its placeholders too).
    names = [*sources.COCO_CLASS_NAMES, *sources.VOC_CLASS_NAMES,
             *synthetic_scenes.class_names(40), "class_007"]  # fmt: skip
    texts = TEXTS + names + [f"a photo of a {n}." for n in names]
    np.testing.assert_array_equal(
        tokenizer.tokenize(texts), oc_tokenizer.tokenize(texts).numpy().astype(np.int32)
    )
    short = tokenizer.tokenize(TEXTS, context_length=8)
    np.testing.assert_array_equal(
        short, oc_tokenizer.tokenize(TEXTS, context_length=8).numpy().astype(np.int32)
    )
    assert (short[TEXTS.index("word " * 100)] == [49406, *[2653] * 6, 49407]).all()


def test_tokenizer_reference_values(tokenizer):
    # clip_notes.md §6, computed with OpenAI's file and code.
    assert tokenizer.vocab_size == 49408 and (tokenizer.sot_id, tokenizer.eot_id) == (49406, 49407)
    assert tokenizer.encode("a photo of a dog.") == [320, 1125, 539, 320, 1929, 269]
    assert tokenizer.encode("traffic light.") == [3399, 1395, 269]
    assert tokenizer.encode("potted plant") == [48581, 3912]
    ids = tokenizer.tokenize("X " * 16 + "person.")[0]
    assert ids[0] == 49406 and (ids[1:17] == 343).all() and ids[19] == 49407 and ids[18] == 269


def test_missing_vocabulary_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MLRPL_CLIP_VOCAB", str(tmp_path / "nope.txt.gz"))
    with pytest.raises(FileNotFoundError, match="MLRPL_CLIP_VOCAB"):
        clip_tokenizer.default_vocab_path()
    with pytest.raises(FileNotFoundError, match="not found"):
        clip_tokenizer.Tokenizer(tmp_path / "nope.txt.gz")


def test_convert_script_writes_a_torch_free_npz(tmp_path, capsys):
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "scripts", "convert_clip.py")
    spec = importlib.util.spec_from_file_location("convert_clip", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    torch_model = tiny_torch_clip(seed=4).half()  # an fp16 state dict, as OpenAI's files hold
    torch.save(torch_model.state_dict(), tmp_path / "tiny.pth")
    script.main([str(tmp_path / "tiny.pth"), str(tmp_path / "tiny.npz")])
    assert "parameters" in capsys.readouterr().out
    with np.load(tmp_path / "tiny.npz") as npz:
        assert "visual.conv1.weight" in npz.files and npz["visual.conv1.weight"].dtype == np.float32
        assert not any(k.endswith("num_batches_tracked") for k in npz.files)
    _, variables = clip_convert.load(tmp_path / "tiny.npz")
    np.testing.assert_array_equal(
        variables["params"]["token_embedding"]["embedding"],
        torch_model.token_embedding.weight.detach().float().numpy(),
    )
    with pytest.raises(SystemExit) as exit_info:
        script.main([str(tmp_path / "tiny.pth"), str(tmp_path / "tiny.safetensors")])
    assert exit_info.value.code == 2
    assert "must be a .npz" in capsys.readouterr().err
