"""The CLIP methods' train step: memory at paper scale and time at CPU scale.

  python scripts/benchmark_clip.py                 # RN101, 448 px, C = 80, batch 8; CPU scale
  python scripts/benchmark_clip.py --arch RN50 --batch 32 --skip-time

1. **Memory at paper scale** (XLA's compiled memory analysis of the trainer's whole jitted train
   step; the state is built, the step is only compiled): `dualcoop` (author variant) and `trm_ml`
   on a frozen CLIP `--arch` at `--size` px with the C = 80 COCO class names, with each of the
   text tower's `remat_text` modes: every activation kept ('none'), the dense layers' products
   kept and the rest recomputed ('dots', the default), each block recomputed ('full'). Printed per device: the state's parameter and optimiser bytes (the frozen
   towers hold no optimiser state) and the step's temporaries. The towers' weights are random
   (nothing is downloaded); shapes are what matter.
2. **Time at CPU scale**: the whole train step of `plain` (the transfer benchmark's ResNet-18),
   `dualcoop` and `trm_ml` (`configs/clip_synthetic.py`: the small CLIP, 96 px, 10 classes,
   batch 32), median of `--steps` steps, timed in turns in one process; ratios against `plain`.
3. **DualCoOp at paper shapes against PyTorch** (`--skip-torch` to leave out; needs the test
   extras' torch and open-clip-torch): the official DualCoOp step (frozen CLIP `--arch` at `--size`
   px, mean token + resized positional embedding, 2C = 160 prompts of 77 tokens, softmax-pair ASL,
   SGD) as the trainer jits it, and the same step written straightforwardly in PyTorch on
   open_clip's model as the official code computes it (towers `requires_grad_(False)`, contexts
   `nn.Parameter`, eager autograd). Both start from the same weights (open_clip's random RN101,
   converted), contexts and batch, and the first step's losses are compared. Timed in turns in
   one process (median of `--steps`), each split into the image tower (forward), the text tower
   over the 2C prompts (forward + backward to the contexts) and the rest (whole step minus both).
   Memory: each framework's first step (ours compiled ahead) in its own subprocess, the peak
   resident memory during the step (the kernel's high-water mark, reset through
   /proc/self/clear_refs) above the resident memory before it; and XLA's compiled temporaries.

On a GPU/TPU host pass --devices 0 to use the real devices (section 3's PyTorch side then runs on
the first CUDA device when there is one).
"""

