"""Every generic configuration key, declared once with a one-line comment.

Experiment configs (`configs/<method>_<dataset>.py`, `configs/quickstart.py`) call `get_config()`
and only override values; the method's own keys live in its `default_config()` and are placed under
`config.method_config`. The config is locked, so a misspelt key in a file or on the command line
(`--config.train.num_epochs=3`) is an error. Values are checked by `mlrpl_jax.config_validation`.
"""

import ml_collections

from mlrpl_jax import methods


def get_config(method: str = "plain") -> ml_collections.ConfigDict:
    """Returns the base config for `method` (a key of `mlrpl_jax.methods.METHODS`)."""
    c = ml_collections.ConfigDict()
    c.seed = 0  # Seeds parameter init, the step rng, shuffling and augmentation.
    c.method = method  # Which method trains: a key of mlrpl_jax.methods.METHODS.
    c.method_config = methods.get(method).default_config()  # The method's own keys.

    c.data = ml_collections.ConfigDict()
    c.data.name = "synthetic_scenes"  # 'synthetic_scenes' | 'voc/2007' | 'coco/2014' | 'vg200'.
    c.data.data_dir = ml_collections.FieldReference(
        None, field_type=str
    )  # TFDS data dir; None = default.
    c.data.train_split = "train"  # TFDS split to train on (VOC reference: 'train+validation').
    c.data.test_split = "test"  # TFDS split to evaluate on (COCO: 'validation').
    c.data.val_split = ml_collections.FieldReference(
        None, field_type=str
    )  # Held-out TFDS split for model selection (e.g. 'validation'); None = see val_fraction.
    c.data.val_fraction = 0.1  # >0 and no val_split: carve this fraction out of the train split.
    c.data.val_seed = 1200  # Seed of the carve-out permutation (the LargeLoss protocol's 1200).
    c.data.drop_unlabeled = False  # Drop images without any positive label from every split.
    c.data.val_labels = "partial"  # Score validation on 'partial' (known entries) | 'full' labels.
    c.data.setting = "pal"  # Partial-label setting: 'pal' | 'ppl' | 'spl' | 'fal'.
    c.data.known_proportion = 0.5  # pal: fraction of entries kept; ppl: fraction of positives kept.
    c.data.label_seed = 0  # Seed of the known-label mask (independent of `seed`).
    c.data.mask_mode = "hash"  # 'hash' (per example id) | 'reference' (np.random.seed(0)).
    c.data.reference_order_file = ml_collections.FieldReference(
        None, field_type=str
    )  # mask_mode 'reference': the authors' image order (COCO instances_train2014.json, ...).
    c.data.partial_labels_file = ml_collections.FieldReference(
        None, field_type=str
    )  # .npy/.txt (N, C) in example order, a list file, or Cole et al.'s *_labels_obs.npy.
    c.data.scale_size = 512  # Train: resize to this square size first (reference 512).
    c.data.crop_sizes = (512, 448, 384, 320, 256)  # Train: square crop side drawn from these.
    c.data.image_size = 448  # Network input side, train and test (reference 448).
    c.data.augment = "papers"  # Train augmentation: 'papers' (crops + flip) | 'asl' (ASL / SPLC).
    c.data.cutout_factor = 0.5  # 'asl': Cutout rectangle side / image side (0 = no Cutout).
    c.data.randaugment_ops = 2  # 'asl': RandAugment ops per image (N).
    c.data.randaugment_magnitude = 9.0  # 'asl': RandAugment magnitude M (of 30).
    c.data.resize_on = "device"  # 'papers' augment: 'device' (host decodes; the step resamples,
    # ops/resample.py) | 'host' (pillow, two resizes). Evaluation resizes on the host either way.
    c.data.canvas_size = 0  # 'device': host canvas side (larger images are resized to fit on the
    # host); 0 = the synthetic scenes' image size, else 640 (COCO's and VOC's images fit).
    c.data.size_factor = 1.0  # Multiplies scale_size, crop_sizes and image_size (small images).
    c.data.label_embeddings = ml_collections.FieldReference(
        None, field_type=str
    )  # Category embeddings: GloVe .txt or .npy (C, E); None = fallback (label_semantics.py).
    c.data.label_embedding_dim = 300  # E of the fallback embeddings (reference: 300-d GloVe).
    c.data.cache_dir = ml_collections.FieldReference(
        None, field_type=str
    )  # Label-statistics cache; None = $MLRPL_JAX_CACHE or ~/.cache/mlrpl_jax.
    c.data.worker_count = 0  # grain worker processes for training (0 = main process).
    c.data.eval_worker_count = 0  # grain worker processes for evaluation.
    c.data.read_threads = 0  # grain read threads per loader process (0: read inline); they decode.
    # On 2 cores, 2 threads read 1.5x the inline rate with resize_on='device', 1.2-1.3x with
    # 'host' (README, "Feeding an accelerator").
    c.data.synthetic = ml_collections.ConfigDict()  # Only for data.name == 'synthetic_scenes'.
    c.data.synthetic.image_size = 96  # Side of the generated images.
    c.data.synthetic.num_classes = 10  # Number of object classes.
    c.data.synthetic.num_train = 4000  # Number of train images.
    c.data.synthetic.num_test = 1000  # Number of test images.
    c.data.synthetic.num_val = 0  # Number of images of its 'validation' split (0 = none).
    c.data.synthetic.seed = 0  # Generation seed.
    c.data.synthetic.difficulty = 1.0  # Scales colour jitter, clutter, noise and object size.

    c.model = ml_collections.ConfigDict()
    c.model.backbone = "resnet101"  # 'resnet18' | 'resnet34' | 'resnet50' | 'resnet101'.
    c.model.width = 64  # ResNet base width (64 = torchvision; smaller for CPU-scale runs).
    c.model.avg_pool_2x2 = True  # Reference: AvgPool2d(2) after layer4 (7x7 map at 448 px).
    c.model.frozen_stages = 4  # Frozen (no grad, BN in inference mode): 0 none .. 4 stem+layer1-3.
    c.model.dtype = "float32"  # Computation dtype: 'float32' | 'bfloat16'.
    c.model.input_normalization = "imagenet"  # 'imagenet' mean/std | 'unit' ([0, 1]; ASL, SPLC).
    c.model.category_features = "sd"  # SSGRL heads: 'sd' semantic decoupling | 'sa' attention.
    c.model.feature_dim = 1024  # SSGRL heads: D after the 1x1 channel reduction (reference 1024).
    c.model.attention_dim = 512  # SSGRL heads: hidden width K of semantic decoupling (512).
    c.model.gnn_steps = 3  # SSGRL heads: gated GNN propagation steps (reference 3).
    c.model.sd_chunk = 16  # Semantic decoupling: classes per rematerialised chunk (memory/speed).
    c.model.backbone_weights = ml_collections.FieldReference(
        None, field_type=str
    )  # torchvision ResNet weights (.pth/.safetensors/.npz); None = random init.

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adam"  # 'adam' (coupled L2 as torch.optim.Adam) | 'adamw' | 'sgd'.
    c.optim.learning_rate = 1e-5  # Peak learning rate.
    c.optim.weight_decay = 5e-4  # adam: L2 added to the gradient; adamw: decoupled; sgd: L2.
    c.optim.b1 = 0.9  # Adam beta1 / SGD momentum.
    c.optim.b2 = 0.999  # Adam beta2.
    c.optim.eps = 1e-8  # Adam epsilon.
    c.optim.schedule = "step"  # 'step' | 'cosine' | 'onecycle' | 'constant'.
    c.optim.decay_every_epochs = 10  # step: multiply the lr by decay_factor every this many epochs.
    c.optim.decay_factor = 0.1  # step: the factor.
    c.optim.warmup_epochs = 0.0  # Warm-up length (fraction of epochs allowed).
    c.optim.warmup_lr = 0.0  # >0: constant warm-up at this lr (DualCoOp); 0: linear from 0.
    c.optim.schedule_epochs = 0  # >0: cosine/onecycle length in epochs, if training stops earlier.
    c.optim.onecycle_pct = 0.2  # onecycle: fraction of the schedule rising (ASL / SPLC: 0.2).
    c.optim.decay_on = "all"  # Weight decay on 'all' leaves | 'matrices' (>= 2-D; ASL, SPLC).

    c.train = ml_collections.ConfigDict()
    c.train.num_epochs = 20  # Epochs; one epoch = len(train split) // batch_size steps.
    c.train.batch_size = 32  # Global batch size, split over all devices of all hosts.
    c.train.eval_batch_size = 64  # Global evaluation batch size.
    c.train.log_every_steps = 50  # Fetch, check and write train metrics every this many steps.
    c.train.eval_every_epochs = 1  # Evaluate (and maybe save the best) every this many epochs.
    c.train.select_on = "val"  # Best checkpoint by mAP on 'val' | 'test' (paper reproduction only).
    c.train.ema_decay = 0.0  # >0: keep an EMA of the weights (ASL 0.9997) and evaluate it too.
    c.train.early_stop_drop = 0.0  # >0: stop once the selection mAP is this far below its best.
    c.train.ap_mode = "sklearn"  # AP: 'sklearn' (average_precision_score) | 'voc' (reference).
    c.train.max_steps_per_epoch = -1  # >0 truncates epochs (smoke tests); -1 = full epochs.
    c.train.progress_bar = True  # tqdm progress bar with loss and images/s (on a terminal only).
    c.train.divergence_factor = 1e3  # Stop once the logged loss is this x its first one (0 = off).

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every_epochs = 1  # Save TrainState + data iterator every this many epochs.
    c.checkpoint.max_to_keep = 2  # Periodic checkpoints kept (the best one is kept apart).
    c.checkpoint.keep_best = True  # Also keep the best checkpoint (by train.select_on) in best/.
    return c
