"""The project's hyper-parameters and data filters: `params.yaml`, checked against one schema.

`params.yaml` at the project root is what DVC tracks and what a person edits. The schema below
holds every key with its type, its allowed range and its default (the same values as the file),
so a pipeline step running where the file is absent (a container, `kfp.local` in another
directory) still gets a complete, known configuration. Params are validated before any work
starts (loading the file, compiling the pipeline, and again in each step): an unknown key, a
value out of range or an unknown algorithm is a `UserError` naming the key and what it accepts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from components.core.errors import NotFound, UserError

PARAMS_ENV = "MOVIEREC_PARAMS"
PARAMS_FILE = "params.yaml"

LIST_METRICS = ("precision", "recall", "ndcg", "hit_rate")  # per-user list metrics, @k; higher is better
Algorithm = Literal["svd", "svdpp", "als", "bpr", "popularity", "random"]
ALGORITHMS: tuple[str, ...] = Algorithm.__args__
Split = Literal["time", "user_recent"]
SPLITS: tuple[str, ...] = Split.__args__


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class Preprocess(Section):
    min_user_movies: int = Field(1, ge=0)
    min_movie_users: int = Field(2, ge=0)
    min_watch_minutes: int = Field(1, ge=1)
    split: Split = "time"
    valid_days: float | None = Field(None, ge=0)
    valid_fraction: float = Field(0.2, ge=0, lt=1)
    valid_max_users: int | None = Field(None, ge=1)
    seed: int = 0


class Surprise(Section):
    n_factors: int = Field(100, ge=1, le=10_000)
    n_epochs: int = Field(20, ge=1, le=10_000)
    lr_all: float = Field(0.005, gt=0, le=1)
    reg_all: float = Field(0.02, ge=0)
    init_std_dev: float = Field(0.1, ge=0)
    random_state: int | None = 0


ImplicitSet = Literal["rated", "rated_or_watched"]


class SurpriseSVDpp(Surprise):
    n_factors: int = Field(20, ge=1, le=10_000)
    lr_all: float = Field(0.007, gt=0, le=1)
    cache_ratings: bool = True
    implicit_set: ImplicitSet = "rated"     # N(u): the movies u rated (Surprise), or rated or watched
    sgd: Literal["per_user", "surprise"] = "per_user"   # y_j updated once per user (linear), or Surprise's fit


class ImplicitALS(Section):
    """implicit's ALS on watches and good ratings (components/training/implicit_models.py)."""
    factors: int = Field(32, ge=1, le=10_000)
    regularization: float = Field(200.0, ge=0)
    alpha: float = Field(80.0, ge=0)          # confidence c = 1 + alpha * (share watched + rating_weight * good rating)
    rating_weight: float = Field(1.5, ge=0)
    popularity_weight: float = Field(0.8, ge=0)   # item bias = weight * standardized log popularity
    quality_weight: float = Field(0.15, ge=0)     # ... + weight * standardized quality (share watched, rating)
    quality_shrinkage: float = Field(5.0, ge=0)   # pseudo-users at the mean in each movie's quality
    iterations: int = Field(18, ge=1, le=10_000)
    threads: int = Field(0, ge=0)             # 0: every core
    random_state: int | None = 0


class ImplicitBPR(Section):
    """implicit's BPR on every watched or rated movie."""
    factors: int = Field(64, ge=1, le=10_000)
    learning_rate: float = Field(0.05, gt=0, le=10)
    regularization: float = Field(0.01, ge=0)
    iterations: int = Field(100, ge=1, le=100_000)
    threads: int = Field(0, ge=0)
    random_state: int | None = 0


class Popularity(Section):
    pass


class RandomModel(Section):
    n_factors: int = Field(8, ge=1, le=10_000)
    seed: int = 0


class Tune(Section):
    """The hyper-parameter search of components/training/tune.py: `fixed` trains with the values
    above (fast); `search` tunes each algorithm on an earlier time fold first (scheduled runs)."""
    mode: Literal["fixed", "search"] = "fixed"
    n_trials: int = Field(20, ge=1, le=10_000)
    timeout_seconds: float = Field(120.0, gt=0)
    fold_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = 0


class Train(Section):
    algorithms: list[Algorithm] = Field(default_factory=lambda: ["svd", "svdpp", "als"], min_length=1)
    svd: Surprise = Field(default_factory=Surprise)
    svdpp: SurpriseSVDpp = Field(default_factory=SurpriseSVDpp)
    als: ImplicitALS = Field(default_factory=ImplicitALS)
    bpr: ImplicitBPR = Field(default_factory=ImplicitBPR)
    popularity: Popularity = Field(default_factory=Popularity)
    random: RandomModel = Field(default_factory=RandomModel)
    tune: Tune = Field(default_factory=Tune)


