"""Class prototypes from one pass over the training set, for a method's `refresh` (HST, SARB, DSRB).

The reference recomputes prototypes at the start of scheduled epochs: `model.eval()`, one pass over
the (augmented, shuffled) training loader without gradients, the semantic features v (pre-GNN) of
every known positive (``shared/reference/hcp_mlr_pl_notes.md`` §8.4, §9.2, §10.4). Here the pass
is a jitted accumulation step per batch (fixed shapes, no loop over classes) followed by

* `kmeans_prototypes`: K centres per class (HST, SARB) from one batched K-means (`ops.kmeans`);
* `location_prototypes`: DSRB's location-sensitive prototypes per (class, quadrant)
  (`ops.blending`), as pooled (C, 4, D) vectors.
"""

import functools
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from mlrpl_jax.methods import base
from mlrpl_jax.models import ssgrl
from mlrpl_jax.ops import blending, kmeans
from mlrpl_jax.sharding import DATA_AXIS


def one_pass(model, params, batch_stats, batches: Callable[[], Iterator[dict]], update, carry):
    """Runs `update(carry, aux, positive) -> carry` over one pass of `batches()` (normalised images)
    in inference mode, with one jitted step per batch (compiled once per pass)."""

    @functools.partial(jax.jit, donate_argnums=(0,))
    def step(carry, params, batch_stats, images, labels):
        aux = base.apply_eval(model, params, batch_stats, images, method=ssgrl.SSGRL.features)
        return update(carry, aux, labels == 1)

    for batch in batches():
        carry = step(carry, params, batch_stats, batch["image"], batch["labels"])
    return carry


def _points_sharded(buffer: jax.Array) -> jax.Array:
    """The K-means buffer (C, M, D) split over the mesh's data axis along its points M (when M
    divides), so that no device holds every class's features; K-means then runs data-parallel."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or DATA_AXIS not in mesh.shape or buffer.shape[1] % mesh.shape[DATA_AXIS]:
        return buffer
    return jax.lax.with_sharding_constraint(buffer, P(None, DATA_AXIS, None))


def _kmeans_update(carry, aux, positive):
    return kmeans.accumulate_by_class(*carry, aux["category_features"], positive)


def kmeans_prototypes(
    model, params, batch_stats, batches, *, num_classes: int, feature_dim: int, num_prototypes: int,
    max_per_class: int, n_init: int, max_iters: int, seed: int,
) -> kmeans.KMeansResult:  # fmt: skip
    """K-means centres (C, K, D) of the known-positive category features of one pass.

    The first `max_per_class` known positives of each class in pass order are kept (a uniform sample
    of the shuffled pass; the reference clusters all of them), then one `kmeans.batched_kmeans`
    (k-means++, `n_init` restarts, at most `max_iters` Lloyd steps, tol 1e-4) clusters every class.
    """
    carry = (
        _points_sharded(jnp.zeros((num_classes, max_per_class, feature_dim), jnp.float32)),
        jnp.zeros((num_classes,), jnp.int32),
    )
    buffer, count = one_pass(model, params, batch_stats, batches, _kmeans_update, carry)
    buffer = _points_sharded(buffer)
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
    model, params, batch_stats, batches, *, num_classes: int, feature_dim: int, cap: int
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
    sums, counts = one_pass(model, params, batch_stats, batches, _location_update(cap), carry)
    return blending.location_prototypes(sums, counts), counts


def refresh_seed(seed: int, epoch: int) -> int:
    """The K-means seed of a refresh: a function of (config.seed, epoch) only, so resumes match."""
    return int(np.random.SeedSequence([seed, epoch, 0xC57]).generate_state(1)[0])


def kmeans_refresh(config, model, params, batch_stats, method_state, epoch, batches) -> dict:
    """`method_state` with K-means prototypes of one pass (`kmeans_prototypes`, the
    `method_config` keys num_prototypes, prototype_max_per_class, kmeans_n_init and
    kmeans_max_iters; seeded by `refresh_seed`): HST's and SARB's refresh when due."""
    mc = config.method_config
    c, _, d = method_state["prototypes"].shape
    result = kmeans_prototypes(
        model, params, batch_stats, batches, num_classes=c, feature_dim=d,
        num_prototypes=mc.num_prototypes, max_per_class=mc.prototype_max_per_class,
        n_init=mc.kmeans_n_init, max_iters=mc.kmeans_max_iters,
        seed=refresh_seed(config.seed, epoch),
    )  # fmt: skip
    return dict(method_state, prototypes=result.centroids, prototype_points=result.num_points)
