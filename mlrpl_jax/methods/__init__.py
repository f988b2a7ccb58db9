"""The one registry of methods: name -> `Method` (see `methods/base.py`)."""

from mlrpl_jax.errors import ConfigError
from mlrpl_jax.methods import (
    blending,
    clip_pretrain,
    curriculum,
    dualcoop,
    hst,
    imbalance,
    loss_baselines,
    plain,
    ssgrl,
    sst,
    trm_ml,
)
from mlrpl_jax.methods.base import Clock, DataInfo, Method, ParamGroup, StepOutput

__all__ = ["METHODS", "Clock", "DataInfo", "Method", "ParamGroup", "StepOutput", "get"]

METHODS: dict[str, Method] = {
    "plain": plain.METHOD,
    "ssgrl": ssgrl.METHOD,
    "sst": sst.METHOD,
    "hst": hst.METHOD,
    "hst_fb": hst.METHOD_FB,
    "sarb": blending.SARB,
    "dsrb": blending.DSRB,
    **loss_baselines.METHODS,
    "imbalance": imbalance.METHOD,
    "cl": curriculum.METHOD,
    "dualcoop": dualcoop.METHOD,
    "clip_pretrain": clip_pretrain.METHOD,
    "trm_ml": trm_ml.METHOD,
}


def get(name: str) -> Method:
    """Returns the method called `name`, or raises a ConfigError (a ValueError) listing the known
    ones."""
    if name not in METHODS:
        raise ConfigError(
            f"unknown method {name!r}; known methods: {', '.join(sorted(METHODS))} (the method "
            "of a config file that takes one is chosen as configs/FILE.py:METHOD)."
        )
    return METHODS[name]