import argparse
import os
import sys
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="RN101", choices=("RN50", "RN101"))
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--devices", type=int, default=1, help="simulated CPU devices; 0 = real")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-time", action="store_true")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--rss", choices=("jax", "torch"), help=argparse.SUPPRESS)  # internal
    args = parser.parse_args()
    if args.devices:
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + f" --xla_force_host_platform_device_count={args.devices}"
        )
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    import jax
    import numpy as np
    from absl import flags

    flags.FLAGS.mark_as_parsed()
    jax.config.update("jax_threefry_partitionable", False)
    from configs import base as base_config
    from configs import clip_synthetic, recipes
    from mlrpl_jax import methods, sharding, trainer
    from mlrpl_jax.data import sources
    from mlrpl_jax.models import clip

    mesh = sharding.make_mesh()
    d = mesh.devices.size
    if args.rss:
        return rss_of_one_step(args, mesh)
    print(f"{jax.devices()[0].platform} x {d} device(s)")

    def data_info(names, n=1000):
        labels = np.zeros((n, len(names)), np.int8)
        return methods.DataInfo(
            num_classes=len(names), class_names=tuple(names), num_train_examples=n,
            train_partial_labels=lambda: labels, label_semantics=lambda: None,
        )  # fmt: skip

    def batch_of(rng, b, size, c):
        return sharding.host_to_global({
            "image": rng.integers(0, 256, (b, size, size, 3), dtype=np.uint8),
            "labels": rng.integers(-1, 2, (b, c)).astype(np.int8),
            "example_id": np.arange(b, dtype=np.int32),
            "full_labels": rng.integers(0, 2, (b, c)).astype(np.uint8),
        }, mesh)  # fmt: skip

    def tree_bytes(tree):
        leaves = [x for x in jax.tree_util.tree_leaves(tree) if hasattr(x, "addressable_shards")]
        return sum(x.addressable_shards[0].data.nbytes for x in leaves)

    if not args.skip_memory:
        names = sources.COCO_CLASS_NAMES
        info = data_info(names)
        print(f"\n1. compiled train step, CLIP {args.arch}, {args.size} px, C = {len(names)}, "
              f"batch {args.batch} (per device: MB)")  # fmt: skip
        print(f"{'method':>10} {'remat_text':>10} {'params':>8} {'opt state':>10} {'temp':>9} "
              f"{'compile s':>10}")  # fmt: skip
        for name in ("dualcoop", "trm_ml"):
            for remat in clip.REMAT_MODES:
                config = recipes.trm_ml_scale(base_config.get_config(name), "coco")
                mc = config.method_config
                mc.clip_arch, mc.clip_weights, mc.remat_text = args.arch, None, remat
                config.data.image_size = args.size
                config.train.batch_size = args.batch
                fns = trainer.make_train_fns(
                    config, methods.get(name), info, mesh, 100, 1000, pretrained=False
                )
                batch = batch_of(np.random.default_rng(0), args.batch, args.size, len(names))
                t = time.perf_counter()
                memory = fns.step_fn.lower(fns.state, batch).compile().memory_analysis()
                took = time.perf_counter() - t
                print(f"{name:>10} {remat!s:>10} {tree_bytes(fns.state.params) / 1e6:8.1f} "
                      f"{tree_bytes(fns.state.opt_state) / 1e6:10.2f} "
                      f"{memory.temp_size_in_bytes / 1e6:9.1f} {took:10.1f}")  # fmt: skip
                del fns

    if not args.skip_time:
        from configs import synthetic_transfer

        print(f"\n2. whole train step at CPU scale (96 px, 10 classes, batch 32), median of "
              f"{args.steps} steps, timed in turns")  # fmt: skip
        plain_config = synthetic_transfer.get_config("plain")
        plain_config.model.backbone_weights = None
        runs = {"plain (ResNet-18 w16)": (plain_config, "plain")}
        for name in ("dualcoop", "trm_ml"):
            config = clip_synthetic.get_config(name)
            config.method_config.clip_weights = None
            runs[f"{name} (small CLIP)"] = (config, name)
        from mlrpl_jax.data.tfds_builders import synthetic_scenes

        info = data_info(synthetic_scenes.class_names(10))
        fns = {k: trainer.make_train_fns(c, methods.get(m), info, mesh, 93, 744)
               for k, (c, m) in runs.items()}  # fmt: skip
        states = {k: v.state for k, v in fns.items()}
        times = {k: [] for k in fns}
        rng = np.random.default_rng(0)
        for i in range(args.steps + 1):
            batch = batch_of(rng, 32, 96, 10)
            for name, f in fns.items():
                t = time.perf_counter()
                states[name], _ = f.step_fn(states[name], batch)
                jax.block_until_ready(states[name].params)
                if i:  # the first call compiles
                    times[name].append(time.perf_counter() - t)
        base_t = float(np.median(times["plain (ResNet-18 w16)"]))
        for name, ts in times.items():
            med = float(np.median(ts))
            print(f"   {name:>22}: {med * 1e3:8.1f} ms/step  (x{med / base_t:.2f})")

    if not args.skip_torch:
        versus_torch(args, mesh)


# --- 3. DualCoOp at paper shapes against PyTorch on open_clip -------------------------------


def _ours(args, mesh, names):
    """The official DualCoOp recipe's jitted train fns at `--arch`, `--size`, `--batch`."""
    from mlrpl_jax import methods, trainer

    config = _official_config(args)
    labels = np.zeros((1000, len(names)), np.int8)
    info = methods.DataInfo(
        num_classes=len(names), class_names=tuple(names), num_train_examples=1000,
        train_partial_labels=lambda: labels, label_semantics=lambda: None,
    )  # fmt: skip
    fns = trainer.make_train_fns(config, methods.get("dualcoop"), info, mesh, 100, 1000,
                                 pretrained=False)  # fmt: skip
    return config, fns


