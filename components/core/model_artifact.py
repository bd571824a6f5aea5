"""The model artifact: what training writes and the predictor serves. No pickle, no container format.

A model version is one folder, the same wherever it lives: `models/<version>/` in the store, a
`movierec train` output (a DVC out), a Kubeflow `Model` artifact, `/mnt/models` on a KServe pod:

    card.json           the model card: algorithm, hyper-parameters, data snapshot hash, code
                        commit, training time, offline metrics, gate decision
    <array>.npy         one standard numpy file per array (`np.save`; `np.load(mmap_mode="r")` maps it)
                          factors      global_mean, user_bias, item_bias, user_factors, item_factors
                          ids          user_ids (int64, ascending), movie_ids (unicode), popular
                          serving mask seen_indptr, seen_indices: the CSR of what each user watched
                                       or rated, excluded from their lists. Kept apart from the
                                       factors: `FactorModel.load(..., seen=csr)` re-scores a
                                       stored model's factors with another mask
    checksums.json      sha256 of every other file, written last (a folder without it is not a
                        published version), verified on every load

A version is written once and never rewritten: `save` refuses different content under a
published version. What happened to it later (deployed, promoted, rolled back) is recorded in
the rollout history (`components.core.rollout`), never in the artifact.

Every matrix-factorization model (SVD, SVD++, a popularity baseline with zero factors) reduces
to `score(u) = mu + b_u + b_i + Q @ p_u`: SVD++'s implicit term is folded into p_u at export.
Scoring one user is one matrix-vector product, a mask and an `argpartition`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from components.core import layout
from components.core.errors import UserError
from components.core.store import ArtifactStore, LocalStore

FORMAT_VERSION = 2
LEGACY_FILE = "factors.npz"  # the single-file artifact of format 1


class ArtifactError(UserError, ValueError):
    """A model artifact is missing, corrupt or inconsistent; the message says what."""


@dataclass
class ModelCard:
    """Provenance and quality of one model version (the JSON `card.json`)."""

    version: str
    algorithm: str
    params: dict[str, Any] = field(default_factory=dict)
    data_snapshot: str = ""
    code_commit: str = ""
    trained_at: str = ""
    training_seconds: float = 0.0
    n_users: int = 0
    n_movies: int = 0
    n_factors: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    tuning: dict[str, Any] = field(default_factory=dict)   # the hyper-parameter search, when one chose `params`
    pipeline_run: str = ""
    dvc_data_hash: str = ""
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str | dict) -> ModelCard:
        obj = json.loads(data) if isinstance(data, (bytes, str)) else dict(data)
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in obj.items() if k in known})


@dataclass
class FactorModel:
    """A trained recommender in serving form: biases and factors, ids, seen movies, popularity."""

    global_mean: float
    user_bias: np.ndarray      # (n_users,) float32
    item_bias: np.ndarray      # (n_movies,) float32
    user_factors: np.ndarray   # (n_users, k) float32
    item_factors: np.ndarray   # (n_movies, k) float32
    user_ids: np.ndarray       # (n_users,) int64, sorted ascending
    movie_ids: np.ndarray      # (n_movies,) unicode
    seen_indptr: np.ndarray    # (n_users + 1,) int64
    seen_indices: np.ndarray   # (nnz,) int32 movie indices each user has already watched or rated
    popular: np.ndarray        # movie indices of the list for unknown users: most popular first, or the
                               # engine's own prior order (ALS with a popularity and quality prior)

    def __post_init__(self) -> None:
        f32 = np.float32
        self.user_bias = np.ascontiguousarray(self.user_bias, dtype=f32)
        self.item_bias = np.ascontiguousarray(self.item_bias, dtype=f32)
        self.user_factors = np.ascontiguousarray(self.user_factors, dtype=f32)
        self.item_factors = np.ascontiguousarray(self.item_factors, dtype=f32)
        self.user_ids = np.ascontiguousarray(self.user_ids, dtype=np.int64)
        self.movie_ids = np.asarray(self.movie_ids, dtype=str)
        self.seen_indptr = np.ascontiguousarray(self.seen_indptr, dtype=np.int64)
        self.seen_indices = np.ascontiguousarray(self.seen_indices, dtype=np.int32)
        self.popular = np.ascontiguousarray(self.popular, dtype=np.int32)
        self.validate()
        # Ranking key of the popularity fallback: later positions get lower scores.
        self._item_bias_plus_mean = self.item_bias + np.float32(self.global_mean)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_movies(self) -> int:
        return len(self.movie_ids)

    @property
    def n_factors(self) -> int:
        return self.item_factors.shape[1]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.user_bias, self.item_bias, self.user_factors, self.item_factors,
                                      self.user_ids, self.seen_indptr, self.seen_indices, self.popular))

    def validate(self) -> None:
        n_u, n_m = len(self.user_ids), len(self.movie_ids)
        checks = [
            (self.user_bias.shape == (n_u,), "user_bias shape"),
            (self.item_bias.shape == (n_m,), "item_bias shape"),
            (self.user_factors.ndim == 2 and self.user_factors.shape[0] == n_u, "user_factors shape"),
            (self.item_factors.ndim == 2 and self.item_factors.shape[0] == n_m, "item_factors shape"),
            (self.user_factors.shape[1] == self.item_factors.shape[1], "factor dimensions differ"),
            (self.seen_indptr.shape == (n_u + 1,), "seen_indptr shape"),
            (n_u == 0 or bool(np.all(np.diff(self.user_ids) > 0)), "user_ids not strictly ascending"),
            (len(self.seen_indices) == (self.seen_indptr[-1] if n_u else 0), "seen_indices length"),
            (self.seen_indices.size == 0 or (self.seen_indices.min() >= 0 and self.seen_indices.max() < n_m),
             "seen_indices out of range"),
            (self.popular.size == 0 or (self.popular.min() >= 0 and self.popular.max() < n_m),
             "popular out of range"),
            (n_m > 0, "no movies"),
            (bool(np.isfinite(self.global_mean)), "global mean not finite"),
        ]
        for ok, what in checks:
            if not ok:
                raise ArtifactError(f"inconsistent model: {what}")
        for name in ("user_bias", "item_bias", "user_factors", "item_factors"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ArtifactError(f"inconsistent model: {name} holds NaN or inf")

    # -- scoring ---------------------------------------------------------------------------
    def user_index(self, user_id: int) -> int:
        """Row of `user_id`, or -1 if the model has never seen that user."""
        i = int(np.searchsorted(self.user_ids, user_id))
        return i if i < self.n_users and self.user_ids[i] == user_id else -1

    def movie_index(self, movie_ids) -> np.ndarray:
        """Column of each movie id (int64), -1 where the model does not know the movie."""
        wanted = np.asarray(movie_ids, dtype=str)
        order = np.argsort(self.movie_ids, kind="stable")
        ordered = self.movie_ids[order]
        pos = np.minimum(np.searchsorted(ordered, wanted), len(ordered) - 1)
        return np.where(ordered[pos] == wanted, order[pos], -1).astype(np.int64)

    def scores(self, u: int) -> np.ndarray:
        """Predicted rating of every movie for user row `u` (float32, one mat-vec)."""
        s = self.item_factors @ self.user_factors[u]
        s += self._item_bias_plus_mean
        s += self.user_bias[u]
        return s

    def seen(self, u: int) -> np.ndarray:
        return self.seen_indices[self.seen_indptr[u]:self.seen_indptr[u + 1]]

    def recommend(self, user_id: int, k: int = 20) -> tuple[list[str], bool]:
        """Top-k unseen movie ids for a user, best first, and whether the list is personalized.

        Unknown users get the cold-start list `popular` (personalized=False)."""
        u = self.user_index(user_id)
        if u < 0:
            return self.movie_ids[self.popular[:k]].tolist(), False
        return self.movie_ids[self.top_k(u, k)].tolist(), True

    def top_k(self, u: int, k: int) -> np.ndarray:
        """Indices of the k best unseen movies of user row `u`, best first."""
        s = self.scores(u)
        seen = self.seen(u)
        s[seen] = -np.inf
        k = min(k, self.n_movies - len(seen))
        if k <= 0:
            return np.empty(0, dtype=np.int64)
        top = np.argpartition(-s, k - 1)[:k] if k < len(s) else np.arange(len(s))
        return top[np.argsort(-s[top], kind="stable")]

    def with_seen(self, seen) -> FactorModel:
        """The same model masking another users x movies matrix of seen movies (scipy CSR, same ids)."""
        seen = seen.tocsr()
        if seen.shape != (self.n_users, self.n_movies):
            raise ArtifactError(f"seen matrix {seen.shape} does not match the model ({self.n_users}, {self.n_movies})")
        seen.sort_indices()
        return FactorModel(self.global_mean, self.user_bias, self.item_bias, self.user_factors, self.item_factors,
                           self.user_ids, self.movie_ids, seen.indptr, seen.indices, self.popular)

    # -- persistence ------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """Every array of the artifact by name (`layout.MODEL_ARRAYS`)."""
        return {"global_mean": np.array([self.global_mean], dtype=np.float64),
                "user_bias": self.user_bias, "item_bias": self.item_bias,
                "user_factors": self.user_factors, "item_factors": self.item_factors,
                "user_ids": self.user_ids, "movie_ids": self.movie_ids, "popular": self.popular,
                "seen_indptr": self.seen_indptr, "seen_indices": self.seen_indices}

    def to_files(self, card: ModelCard) -> dict[str, bytes]:
        """The version folder's files: one `.npy` per array, the card, the checksums."""
        files = {}
        for name, arr in self.arrays().items():
            buf = io.BytesIO()
            np.save(buf, np.asanyarray(arr), allow_pickle=False)
            files[layout.array_file(name)] = buf.getvalue()
        card.n_users, card.n_movies, card.n_factors = self.n_users, self.n_movies, self.n_factors
        card.format_version = FORMAT_VERSION
        files[layout.MODEL_CARD] = card.to_json()
        files[layout.CHECKSUMS] = json.dumps({n: _sha256(b) for n, b in sorted(files.items())}, indent=2).encode()
        return files

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], seen=None) -> FactorModel:
        """A model from its named arrays (loaded or memory-mapped); `seen` (a users x movies CSR)
        replaces the stored serving mask, whose arrays are then not needed."""
        model = cls(global_mean=float(arrays["global_mean"][0]), user_bias=arrays["user_bias"],
                    item_bias=arrays["item_bias"], user_factors=arrays["user_factors"],
                    item_factors=arrays["item_factors"], user_ids=arrays["user_ids"],
                    movie_ids=arrays["movie_ids"],
                    seen_indptr=arrays["seen_indptr"] if seen is None else np.zeros(len(arrays["user_ids"]) + 1),
                    seen_indices=arrays["seen_indices"] if seen is None else np.empty(0),
                    popular=arrays["popular"])
        return model if seen is None else model.with_seen(seen)

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], seen=None) -> tuple[FactorModel, ModelCard]:
        """A model from its folder's files (checksums verified); see `from_arrays` for `seen`."""
        expected = parse_checksums(files.get(layout.CHECKSUMS))
        wanted = needed_files(seen)
        for name in wanted:
            if name not in files:
                raise ArtifactError(f"missing {name}")
            if expected.get(name) != _sha256(files[name]):
                raise ArtifactError(f"checksum mismatch for {name}: the artifact is corrupt")
        try:
            arrays = {layout.array_name(n): np.load(io.BytesIO(files[n]), allow_pickle=False)
                      for n in wanted if n != layout.MODEL_CARD}
            return cls.from_arrays(arrays, seen), ModelCard.from_json(files[layout.MODEL_CARD])
        except ArtifactError:
            raise
        except Exception as exc:
            raise ArtifactError(f"unreadable model artifact: {exc}") from exc

    def save(self, store: ArtifactStore, card: ModelCard) -> str:
        """Write this model as version `card.version`, once: checksums last, so a torn write never
        loads. Saving the same content again is a no-op; different content under a published
        version is refused (`ArtifactError`)."""
        files = self.to_files(card)
        checksums_key = layout.model_key(card.version, layout.CHECKSUMS)
        if store.exists(checksums_key):
            if store.get_bytes(checksums_key) == files[layout.CHECKSUMS]:
                return card.version
            raise ArtifactError(f"model {card.version} is already published with other content: a version is "
                                "written once; train a new version instead")
        for name, data in files.items():
            if name != layout.CHECKSUMS:
                store.put_bytes(layout.model_key(card.version, name), data)
        store.put_bytes(checksums_key, files[layout.CHECKSUMS])
        return card.version

    @classmethod
    def load(cls, store: ArtifactStore, version: str, seen=None) -> tuple[FactorModel, ModelCard]:
        """Read and verify a model version; raise ArtifactError if it is missing, old or corrupt.

        `seen` (a users x movies CSR in the model's id order) replaces the stored serving mask."""
        files = {layout.CHECKSUMS: read_checksums_bytes(store, version)}
        parse_checksums(files[layout.CHECKSUMS], version)
        for name in needed_files(seen):
            try:
                files[name] = store.get_bytes(layout.model_key(version, name))
            except KeyError:
                raise ArtifactError(f"model {version}: missing {name}") from None
        return cls.from_files(files, seen)

    def save_dir(self, directory: str | os.PathLike, card: ModelCard) -> Path:
        """Write this model as a version folder at `directory` (what `load_dir` and the store hold)."""
        self.save(VersionFolder(directory), card)
        return Path(directory)

    @classmethod
    def load_dir(cls, directory: str | os.PathLike, seen=None) -> tuple[FactorModel, ModelCard]:
        """Read and verify the version folder at `directory`."""
        folder = VersionFolder(directory)
        return cls.load(folder, folder.version, seen)


