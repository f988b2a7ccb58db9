"""Class prototypes from one pass over the training set, for a method's `refresh` (HST, SARB, DSRB).

The reference recomputes prototypes at the start of scheduled epochs: `model.eval()`, one pass over
the (augmented, shuffled) training loader without gradients, the semantic features v (pre-GNN) of
every known positive (``shared/reference/hcp_mlr_pl_notes.md`` §8.4, §9.2, §10.4). Here the pass
is a jitted accumulation step per batch (fixed shapes, no loop over classes) followed by

* `kmeans_prototypes`: K centres per class (HST, SARB) from one batched K-means (`ops.kmeans`);
* `location_prototypes`: DSRB's location-sensitive prototypes per (class, quadrant)
  (`ops.blending`), as pooled (C, 4, D) vectors.
"""

from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from mlrpl_jax.models import ssgrl
from mlrpl_jax.ops import blending, kmeans

_PASS_FNS: dict[tuple[int, str], tuple] = {}


def _pass_fn(model, name: str, update: Callable) -> Callable:
    """Jitted (params, batch_stats, carry, images, labels) -> carry, cached per (model, update)
    (models hold numpy arrays, so they are not hashable: keyed by identity)."""
    cached = _PASS_FNS.get((id(model), name))
    if cached is not None and cached[0] is model:
        return cached[1]

    def step(params, batch_stats, carry, images, labels):
        from mlrpl_jax.train_state import normalize_images

        aux = model.apply(
            {"params": params, "batch_stats": batch_stats},
            normalize_images(images),
            train=False,
            method=ssgrl.SSGRL.features,
        )
        return update(carry, aux, labels == 1)

    fn = jax.jit(step, donate_argnums=(2,))
    _PASS_FNS[(id(model), name)] = (model, fn)
    return fn


def one_pass(model, state, batches: Callable[[], Iterator[dict]], name, update, carry):
    """Runs `update(carry, aux, positive) -> carry` over one pass of `batches()` in inference mode."""
    fn = _pass_fn(model, name, update)
    for batch in batches():
        carry = fn(state.params, state.batch_stats, carry, batch["image"], batch["labels"])
    return carry


def _kmeans_update(carry, aux, positive):
    return kmeans.accumulate_by_class(*carry, aux["category_features"], positive)


def kmeans_prototypes(
    model, state, batches, *, num_classes: int, feature_dim: int, num_prototypes: int,
    max_per_class: int, n_init: int, max_iters: int, seed: int,
) -> kmeans.KMeansResult:  # fmt: skip
    """K-means centres (C, K, D) of the known-positive category features of one pass.

    The first `max_per_class` known positives of each class in pass order are kept (a uniform sample
    of the shuffled pass; the reference clusters all of them), then one `kmeans.batched_kmeans`
    (k-means++, `n_init` restarts, at most `max_iters` Lloyd steps, tol 1e-4) clusters every class.
    """
    carry = (
        jnp.zeros((num_classes, max_per_class, feature_dim), jnp.float32),
        jnp.zeros((num_classes,), jnp.int32),
    )
    buffer, count = one_pass(model, state, batches, "kmeans", _kmeans_update, carry)
    mask = jnp.arange(max_per_class)[None] < count[:, None]
    return kmeans.batched_kmeans(
        buffer, mask, num_prototypes, jax.random.PRNGKey(seed), num_iters=max_iters,
        n_init=n_init,
    )  # fmt: skip


def _location_update(cap: int):
    def update(carry, aux, positive):
        quadrants = blending.attention_quadrants(aux["attention"], aux["feature_sum"])
        return blending.accumulate_location_sums(
            *carry, aux["category_features"], quadrants, positive, cap
        )

    return update


def location_prototypes(
    model, state, batches, *, num_classes: int, feature_dim: int, cap: int
) -> tuple[jax.Array, jax.Array]:
    """DSRB's location-sensitive prototypes from one pass (notes §10.4).

    Every known positive (b, c) goes to the bucket of its class and of the quadrant of its
    attention peak (`blending.attention_quadrants`), while the bucket holds fewer than `cap`.

    Returns:
      (prototypes (C, 4, D) = `blending.location_prototypes` of the bucket sums, counts (C, 4)).
    """
    carry = (
        jnp.zeros((num_classes, blending.NUM_QUADRANTS, feature_dim), jnp.float32),
        jnp.zeros((num_classes, blending.NUM_QUADRANTS), jnp.int32),
    )
    sums, counts = one_pass(model, state, batches, f"location{cap}", _location_update(cap), carry)
    return blending.location_prototypes(sums, counts), counts


def refresh_seed(seed: int, epoch: int) -> int:
    """The K-means seed of a refresh: a function of (config.seed, epoch) only, so resumes match."""
    return int(np.random.SeedSequence([seed, epoch, 0xC57]).generate_state(1)[0])