def _open_clip_model(arch):
    """open_clip's `arch` (QuickGELU, as OpenAI's weights) with random weights and random
    BatchNorm statistics, in inference mode, frozen."""
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.create_model(f"{arch}-quickgelu", pretrained=None)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
    return model.eval().requires_grad_(False)


def _torch_dualcoop(clip_model, prompt_ids, ctx_pos, ctx_neg, config):
    """The official DualCoOp forward, loss and SGD step written straightforwardly in PyTorch on an
    open_clip model: frozen towers, class-specific contexts as `nn.Parameter`s, eager autograd.
    Returns (module, step(images uint8 NHWC numpy, labels numpy) -> loss float)."""
    import torch
    import torch.nn.functional as F

    from mlrpl_jax.models import clip

    mc = config.method_config
    n_ctx = mc.n_ctx

    class DualCoOp(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.clip = clip_model
            self.ctx_pos = torch.nn.Parameter(torch.tensor(np.asarray(ctx_pos)))
            self.ctx_neg = torch.nn.Parameter(torch.tensor(np.asarray(ctx_neg)))
            ids = torch.tensor(np.asarray(prompt_ids), dtype=torch.long)
            with torch.no_grad():
                emb = clip_model.token_embedding(ids)
            self.register_buffer("prefix", emb[:, :1])
            self.register_buffer("suffix", emb[:, 1 + n_ctx :])
            self.register_buffer("eot", ids.argmax(dim=-1))
            self.register_buffer("mean", torch.tensor(clip.CLIP_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(clip.CLIP_STD).view(1, 3, 1, 1))

        def image_tokens(self, images):
            v = self.clip.visual
            x = (images.permute(0, 3, 1, 2).float() / 255.0 - self.mean) / self.std
            x = v.layer4(v.layer3(v.layer2(v.layer1(v.stem(x)))))
            b, d, h, w = x.shape
            tokens = x.reshape(b, d, h * w).permute(0, 2, 1)
            pos = v.attnpool.positional_embedding
            g = round((pos.shape[0] - 1) ** 0.5)
            grid = pos[1:].reshape(1, g, g, d).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
            pos = torch.cat([pos[:1], grid.reshape(d, h * w).T], dim=0)
            tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1) + pos
            return v.attnpool.c_proj(v.attnpool.v_proj(tokens))

        def text_features(self):
            c = self.prefix.shape[0]
            x = torch.cat([torch.cat([self.prefix, ctx, self.suffix], dim=1)
                           for ctx in (self.ctx_pos, self.ctx_neg)])  # fmt: skip
            x = self.clip.transformer(x + self.clip.positional_embedding,
                                      attn_mask=self.clip.attn_mask)  # fmt: skip
            x = self.clip.ln_final(x)
            x = x[torch.arange(2 * c), self.eot.repeat(2)] @ self.clip.text_projection
            x = F.normalize(x, dim=-1)
            return x[:c], x[c:]

        def forward(self, images):
            f = F.normalize(self.image_tokens(images), dim=-1)
            g_pos, g_neg = self.text_features()
            cos_pos = 20.0 * torch.einsum("bte,ce->bct", f, g_pos)
            cos_neg = 20.0 * torch.einsum("bte,ce->bct", f, g_neg)
            w = torch.softmax(cos_pos, dim=-1)
            return 5.0 * (w * cos_pos).sum(-1), 5.0 * (w * cos_neg).sum(-1)

    def asl(pos_logits, neg_logits, labels):
        p = torch.softmax(torch.stack([neg_logits, pos_logits], dim=-1), dim=-1)[..., 1]
        not_p = torch.clamp(1.0 - p + mc.asl_clip, max=1.0)
        l_pos = -((1.0 - p) ** mc.gamma_pos).detach() * torch.log(torch.clamp(p, min=1e-6))
        l_neg = -((1.0 - not_p) ** mc.gamma_neg).detach() * torch.log(torch.clamp(not_p, min=1e-6))
        return mc.loss_w * ((labels > 0) * l_pos + (labels < 0) * l_neg).sum()

    module = DualCoOp()
    opt = torch.optim.SGD([module.ctx_pos, module.ctx_neg], lr=config.optim.learning_rate,
                          momentum=config.optim.b1, weight_decay=config.optim.weight_decay)  # fmt: skip

    def step(images, labels):
        pos, neg = module(torch.from_numpy(images))
        loss = asl(pos, neg, torch.from_numpy(labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach().item()

    return module, step


def _batch(args, c, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, (args.batch, args.size, args.size, 3), dtype=np.uint8),
        "labels": rng.integers(-1, 2, (args.batch, c)).astype(np.int8),
        "example_id": np.arange(args.batch, dtype=np.int32),
        "full_labels": rng.integers(0, 2, (args.batch, c)).astype(np.uint8),
    }


def _rss_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss_of_one_step(args, mesh):
    """(internal, `--rss jax|torch`) Prints as JSON the resident memory before the first train
    step (set up, and compiled for ours) and its peak during that step, in MB. The first step:
    both frameworks' allocators keep memory they freed, so a later step's peak above the memory
    before it would miss what the previous step left resident."""
    import json

    import jax
    import torch

    from mlrpl_jax import sharding
    from mlrpl_jax.data import sources
    from mlrpl_jax.methods import dualcoop

    names = sources.COCO_CLASS_NAMES
    host = _batch(args, len(names))
    if args.rss == "jax":
        _, fns = _ours(args, mesh, names)
        batch = sharding.host_to_global(host, mesh)
        compiled = fns.step_fn.lower(fns.state, batch).compile()

        def run():
            return jax.block_until_ready(compiled(fns.state, batch))
    else:
        config = _official_config(args)
        ids = dualcoop.prompt_ids(config, names)
        width = dualcoop.clip.PRESETS[args.arch].text_width
        shape = (2, len(names), config.method_config.n_ctx, width)
        ctx = np.random.default_rng(0).normal(0, 0.02, shape).astype(np.float32)
        _, step = _torch_dualcoop(_open_clip_model(args.arch), ids, ctx[0], ctx[1], config)

        def run():
            return step(host["image"], host["labels"])

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident memory (VmHWM) to the current
    before = _rss_mb("VmRSS")
    run()
    print(json.dumps({"before_mb": before, "peak_mb": _rss_mb("VmHWM"), "threads":
                      torch.get_num_threads()}))  # fmt: skip


def _official_config(args):
    """`configs/dualcoop_coco.py:official` (random towers) at `--arch`, `--size`, `--batch`."""
    from configs import base as base_config
    from configs import recipes

    config = recipes.dualcoop_official_scale(base_config.get_config("dualcoop"), "coco")
    mc = config.method_config
    mc.clip_arch, mc.clip_weights = args.arch, None
    config.data.image_size, config.train.batch_size = args.size, args.batch
    return config


def versus_torch(args, mesh):
    import json
    import subprocess

    import jax
    import jax.numpy as jnp
    import torch

    from mlrpl_jax import sharding
    from mlrpl_jax.data import sources
    from mlrpl_jax.methods import dualcoop
    from mlrpl_jax.models import clip, clip_convert

    names = sources.COCO_CLASS_NAMES
    c = len(names)
    print(f"\n3. official DualCoOp step, CLIP {args.arch}, {args.size} px, C = {c} (2C = {2 * c} "
          f"prompts), batch {args.batch}: ours (jitted) vs PyTorch {torch.__version__} on "
          f"open_clip (eager, {torch.get_num_threads()} threads)")  # fmt: skip
    config, fns = _ours(args, mesh, names)
    torch_clip = _open_clip_model(args.arch)
    sd = {k: v.detach().numpy() for k, v in torch_clip.state_dict().items()}
    _, variables = clip_convert.convert_state_dict(sd, clip.PRESETS[args.arch])
    host_params = jax.device_get(fns.state.params)
    params = dualcoop._put(host_params, dualcoop.CLIP_SCOPE, variables["params"])
    batch_stats = dualcoop._put(
        jax.device_get(fns.state.batch_stats), dualcoop.CLIP_SCOPE, variables["batch_stats"]
    )
    state = jax.device_put(fns.state.replace(params=params, batch_stats=batch_stats),
                           fns.state_sharding)  # fmt: skip
    prompts = host_params["prompts"]
    module, torch_step = _torch_dualcoop(
        torch_clip, dualcoop.prompt_ids(config, names), prompts["ctx_pos"], prompts["ctx_neg"],
        config,
    )  # fmt: skip

    # The components, each jitted on its own (ours) / as the step runs them (PyTorch).
    model = fns.model
    image_fn = jax.jit(
        lambda v, x: model.apply(v, x, method=lambda m, x: m.prompts.image_tokens(x)[0])
    )

    def text_sum(ctx, v):
        prompts = dict(v["params"]["prompts"], ctx_pos=ctx[0], ctx_neg=ctx[1])
        v = dict(v, params=dict(v["params"], prompts=prompts))
        g_pos, g_neg = model.apply(v, method=lambda m: m.prompts.text_features())
        return jnp.sum(g_pos) + jnp.sum(g_neg)

    text_fn = jax.jit(jax.grad(text_sum))

    def torch_text():
        g_pos, g_neg = module.text_features()
        (g_pos.sum() + g_neg.sum()).backward()
        module.zero_grad()

    def torch_image(images):
        with torch.no_grad():
            module.image_tokens(torch.from_numpy(images))

    host = _batch(args, c)
    batch = sharding.host_to_global(host, mesh)
    x = fns.normalize_fn(batch["image"])

    def variables():  # the current state's (the step donates the previous one)
        return {"params": state.params, "batch_stats": state.batch_stats}

    def ctx():
        return state.params["prompts"]["ctx_pos"], state.params["prompts"]["ctx_neg"]

    parts = {
        ("ours", "image tower"): lambda: jax.block_until_ready(image_fn(variables(), x)),
        ("ours", "text tower"): lambda: jax.block_until_ready(text_fn(ctx(), variables())),
        ("torch", "image tower"): lambda: torch_image(host["image"]),
        ("torch", "text tower"): torch_text,
    }
    losses = {}

    def ours_step():
        nonlocal state
        state, metrics = fns.step_fn(state, batch)
        losses.setdefault("ours", float(metrics["loss"]))

    def torch_whole():
        losses.setdefault("torch", torch_step(host["image"], host["labels"]))

    wholes = {("ours", "whole step"): ours_step, ("torch", "whole step"): torch_whole}
    times = {k: [] for k in (*wholes, *parts)}
    for i in range(args.steps + 1):  # the first round compiles / warms up
        for key, fn in (*wholes.items(), *parts.items()):
            t = time.perf_counter()
            fn()
            if i:
                times[key].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    rel = abs(losses["ours"] - losses["torch"]) / abs(losses["torch"])
    print(f"   first-step loss: ours {losses['ours']:.6f}, PyTorch {losses['torch']:.6f} "
          f"(relative difference {rel:.1e})")  # fmt: skip

    rss = {}
    for side in ("jax", "torch"):
        cmd = [sys.executable, os.path.abspath(__file__), "--rss", side, "--arch", args.arch,
               "--size", str(args.size), "--batch", str(args.batch),
               "--devices", str(args.devices)]  # fmt: skip
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rss[side] = json.loads(out.strip().splitlines()[-1])
    memory = fns.step_fn.lower(state, batch).compile().memory_analysis()
    print(f"   median of {args.steps} steps in turns (s)   image tower  text tower (2C, fwd+bwd)"
          f"  rest  whole step   step peak RSS above before (MB)")  # fmt: skip
    for side, label in (("ours", "jax"), ("torch", "torch")):
        whole = med[(side, "whole step")]
        image, text = med[(side, "image tower")], med[(side, "text tower")]
        r = rss[label]
        print(f"   {side:>6} {'':27} {image:11.2f} {text:25.2f} {whole - image - text:5.2f} "
              f"{whole:11.2f}   {r['peak_mb'] - r['before_mb']:8.0f}")  # fmt: skip
    speed = med[("torch", "whole step")] / med[("ours", "whole step")]
    print(f"   ours x{speed:.2f} the speed of PyTorch's step; XLA's compiled temporaries of ours "
          f"{memory.temp_size_in_bytes / 1e6:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
