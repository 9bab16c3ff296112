"""Importing the engine must not load Django or TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_engine_import_loads_neither_django_nor_tensorflow():
    code = ("import sys, recommender.engine, recommender.engine.evaluation, "
            "recommender.engine.data, recommender.engine.deep\n"
            "from recommender.engine import TwoTower, get_engine_class\n"
            "get_engine_class('two_tower')\n"
            "bad = [m for m in ('django', 'tensorflow', 'keras', 'celery') if m in sys.modules]\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_loading_a_saved_deep_model_does_not_need_tensorflow(tmp_path):
    from recommender.engine.deep import TwoTower
    from tests.engine.conftest import make_interactions

    X, _ = make_interactions()
    TwoTower(embedding_dim=4, hidden_dim=4, epochs=1).fit(X).save(tmp_path)
    code = ("import sys, scipy.sparse as sp\n"
            "from recommender.engine.deep import TwoTower\n"
            f"m = TwoTower.load({str(tmp_path)!r})\n"
            "m.recommend(0, sp.csr_matrix((1, m.n_items_)), n=3)\n"
            "assert 'tensorflow' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
