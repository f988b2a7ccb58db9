"""The imbalance-aware loss of paper 002 (Zhang, Song, Zuo, Wang; `shared/papers/002_*` §IV, eq. 8-12).

Per image, with its known ("existing") labels y in {0, 1} (N_e of them), the pseudo labels y~ of
its unknown ("non-existing") entries of which a picked subset S takes part (|S| = q N_ne under the
dynamic training scheme, all of them without it) and predictions y^ = sigmoid(x):

  L_img = -p alpha [ 1/N_e sum_known y log y^        + d/|S| sum_S y~ log y^ ]
          -p beta  [ 1/N_e sum_known (1-y) log(1-y^) + d/|S| sum_S (1-y~) log(1-y^) ]     (eq. 12)

and the batch loss is the mean of L_img over the images (a sum with an empty set is 0).

Choices the paper leaves open or contradicts (each a keyword argument here, a config key of the
method; `methods/imbalance.py` says which is the method's default and why):

* **Where alpha and beta weigh** (`alpha_beta_on`). For one picked unknown entry with stored
  target t and prediction s, the eq. 12 term -alpha t log s - beta (1-t) log(1-s) splits exactly
  into

      (alpha+beta)/2 * BCE(s; t)  +  (alpha-beta)/2 * [ -t log s + (1-t) log(1-s) ]

  a self-distillation term plus a term that pushes s up whenever alpha > beta. Its minimiser has
  odds(s*) = (alpha/beta) odds(t), and eq. 5 stores s as the next target, so under the typeset
  reading every visit multiplies an unknown entry's odds by up to alpha/beta; at a
  self-consistent table (t = s) the gradient on an unknown logit is -(alpha-beta) s(1-s) p d /
  (|S| B), never 0 (`shared/reference/imbalance_readings.md` §1). The readings:
  'printed' (eq. 12 as typeset: alpha on the t log s terms, beta on the (1-t) log(1-s) terms of
  both parts); 'symmetric' (the antisymmetric term dropped: alpha = beta = (alpha+beta)/2 on the
  pseudo part, the existing part as typeset); 'existing' (alpha/beta on the existing part only,
  the pseudo part unweighted). Under 'symmetric' and 'existing' the pseudo part is a plain BCE
  towards the stored targets: its gradient vanishes at t = s, so alpha/beta do not feed back into
  the targets. With alpha = beta = 1 (`use_alpha_beta=False`) the three readings coincide.
* alpha = 1 - beta, beta = max(P / T, gamma), gamma = 0.05 (eq. 8); P and T are not defined:
  P = known positives of the batch and T (`beta_rule`) its known labels ('known', the batch's
  observed positive rate) or all its B x C entries ('all'). Under 'known' a batch whose known
  labels are all positive (PPL, SPL) gets beta = 1, alpha = 0: nothing pulls any score up, under
  every `alpha_beta_on` reading (the method refuses that combination); under 'all' beta is the
  batch's known positives per entry (the positive rate times the known proportion at PAL and
  PPL, 1/C at SPL), floored at gamma. beta = gamma when the batch has no known label.
* d (eq. 9): the printed formula d = exp((e_c + m) / e_T) ('formula', e_c the 0-based epoch, e_T
  the number of epochs, m = 3) is always > 1, while the text says the two parts are weighted
  equally at epoch e_T - m and the existing part more before it; 'prose' is
  d = exp((e_c + m - e_T) / e_T), which does that.
* p (eq. 10): the formula p = 1 + |sign(sum_i max(y^_i - 0.1, 0))| gives p = 2 when *some*
  prediction of the image exceeds 0.1, the prose p = 2 when *all* are below 0.1 ("prevent the
  model from producing all negative predictions"). 'prose' (default) follows the text; 'formula'
  the equation. p is a step function of the predictions (no gradient).
* Logs use log-sigmoid forms (no epsilon).

`imbalance_loss` and `imbalance_coefficients` check concrete labels on entry
(`checks.partial_labels`: errors.InputError outside {-1, 0, 1}); traced labels are not checked.
"""

import jax
import jax.numpy as jnp

from mlrpl_jax import checks

D_RULES = ("formula", "prose")
BETA_RULES = ("known", "all")
PENALTY_RULES = ("prose", "formula")
ALPHA_BETA_ON = ("printed", "symmetric", "existing")


def imbalance_coefficients(
    labels: jax.Array, gamma: float, rule: str = "known"
) -> tuple[jax.Array, jax.Array]:
    """(alpha, beta) of the batch: beta = max(known positives / T, gamma), T the batch's known
    labels (`rule` 'known') or all its entries ('all')."""
    checks.partial_labels(labels, where="imbalance_coefficients")
    return _coefficients(labels, gamma, rule)


def _coefficients(labels: jax.Array, gamma: float, rule: str) -> tuple[jax.Array, jax.Array]:
    """`imbalance_coefficients` without the label check."""
    if rule not in BETA_RULES:
        raise ValueError(f"beta rule must be one of {BETA_RULES}, got {rule!r}")
    known = jnp.sum((labels != 0).astype(jnp.float32)) if rule == "known" else labels.size
    positives = jnp.sum((labels > 0).astype(jnp.float32))
    beta = jnp.maximum(jnp.where(known > 0, positives / jnp.maximum(known, 1.0), 0.0), gamma)
    return 1.0 - beta, beta


