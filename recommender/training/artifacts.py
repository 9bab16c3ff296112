"""Model artifacts on disk: one directory per training run, written atomically.

A run's artifact is ``<ARTIFACT_DIR>/<algorithm>/run-<id>/`` holding the engine's
own files plus the id maps and the training matrix. It is written under a
temporary name in the same parent directory and renamed into place, so a crash
never leaves a half-written artifact under a final name.
"""

import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from django.conf import settings

from recommender.conf import rec_settings

TMP_MARK = ".tmp-"


def root():
    base = rec_settings.ARTIFACT_DIR or os.path.join(settings.MEDIA_ROOT, "recommender")
    return Path(base)


def final_path(algorithm, run_id):
    return root() / algorithm / f"run-{run_id}"


def write(algorithm, run_id, model, data, matrix):
    """Save ``model`` with the id maps and the matrix; return ``(path, size in bytes)``."""
    final = final_path(algorithm, run_id)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{final.name}{TMP_MARK}{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        model.save(tmp / "model")
        np.save(tmp / "user_ids.npy", data.user_ids)
        np.save(tmp / "item_ids.npy", data.item_ids)
        sp.save_npz(tmp / "matrix.npz", matrix.tocsr())
        if final.exists():  # a re-run of the same run id replaces its own artifact
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(final), size(final)


def size(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def load(path):
    """``(model, user_ids, item_ids, matrix)`` of an artifact directory.

    Only engine classes of ``recommender.engine`` or configured in ALGORITHMS load.
    """
    from recommender.engine import ENGINES
    from recommender.engine.base import RecommenderBase

    path = Path(path)
    configured = {ENGINES.get(spec.get("class"), spec.get("class"))
                  for spec in (rec_settings.ALGORITHMS or {}).values()}
    model = RecommenderBase.load(path / "model", allowed=configured)
    return (model, np.load(path / "user_ids.npy"), np.load(path / "item_ids.npy"),
            sp.load_npz(path / "matrix.npz").tocsr())


def remove(path):
    if path and Path(path).exists():
        shutil.rmtree(path, ignore_errors=True)


def temporaries(algorithm=None, run_id=None):
    """Temporary directories of unfinished writes (of one run when both are given)."""
    if not root().exists():
        return []
    if algorithm is not None and run_id is not None:
        return list((root() / algorithm).glob(f"run-{run_id}{TMP_MARK}*"))
    return list(root().glob(f"*/*{TMP_MARK}*"))


def run_id_of(path):
    """The run id in a temporary's name ``run-<id>.tmp-XXXX``, or None."""
    head = Path(path).name.split(TMP_MARK, 1)[0]
    return int(head[4:]) if head.startswith("run-") and head[4:].isdigit() else None


def stale_temporaries(older_than_seconds=3600, running=None):
    """Leftover temporary directories of crashed writes.

    With ``running`` (the ids of the runs in progress), a temporary of any other run is
    stale at once: its run finished or died. Otherwise, and for names without a run id,
    a temporary is stale when untouched for ``older_than_seconds``.
    """
    cutoff = time.time() - older_than_seconds
    stale = []
    for path in temporaries():
        run_id = run_id_of(path)
        if running is not None and run_id is not None:
            if run_id not in running:
                stale.append(path)
        elif path.stat().st_mtime < cutoff:
            stale.append(path)
    return stale
