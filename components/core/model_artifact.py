"""The model artifact: what training writes and the predictor serves. No pickle anywhere.

A model version is four files under `models/<version>/` in the store:

    factors.npz     float32 global mean, user and movie biases, user and movie factors;
                    the seen-movie CSR (indptr, indices) used to exclude watched movies;
                    the popularity ranking used for unknown users
    ids.npz         user ids (int64) and movie ids (unicode) in factor-row order
    card.json       the model card: algorithm, hyper-parameters, data snapshot hash, code
                    commit, training time, offline metrics, gate decision
    checksums.json  sha256 of the three files above, verified on every load

Every matrix-factorization model (SVD, SVD++, a popularity baseline with zero factors) reduces
to `score(u) = mu + b_u + b_i + Q @ p_u`: SVD++'s implicit term is folded into p_u at export.
Scoring one user is one matrix-vector product, a mask and an `argpartition`.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from components.core import layout
from components.core.store import ArtifactStore

FORMAT_VERSION = 1


class ArtifactError(ValueError):
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
    popular: np.ndarray        # movie indices, most popular first

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

        Unknown users get the popularity list (personalized=False)."""
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
    def to_files(self, card: ModelCard) -> dict[str, bytes]:
        factors = _npz(global_mean=np.array([self.global_mean], dtype=np.float64),
                       user_bias=self.user_bias, item_bias=self.item_bias,
                       user_factors=self.user_factors, item_factors=self.item_factors,
                       seen_indptr=self.seen_indptr, seen_indices=self.seen_indices,
                       popular=self.popular)
        ids = _npz(user_ids=self.user_ids, movie_ids=self.movie_ids)
        card.n_users, card.n_movies, card.n_factors = self.n_users, self.n_movies, self.n_factors
        files = {"factors.npz": factors, "ids.npz": ids, "card.json": card.to_json()}
        files[layout.CHECKSUMS] = json.dumps({n: _sha256(b) for n, b in files.items()}, indent=2).encode()
        return files

    @classmethod
    def from_arrays(cls, factors, ids) -> FactorModel:
        """A model from the named arrays of `factors.npz` and `ids.npz` (loaded or memory-mapped)."""
        return cls(global_mean=float(factors["global_mean"][0]), user_bias=factors["user_bias"],
                   item_bias=factors["item_bias"], user_factors=factors["user_factors"],
                   item_factors=factors["item_factors"], user_ids=ids["user_ids"], movie_ids=ids["movie_ids"],
                   seen_indptr=factors["seen_indptr"], seen_indices=factors["seen_indices"],
                   popular=factors["popular"])

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> tuple[FactorModel, ModelCard]:
        verify_checksums(files)
        try:
            with np.load(io.BytesIO(files["factors.npz"]), allow_pickle=False) as f, \
                 np.load(io.BytesIO(files["ids.npz"]), allow_pickle=False) as i:
                model = cls.from_arrays(f, i)
            card = ModelCard.from_json(files["card.json"])
        except ArtifactError:
            raise
        except Exception as exc:
            raise ArtifactError(f"unreadable model artifact: {exc}") from exc
        return model, card

    def save(self, store: ArtifactStore, card: ModelCard) -> str:
        """Write this model as version `card.version`; checksums last, so a torn write never loads."""
        files = self.to_files(card)
        for name in (*layout.MODEL_FILES, layout.CHECKSUMS):
            store.put_bytes(layout.model_key(card.version, name), files[name])
        return card.version

    @classmethod
    def load(cls, store: ArtifactStore, version: str) -> tuple[FactorModel, ModelCard]:
        """Read and verify a model version; raise ArtifactError if it is missing or corrupt."""
        files = {}
        for name in (*layout.MODEL_FILES, layout.CHECKSUMS):
            try:
                files[name] = store.get_bytes(layout.model_key(version, name))
            except KeyError:
                raise ArtifactError(f"model {version}: missing {name}") from None
        return cls.from_files(files)


def verify_checksums(files: dict[str, bytes]) -> None:
    try:
        expected = json.loads(files[layout.CHECKSUMS])
    except Exception as exc:
        raise ArtifactError(f"unreadable {layout.CHECKSUMS}: {exc}") from exc
    for name in layout.MODEL_FILES:
        if name not in files:
            raise ArtifactError(f"missing {name}")
        if expected.get(name) != _sha256(files[name]):
            raise ArtifactError(f"checksum mismatch for {name}: the artifact is corrupt")


def load_card(store: ArtifactStore, version: str) -> ModelCard:
    return ModelCard.from_json(store.get_bytes(layout.model_key(version, "card.json")))


def list_versions(store: ArtifactStore) -> list[str]:
    """Published versions (those whose checksums file exists), oldest first by name; one listing."""
    return sorted(v for v in map(layout.published_version, store.list(layout.models_prefix())) if v)


NPZ_ALIGN = 64


def _npz(**arrays: np.ndarray) -> bytes:
    """An uncompressed `.npz` (what `np.savez` writes) whose array data start at 64-byte offsets.

    The predictor memory-maps members in place, and numpy only uses BLAS on aligned arrays:
    each member's local zip header gets a padding extra field so its `.npy` data is aligned
    (the `.npy` header itself is a multiple of 64 bytes). Any zip/npz reader still reads it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, arr in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)
            data = member.getbuffer()
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            zip64_extra = 20 if len(data) * 1.05 > zipfile.ZIP64_LIMIT else 0
            start = buf.tell() + 30 + len(info.filename.encode()) + zip64_extra
            pad = -start % NPZ_ALIGN
            if 0 < pad < 4:
                pad += NPZ_ALIGN
            if pad:  # an extra field with an unassigned id, holding zeros
                info.extra = struct.pack("<HH", 0x6D72, pad - 4) + bytes(pad - 4)
            zf.writestr(info, data)
    return buf.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
