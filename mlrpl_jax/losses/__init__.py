"""Loss functions: pure functions of arrays, no Flax or config dependency.

Labels are {-1, 0, 1} (+1 known positive, -1 known negative, 0 unknown) everywhere; each function's
docstring states its reduction and where its focusing weights stop the gradient.
"""

from mlrpl_jax.losses.asymmetric import (
    asymmetric_loss,
    focal_loss,
    sigmoid_difference_asl,
    softmax_pair_asl,
)
from mlrpl_jax.losses.partial_bce import partial_bce
from mlrpl_jax.losses.robust import hill, large_loss, large_loss_budget, splc
from mlrpl_jax.losses.single_positive import (
    an,
    an_ls,
    bce_ls,
    epr,
    expected_positive_regularizer,
    normalized_partial_bce,
    role,
    wan,
)

__all__ = [
    "an", "an_ls", "asymmetric_loss", "bce_ls", "epr", "expected_positive_regularizer",
    "focal_loss", "hill", "large_loss", "large_loss_budget", "normalized_partial_bce",
    "partial_bce", "role", "sigmoid_difference_asl", "softmax_pair_asl", "splc", "wan",
]  # fmt: skip
