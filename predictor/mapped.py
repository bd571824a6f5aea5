"""Load a model version without copying its arrays: memory-map the store's files in place.

`FactorModel.load` reads every file into memory and decodes the arrays out of it, so a process
holds a private copy of each model (and, briefly, two). At the course scale (1M users x 64
float32 factors = 256 MB per version, two versions, several workers) that multiplies quickly.
When the store is a local directory the predictor instead maps each array's `.npy` file
(`np.load(mmap_mode="r")`, the standard format: no parsing of our own). All worker processes
then share one copy of the pages through the page cache.

The checksum is still verified on every load: each file is opened once and hashed through that
descriptor, then mapped; the inode is compared before and after, so what was verified is what is
served even if a file were replaced meanwhile (versions are written once; the store replaces
files by rename, never in place). Other stores (S3) fall back to `FactorModel.load`.

On a cluster, KServe's storage initializer may have pre-fetched one version into `--model_dir`
(`/mnt/models`, the version folder): `PrefetchedVersion` reads that folder as a store holding
that one version, so it is verified and mapped like any other, and a new pod serves it without
reading S3.
"""

from __future__ import annotations

import hashlib
import mmap
import os

import numpy as np

from components.core import layout
from components.core.model_artifact import (
    ArtifactError,
    FactorModel,
    ModelCard,
    VersionFolder,
    needed_files,
    parse_checksums,
    read_checksums_bytes,
)
from components.core.store import ArtifactStore, LocalStore

_CHUNK = 8 << 20


def load_model(store: ArtifactStore, version: str, *, mmap_arrays: bool = True) -> tuple[FactorModel, ModelCard]:
    """Load and verify `version`: memory-mapped from a local store, fully read otherwise."""
    if mmap_arrays and isinstance(store, LocalStore):
        return load_mapped(store, version)
    return FactorModel.load(store, version)


def load_mapped(store: LocalStore, version: str, seen=None) -> tuple[FactorModel, ModelCard]:
    """Verify the checksums of `version` and map its arrays read-only; raise ArtifactError."""
    expected = parse_checksums(read_checksums_bytes(store, version), version)
    arrays: dict[str, np.ndarray] = {}
    card_bytes = b""
    for name in needed_files(seen):
        path = store.local_path(layout.model_key(version, name))
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise ArtifactError(f"model {version}: missing {name}") from None
        try:
            st = os.fstat(fd)
            digest = _sha256_fd(fd, st.st_size)
            if digest != expected.get(name):
                raise ArtifactError(f"model {version}: checksum mismatch for {name}: the artifact is corrupt")
            if name == layout.MODEL_CARD:
                card_bytes = os.pread(fd, st.st_size, 0)
                continue
            try:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
            except Exception as exc:
                raise ArtifactError(f"model {version}: unreadable {name}: {exc}") from exc
            if os.stat(path).st_ino != st.st_ino:
                raise ArtifactError(f"model {version}: {name} was replaced while loading")
        finally:
            os.close(fd)
        # An unaligned array would make numpy skip BLAS: pay a private copy instead of a slow mat-vec.
        arrays[layout.array_name(name)] = arr if arr.flags.aligned else np.array(arr)
    try:
        return FactorModel.from_arrays(arrays, seen), ModelCard.from_json(card_bytes)
    except ArtifactError:
        raise
    except Exception as exc:
        raise ArtifactError(f"model {version}: unreadable model artifact: {exc}") from exc


def _sha256_fd(fd: int, size: int) -> str:
    h = hashlib.sha256()
    if size == 0:
        return h.hexdigest()
    with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mm:
        view = memoryview(mm)
        try:
            for start in range(0, size, _CHUNK):
                h.update(view[start:start + _CHUNK])
        finally:
            view.release()
        # The verification pass touched every page; tell the kernel this process need not keep them.
        mm.madvise(mmap.MADV_DONTNEED) if hasattr(mmap, "MADV_DONTNEED") else None
    return h.hexdigest()


class PrefetchedVersion(VersionFolder):
    """A version folder on local disk (KServe's `/mnt/models`), read as a store holding only that version."""

    def __init__(self, directory: str | os.PathLike):
        super().__init__(directory)
        self._version = VersionFolder.version.fget(self)  # read once: raises ArtifactError for a non-folder

    @property
    def version(self) -> str:
        return self._version