def dynamic_coefficient(epoch: jax.Array, num_epochs: int, m: float, rule: str) -> jax.Array:
    """d of eq. 9 (`rule` 'formula' or 'prose', module docstring); `epoch` 0-based, traced."""
    if rule not in D_RULES:
        raise ValueError(f"d rule must be one of {D_RULES}, got {rule!r}")
    e = jnp.asarray(epoch, jnp.float32)
    shift = 0.0 if rule == "formula" else float(num_epochs)
    return jnp.exp((e + m - shift) / num_epochs)


def penalty(probabilities: jax.Array, rule: str, floor: float = 0.1) -> jax.Array:
    """p (B,) of eq. 10: 2 or 1 per image (`rule` 'prose' or 'formula', module docstring)."""
    if rule not in PENALTY_RULES:
        raise ValueError(f"penalty rule must be one of {PENALTY_RULES}, got {rule!r}")
    some_above = jnp.any(probabilities > floor, axis=-1)
    doubled = ~some_above if rule == "prose" else some_above
    return 1.0 + doubled.astype(jnp.float32)


def imbalance_loss(
    logits: jax.Array,
    labels: jax.Array,
    pseudo: jax.Array,
    picked: jax.Array,
    *,
    d: jax.Array | float,
    gamma: float = 0.05,
    beta_rule: str = "known",
    penalty_rule: str = "prose",
    use_alpha_beta: bool = True,
    use_penalty: bool = True,
    alpha_beta_on: str = "printed",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Eq. 12 (module docstring), mean over images.

    Args:
      logits: (B, C). labels: (B, C) {-1, 0, 1} partial labels (the existing part is y != 0).
      pseudo: (B, C) pseudo labels y~ in [0, 1] (used on unknown entries only; no gradient).
      picked: (B, C) bool, the unknown entries taking part this step (dynamic training scheme).
      d: the dynamic coefficient (`dynamic_coefficient`; 1 to remove it).
      gamma, beta_rule: beta's floor and its T (module docstring).
      use_alpha_beta / use_penalty: ablations (alpha = beta = 1; p = 1), paper Table VII.
      alpha_beta_on: where alpha and beta weigh: 'printed' (eq. 12 as typeset, the default of
        this function), 'symmetric' or 'existing' (module docstring).

    Returns:
      (loss, metrics) with alpha, beta, the weight of each pseudo term (`pseudo_pos_weight`,
      `pseudo_neg_weight`), the mean p and the picked fraction of unknown entries.
    """
    if alpha_beta_on not in ALPHA_BETA_ON:
        raise ValueError(f"alpha_beta_on must be one of {ALPHA_BETA_ON}, got {alpha_beta_on!r}")
    checks.partial_labels(labels, where="imbalance_loss")
    x = logits.astype(jnp.float32)
    log_p, log_not_p = jax.nn.log_sigmoid(x), jax.nn.log_sigmoid(-x)
    known = labels != 0
    y = (labels > 0).astype(jnp.float32)
    s = (picked & ~known).astype(jnp.float32)
    t = jax.lax.stop_gradient(pseudo.astype(jnp.float32))
    k = known.astype(jnp.float32)
    n_e = jnp.maximum(jnp.sum(k, axis=-1), 1.0)
    n_s = jnp.maximum(jnp.sum(s, axis=-1), 1.0)
    known_pos = jnp.sum(k * y * log_p, -1) / n_e
    known_neg = jnp.sum(k * (1 - y) * log_not_p, -1) / n_e
    pseudo_pos = d * jnp.sum(s * t * log_p, -1) / n_s
    pseudo_neg = d * jnp.sum(s * (1 - t) * log_not_p, -1) / n_s
    if use_alpha_beta:
        alpha, beta = _coefficients(labels, gamma, beta_rule)
    else:
        alpha, beta = jnp.float32(1.0), jnp.float32(1.0)
    if alpha_beta_on == "printed":  # alpha, beta on both parts (eq. 12 as typeset)
        w_pos, w_neg = alpha, beta
    elif alpha_beta_on == "symmetric":  # the antisymmetric (alpha-beta)/2 term dropped
        w_pos = w_neg = (alpha + beta) / 2.0
    else:  # 'existing': the pseudo part unweighted
        w_pos = w_neg = jnp.float32(1.0)
    p = penalty(jax.nn.sigmoid(x), penalty_rule) if use_penalty else jnp.ones(x.shape[0])
    weighted = alpha * known_pos + beta * known_neg + w_pos * pseudo_pos + w_neg * pseudo_neg
    per_image = -p * weighted
    unknown = jnp.sum((~known).astype(jnp.float32))
    metrics = {
        "alpha": alpha, "beta": beta, "penalty_mean": jnp.mean(p),
        "pseudo_pos_weight": jnp.asarray(w_pos, jnp.float32),
        "pseudo_neg_weight": jnp.asarray(w_neg, jnp.float32),
        "picked_fraction": jnp.sum(s) / jnp.maximum(unknown, 1.0),
    }  # fmt: skip
    return jnp.mean(per_image), metrics
