"""Load a model version without copying its arrays: memory-map the store's files in place.

`FactorModel.load` reads every file into memory and decodes the arrays out of it, so a process
holds a private copy of each model (and, briefly, two). At the course scale (1M users x 64
float32 factors = 256 MB per version, two versions, several workers) that multiplies quickly.
When the store is a local directory the predictor instead maps the `.npz` members straight from
disk: `np.savez` stores members uncompressed, so each array is a byte range of the file. All
worker processes then share one copy of the pages through the page cache.

The checksum is still verified on every load: the file is opened once, hashed through that
descriptor, and mapped from that same descriptor, so what was verified is what is served even if
the key is replaced meanwhile (the store replaces files by rename, never in place).
Other stores (S3) fall back to `FactorModel.load`.

On a cluster, KServe's storage initializer may have pre-fetched one version into `--model_dir`
(`/mnt/models`, the files of `models/<version>/` side by side): `PrefetchedVersion` makes that
folder look like a local store holding that one version, so it is verified and mapped like any
other, and a new pod serves it without reading S3.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import zipfile
from pathlib import Path

import numpy as np

from components.core import layout
from components.core.model_artifact import ArtifactError, FactorModel, ModelCard
from components.core.store import ArtifactStore, LocalStore

_CHUNK = 8 << 20


def load_model(store: ArtifactStore, version: str, *, mmap_arrays: bool = True) -> tuple[FactorModel, ModelCard]:
    """Load and verify `version`: memory-mapped from a local store, fully read otherwise."""
    if mmap_arrays and isinstance(store, LocalStore):
        return load_mapped(store, version)
    return FactorModel.load(store, version)


def load_mapped(store: LocalStore, version: str) -> tuple[FactorModel, ModelCard]:
    """Verify the checksums of `version` and map its arrays read-only; raise ArtifactError."""
    paths = {name: store.local_path(layout.model_key(version, name))
             for name in (*layout.MODEL_FILES, layout.CHECKSUMS)}
    try:
        expected = json.loads(paths[layout.CHECKSUMS].read_bytes())
    except FileNotFoundError:
        raise ArtifactError(f"model {version}: missing {layout.CHECKSUMS}") from None
    except ValueError as exc:
        raise ArtifactError(f"model {version}: unreadable {layout.CHECKSUMS}: {exc}") from exc
    maps: dict[str, mmap.mmap] = {}
    card_bytes = b""
    for name in layout.MODEL_FILES:
        try:
            fd = os.open(paths[name], os.O_RDONLY)
        except FileNotFoundError:
            raise ArtifactError(f"model {version}: missing {name}") from None
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                raise ArtifactError(f"model {version}: {name} is empty")
            mm = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        if _sha256(mm) != expected.get(name):
            mm.close()
            raise ArtifactError(f"model {version}: checksum mismatch for {name}: the artifact is corrupt")
        if name == "card.json":
            card_bytes = mm[:]
            mm.close()
        else:
            maps[name] = mm
    try:
        model = FactorModel.from_arrays(_npz_arrays(maps["factors.npz"]), _npz_arrays(maps["ids.npz"]))
        card = ModelCard.from_json(card_bytes)
    except ArtifactError:
        raise
    except Exception as exc:
        raise ArtifactError(f"model {version}: unreadable model artifact: {exc}") from exc
    return model, card


def _sha256(mm: mmap.mmap) -> str:
    h = hashlib.sha256()
    view = memoryview(mm)
    try:
        for start in range(0, len(mm), _CHUNK):
            h.update(view[start:start + _CHUNK])
    finally:
        view.release()
    # The verification pass touched every page; tell the kernel this process need not keep them.
    mm.madvise(mmap.MADV_DONTNEED) if hasattr(mmap, "MADV_DONTNEED") else None
    return h.hexdigest()


def _npz_arrays(mm: mmap.mmap) -> dict[str, np.ndarray]:
    """Every member of an uncompressed `.npz` as a read-only array over the mapping (no copy)."""
    arrays = {}
    with zipfile.ZipFile(_MMapFile(mm)) as zf:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                raise ArtifactError(f"{info.filename} is compressed: cannot map it")
            # Local file header: 30 fixed bytes, then the name and the extra field.
            head = mm[info.header_offset:info.header_offset + 30]
            if head[:4] != b"PK\x03\x04":
                raise ArtifactError(f"{info.filename}: bad zip local header")
            n_name = int.from_bytes(head[26:28], "little")
            n_extra = int.from_bytes(head[28:30], "little")
            start = info.header_offset + 30 + n_name + n_extra
            arrays[info.filename.removesuffix(".npy")] = _npy_view(mm, start, info.file_size)
    return arrays


def _npy_view(mm: mmap.mmap, start: int, size: int) -> np.ndarray:
    f = _MMapFile(mm, start)
    major, minor = np.lib.format.read_magic(f)
    if (major, minor) == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    if dtype.hasobject:
        raise ArtifactError("object arrays are not allowed in a model artifact")
    offset = f.tell()
    count = int(np.prod(shape)) if shape else 1
    if offset - start + count * dtype.itemsize > size:
        raise ArtifactError("array extends past its zip member")
    arr = np.ndarray(shape, dtype=dtype, buffer=mm, offset=offset, order="F" if fortran else "C")
    if not arr.flags.aligned:
        # Written before `model_artifact` aligned its members: numpy would skip BLAS on it, so
        # pay a private copy rather than a 10x slower mat-vec on every request.
        arr = arr.copy()
    return arr


class _MMapFile:
    """A minimal read-only file object over an mmap (what zipfile and numpy's header reader need)."""

    def __init__(self, mm: mmap.mmap, pos: int = 0):
        self.mm, self.pos = mm, pos

    def read(self, n: int = -1) -> bytes:
        end = len(self.mm) if n is None or n < 0 else min(self.pos + n, len(self.mm))
        data = self.mm[self.pos:end]
        self.pos = end
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else self.pos + pos if whence == 1 else len(self.mm) + pos
        return self.pos

    def tell(self) -> int:
        return self.pos

    def seekable(self) -> bool:
        return True


class PrefetchedVersion(LocalStore):
    """A folder with one version's files side by side, read as a store that holds only that version."""

    def __init__(self, directory: str | os.PathLike):
        super().__init__(directory)
        try:
            self.version = ModelCard.from_json((self.root / "card.json").read_bytes()).version
        except (OSError, ValueError, TypeError) as exc:
            raise ArtifactError(f"{directory}: not a model version folder ({exc})") from exc

    def _path(self, key: str) -> Path:
        return self.root / key.rsplit("/", 1)[-1]

