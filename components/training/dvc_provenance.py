"""The DVC hash of the data a model was trained on, so its model card points into `dvc.lock`.

`dvc repro` runs each stage's command with `DVC_ROOT` set and rewrites `dvc.lock` after every
stage, so when the train stage starts the lock already holds the hash of the dataset directory the
preprocess stage produced (`<md5>.dir`: its key in the DVC cache and remote, `dvc pull` brings it
back). `MOVIEREC_DVC_DATA_HASH` overrides it for a runner that knows the hash itself; outside
DVC the hash is empty. The card's `data_snapshot` says which events went in; this says which
DVC-versioned files did, so provenance links the Kubeflow and the DVC worlds.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

DVC_HASH_ENV = "MOVIEREC_DVC_DATA_HASH"


def dvc_data_hash(path: str | Path) -> str:
    """The hash DVC recorded for the stage output at `path` ('' when not run under DVC)."""
    if override := os.environ.get(DVC_HASH_ENV):
        return override
    root = os.environ.get("DVC_ROOT")
    if not root:
        return ""
    try:
        lock = yaml.safe_load((Path(root) / "dvc.lock").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return ""
    target = Path(path).resolve()
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if (Path(root) / out.get("path", "")).resolve() == target:
                return str(out.get("md5") or "")
    return ""
