"""A mistyped bucket is a mistake, not a new bucket: through the real `movierec` and a real S3
server (SeaweedFS), a reading command names the bucket in one line and creates nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.core.store import S3Store, StoreError

pytestmark = pytest.mark.integration


def test_reading_commands_refuse_a_bucket_that_does_not_exist(s3_env, tmp_path):
    movierec = str(Path(sys.executable).with_name("movierec"))
    for args in (["rollout", "status"], ["models"]):
        done = subprocess.run([movierec, *args, "--store", f"s3://{s3_env}/prod"], cwd=tmp_path,
                              env=dict(os.environ, MOVIEREC_LOG_LEVEL="WARNING"), capture_output=True,
                              text=True, timeout=120)
        assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.strip().splitlines() == [f"movierec: bucket {s3_env!r} does not exist at "
                                                    f"{os.environ['AWS_ENDPOINT_URL']}"], done.stderr
    with pytest.raises(StoreError, match="does not exist"):  # the commands above created nothing
        S3Store(s3_env, create_bucket=False)