class Evaluate(Section):
    k: int = Field(20, ge=1, le=1000)
    primary_metric: str = "ndcg@20"
    gate_margin: float = Field(0.01, ge=0, le=1)
    gate_confidence: float = Field(0.95, ge=0.5, lt=1)
    gate_resamples: int = Field(1000, ge=100, le=100_000)
    gate_seed: int = 0
    refit: bool = True
    relevant_min_rating: int = Field(4, ge=1, le=5)
    relevant_watch: Literal["completed", "any"] = "completed"
    completed_share: float = Field(0.5, gt=0, le=1)
    light_max_history: int | None = Field(None, ge=0)
    canary_percent: float = Field(10.0, gt=0, le=100)

    @model_validator(mode="after")
    def _primary_metric_is_a_list_metric_at_k(self) -> Evaluate:
        known = [f"{m}@{self.k}" for m in LIST_METRICS]
        if self.primary_metric not in known:
            raise ValueError(f"primary_metric {self.primary_metric!r} is not one of {', '.join(known)}")
        return self


class Params(Section):
    preprocess: Preprocess = Field(default_factory=Preprocess)
    train: Train = Field(default_factory=Train)
    evaluate: Evaluate = Field(default_factory=Evaluate)


DEFAULTS: dict[str, Any] = Params().model_dump()


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: Any = Params
    for key in loc:
        field = model.model_fields.get(key) if isinstance(key, str) else None
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return model


def _allowed_range(loc: tuple) -> str:
    parent = _model_at(loc[:-1])
    field = parent.model_fields.get(loc[-1]) if parent and loc else None
    bounds = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    parts = [f"{op} {getattr(m, name)}" for m in (field.metadata if field else [])
             for name, op in bounds.items() if getattr(m, name, None) is not None]
    return " and ".join(parts)


# Keys that were renamed: the new name and why, for anyone whose params file still has the old one.
RENAMED = {
    "preprocess.min_user_ratings": "preprocess.min_user_movies (it counts the movies a user rated or watched, "
                                   "not only ratings)",
    "preprocess.min_movie_ratings": "preprocess.min_movie_users (it counts the users who rated or watched a movie, "
                                    "not only ratings)",
}


def _describe(error: dict) -> str:
    loc = tuple(error["loc"])
    key = ".".join(str(part) for part in loc if isinstance(part, str)) or "params"
    if error["type"] == "extra_forbidden" and key in RENAMED:
        return f"{key} was renamed {RENAMED[key]}"
    if error["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent else "none"
        return f"unknown key {key} (allowed here: {allowed})"
    if error["type"] == "literal_error" and "algorithms" in loc:
        return f"{key}: unknown algorithm {error['input']!r} (allowed: {', '.join(ALGORITHMS)})"
    if error["type"] == "literal_error":
        parent = _model_at(loc[:-1])
        choices = parent.model_fields[loc[-1]].annotation.__args__ if parent else ()
        return f"{key}: unknown choice {error['input']!r} (allowed: {', '.join(choices)})"
    if error["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{key} = {error['input']!r} is out of range (allowed: {_allowed_range(loc)})"
    if error["type"] == "value_error":
        return f"{key}: {error['msg'].removeprefix('Value error, ')}"
    message = error["msg"]
    return f"{key}: {message[0].lower()}{message[1:]} (got {error['input']!r})"


def validate(params: dict | None, where: str = "params") -> dict[str, Any]:
    """The full params dict (defaults filled in), or a `UserError` naming each wrong key."""
    if params is not None and not isinstance(params, dict):
        raise UserError(f"{where}: expected a mapping of sections (preprocess, train, evaluate), "
                        f"got {type(params).__name__}")
    try:
        return Params.model_validate(params or {}).model_dump()
    except ValidationError as error:
        problems = "; ".join(_describe(e) for e in error.errors(include_url=False))
        raise UserError(f"{where}: {problems}") from None


def load_params(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The validated params of a file: `path`, else `$MOVIEREC_PARAMS`, else ./params.yaml if
    present, else the defaults."""
    import yaml

    candidate = path or os.environ.get(PARAMS_ENV) or (PARAMS_FILE if Path(PARAMS_FILE).exists() else None)
    if candidate is None:
        return validate(None)
    try:
        text = Path(candidate).read_text()
    except FileNotFoundError:
        raise NotFound(f"params file {candidate} does not exist (give --params PATH or set {PARAMS_ENV})") from None
    except OSError as error:
        raise UserError(f"params file {candidate}: {error.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "malformed"
        raise UserError(f"{candidate}: not valid YAML{at}: {problem}") from None
    return validate(raw, where=str(candidate))


def check_algorithms(names: list[str], where: str = "--algorithm") -> list[str]:
    """`names` if each is a known algorithm, else a `UserError` naming the first unknown one."""
    for name in names:
        if name not in ALGORITHMS:
            raise UserError(f"{where}: unknown algorithm {name!r} (allowed: {', '.join(ALGORITHMS)})")
    return list(names)


def complete(params: dict | None) -> dict[str, Any]:
    """A full, validated params dict from a partial one (None means the defaults, not the file)."""
    return validate(params)


def section(params: dict | None, *path: str) -> dict[str, Any]:
    """One section of a (possibly partial) params dict, validated and completed by the defaults."""
    node: Any = complete(params)
    for key in path:
        node = node.get(key) or {}
    return dict(node)
