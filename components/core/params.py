"""The project's hyper-parameters and data filters: `params.yaml` over built-in defaults.

`params.yaml` at the project root is what DVC tracks and what a person edits. The defaults
below are the same values, so a pipeline step running where the file is absent (a container,
`kfp.local` in another directory) still gets a complete, known configuration.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

PARAMS_ENV = "MOVIEREC_PARAMS"
PARAMS_FILE = "params.yaml"

DEFAULTS: dict[str, Any] = {
    "preprocess": {
        "min_user_ratings": 2,
        "min_movie_ratings": 2,
        "min_watch_minutes": 1,
        "valid_days": None,
        "valid_fraction": 0.2,
        "valid_max_users": None,
        "seed": 0,
    },
    "train": {
        "algorithms": ["svd", "svdpp"],
        "svd": {"n_factors": 100, "n_epochs": 20, "lr_all": 0.005, "reg_all": 0.02,
                "init_std_dev": 0.1, "random_state": 0},
        "svdpp": {"n_factors": 20, "n_epochs": 20, "lr_all": 0.007, "reg_all": 0.02,
                  "init_std_dev": 0.1, "random_state": 0, "cache_ratings": True},
        "popularity": {},
        "random": {"n_factors": 8, "seed": 0},
    },
    "evaluate": {"k": 20, "primary_metric": "ndcg@20", "gate_margin": 0.01, "relevant_min_rating": 4,
                 "light_max_history": None, "canary_percent": 10.0},
}


def merge(base: dict, override: dict | None) -> dict:
    """Deep-merge `override` into a copy of `base` (nested dicts merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_params(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The defaults overlaid with a params file: `path`, else `$MOVIEREC_PARAMS`, else ./params.yaml if present."""
    import yaml

    candidate = path or os.environ.get(PARAMS_ENV) or (PARAMS_FILE if Path(PARAMS_FILE).exists() else None)
    if candidate is None:
        return copy.deepcopy(DEFAULTS)
    text = Path(candidate).read_text()
    return merge(DEFAULTS, yaml.safe_load(text) or {})


def complete(params: dict | None) -> dict[str, Any]:
    """A full params dict from a partial one (None means the defaults, not the file)."""
    return merge(DEFAULTS, params)


def section(params: dict | None, *path: str) -> dict[str, Any]:
    """One section of a (possibly partial) params dict, completed by the defaults."""
    node: Any = complete(params)
    for key in path:
        node = node.get(key) or {}
    return dict(node)
