"""Pieces shared by the methods, written once: schedules, parameter rules, pseudo-label diagnostics.

* `epoch0_ramp`, `active_from`: the reference's loss schedules (notes §2.4);
* `prototypes_due`: the prototype refresh schedule of HST, SARB and DSRB (notes §8.4, §9.2);
* `clip_unit`, `check_choices`: parameter projection and config checks;
* `pseudo_label_diagnostics`: precision / recall of pseudo positives against the hidden full
  labels, the `Method.diagnostics` of every pseudo-labelling method;
* `cooccurrence_for_labels`: the co-occurrence S used by SST's and HST's intra-image transfer.
"""

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from mlrpl_jax.methods import base
from mlrpl_jax.ops import pseudo_labels as pl


def epoch0_ramp(clock: base.Clock) -> jax.Array:
    """w(e): the fraction of epoch 0 done during epoch 0, then 1 (the reference's ramp of the
    contrastive and co-occurrence terms, notes §2.4)."""
    return jnp.where(clock.epoch == 0, clock.epoch_fraction, 1.0)


def active_from(clock: base.Clock, epoch: int) -> jax.Array:
    """() bool: whether the step is in `epoch` or later (a traced gate: no retrace when it flips)."""
    return clock.epoch >= epoch


def prototypes_due(epoch: int, start: int, every: int, recompute: bool) -> bool:
    """Whether prototypes are (re)computed before `epoch`: at `start`, then every `every` epochs
    if `recompute` (HST, SARB, DSRB: epochs 5, 10, 15)."""
    return epoch == start or (epoch > start and recompute and (epoch - start) % every == 0)


def clip_unit(x: jax.Array) -> jax.Array:
    """Projection onto [0, 1] (SARB/DSRB's alpha and beta, `base.ParamGroup.project`)."""
    return jnp.clip(x, 0.0, 1.0)


def check_choices(mc: ml_collections.ConfigDict, choices: Mapping[str, Sequence]) -> None:
    """Raises a ValueError naming `config.method_config.<key>`, its value and the allowed ones."""
    for key, allowed in choices.items():
        if key in mc and mc[key] not in allowed:
            raise ValueError(
                f"config.method_config.{key}={mc[key]!r}: must be one of {tuple(allowed)}."
            )


def pseudo_label_diagnostics(
    config: base.Config, diagnostics: dict, labels: jax.Array, full_labels: jax.Array
) -> dict[str, jax.Array]:
    """`Method.diagnostics` of pseudo-labelling methods.

    Args:
      diagnostics: {name: (pseudo (B, C) in {-1, 0, 1}, active () bool)}: the labels a method
        trained with (its partial labels completed with pseudo positives) and whether they were
        in use this step.
      labels: (B, C) int8 partial labels; full_labels: (B, C) {0, 1} hidden ground truth.

    Returns:
      '<name>_precision/num|den' and '<name>_recall/num|den' counts of pseudo positives among the
      unknown entries (the trainer turns them into exact ratios per log window and per epoch).
    """
    del config
    out = {}
    for name, (pseudo, active) in diagnostics.items():
        q = pl.pseudo_label_quality(pseudo, labels, full_labels)
        on = jnp.asarray(active).astype(jnp.float32)
        correct = q["pseudo_positive_correct"].astype(jnp.float32) * on
        out.update({
            f"{name}_precision/num": correct,
            f"{name}_precision/den": q["pseudo_positive"].astype(jnp.float32) * on,
            f"{name}_recall/num": correct,
            f"{name}_recall/den": q["unknown_positive"].astype(jnp.float32) * on,
        })  # fmt: skip
    return out


def cooccurrence_for_labels(source: str, params, pair_logits: jax.Array) -> jax.Array:
    """S (B, C, C) for the intra-image pseudo labels: the IST head's image-specific co-occurrence
    ('learned'), or (ablation "IST w/ stat", HST Table 4; 'statistics') the dataset statistics
    S[i, j] = P(i | j) = A[j, i], A being the known-label adjacency of the GNN (same for every
    image)."""
    if source == "statistics":
        adjacency = jax.lax.stop_gradient(params["head"]["adjacency"])
        return jnp.broadcast_to(adjacency.T, (pair_logits.shape[0],) + adjacency.shape)
    return pl.cooccurrence_matrix(pair_logits, params["head"]["adjacency"].shape[0])