class VersionFolder(LocalStore):
    """A version folder outside a store (a training output, a Kubeflow artifact, `/mnt/models`),
    read and written as a store holding that one version: every `models/<v>/<file>` key is
    `<directory>/<file>`."""

    def _path(self, key: str) -> Path:
        return self.root / key.rsplit("/", 1)[-1]

    @property
    def version(self) -> str:
        try:
            return ModelCard.from_json((self.root / layout.MODEL_CARD).read_bytes()).version
        except (OSError, ValueError, TypeError) as exc:
            raise ArtifactError(f"{self.root}: not a model version folder ({exc})") from exc


def needed_files(seen=None) -> tuple[str, ...]:
    """The files a load reads: all of them, or all but the serving mask when another one is given."""
    return layout.MODEL_FILES if seen is None else layout.MODEL_FILES_WITHOUT_MASK


def read_checksums_bytes(store: ArtifactStore, version: str) -> bytes:
    try:
        return store.get_bytes(layout.model_key(version, layout.CHECKSUMS))
    except KeyError:
        raise ArtifactError(f"model {version}: missing {layout.CHECKSUMS} (not published, or not completely)") \
            from None


def parse_checksums(data: bytes | None, version: str = "") -> dict[str, str]:
    """The checksum manifest; an `ArtifactError` for an unreadable one or an artifact of format 1."""
    where = f"model {version}: " if version else ""
    if data is None:
        raise ArtifactError(f"{where}missing {layout.CHECKSUMS}")
    try:
        expected = json.loads(data)
        if not isinstance(expected, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise ArtifactError(f"{where}unreadable {layout.CHECKSUMS}: {exc}") from exc
    if LEGACY_FILE in expected:
        raise ArtifactError(f"{where}written in the old single-file format ({LEGACY_FILE}), which this version "
                            "cannot read: re-publish it (`movierec train`, then `movierec publish --model DIR`, "
                            "or run the training pipeline) and deploy the new version")
    return expected


def load_array(store: ArtifactStore, version: str, name: str) -> np.ndarray:
    """One array of a published version (checksum verified), without loading the others."""
    expected = parse_checksums(read_checksums_bytes(store, version), version)
    file = layout.array_file(name)
    try:
        data = store.get_bytes(layout.model_key(version, file))
    except KeyError:
        raise ArtifactError(f"model {version}: missing {file}") from None
    if expected.get(file) != _sha256(data):
        raise ArtifactError(f"model {version}: checksum mismatch for {file}: the artifact is corrupt")
    return np.load(io.BytesIO(data), allow_pickle=False)


def load_card(store: ArtifactStore, version: str) -> ModelCard:
    return ModelCard.from_json(store.get_bytes(layout.model_key(version, layout.MODEL_CARD)))


def list_versions(store: ArtifactStore) -> list[str]:
    """Published versions (those whose checksums file exists), oldest first by name; one listing."""
    return sorted(v for v in map(layout.published_version, store.list(layout.models_prefix())) if v)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
