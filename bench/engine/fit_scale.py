"""Engine fit time and memory at shop scale, ours beside the `implicit` library, in one run.

    .venv/bin/python bench/engine/fit_scale.py --users 1000000 --items 100000 \
        --interactions 10000000 --algorithms itemknn implicit-cosine als implicit-als
    .venv/bin/python bench/engine/fit_scale.py --smoke      # 2,000 x 500, 20,000 non-zeros

No database: a synthetic user x item matrix is built in memory, with the item skew of
``bench/bench_scale.py`` (item = floor(u**3 * n_items), so a few items are very popular;
users uniform) and event weights 1-5. Every algorithm is fitted in its own child process
(so each peak RSS is its own) on the same matrix, saved once to a temporary .npz file.
ALS: 64 factors, 15 iterations, on 2 threads for implicit; kNN: cosine, K=100.
The implicit-* fits are skipped, with a printed reason, when implicit is not installed
(``pip install -r bench/requirements-bench.txt``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[2]
ALGORITHMS = ("itemknn", "cooccurrence", "als", "implicit-cosine", "implicit-als")


def synthetic(users: int, items: int, interactions: int, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    u = rng.integers(0, users, interactions, dtype=np.int64)
    i = np.minimum((rng.random(interactions) ** 3 * items).astype(np.int64), items - 1)
    w = rng.choice(np.array([1.0, 1.0, 1.0, 2.0, 3.0, 5.0], np.float32), interactions)
    X = sp.csr_matrix((w, (u, i)), shape=(users, items), dtype=np.float32)
    X.sum_duplicates()
    return X


def fit_one(name: str, path: str) -> dict:
    """Fit ``name`` on the matrix at ``path`` in this process; fit seconds and peak RSS."""
    X = sp.load_npz(path).tocsr()
    base_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if name.startswith("implicit-"):
        from implicit.als import AlternatingLeastSquares
        from implicit.nearest_neighbours import CosineRecommender

        model = (AlternatingLeastSquares(factors=64, iterations=15, regularization=0.05,
                                         alpha=2.0, num_threads=2, random_state=0)
                 if name == "implicit-als" else CosineRecommender(K=100, num_threads=2))
        start = time.perf_counter()
        model.fit(X, show_progress=False)
    else:
        sys.path.insert(0, str(ROOT))
        from recommender.engine import build_engine

        params = {"als": {"factors": 64, "iterations": 15}, "itemknn": {"k": 100},
                  "cooccurrence": {"k": 100}}[name]
        model = build_engine(name, **params)
        start = time.perf_counter()
        model.fit(X)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"algorithm": name, "fit_seconds": round(seconds, 2),
            "peak_mb": round(peak), "matrix_mb": round(base_mb)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--algorithms", nargs="+", choices=ALGORITHMS, default=list(ALGORITHMS))
    parser.add_argument("--repeat", type=int, default=1, help="fits per algorithm (min kept)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes that run in seconds, through the same code (what the tests run)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(fit_one(*args.child)))
        return
    if args.smoke:
        args.users, args.items, args.interactions, args.repeat = 2000, 500, 20_000, 1
    if find_spec("implicit") is None and any(a.startswith("implicit-") for a in args.algorithms):
        print("SKIPPED: the implicit-* fits: implicit is not installed "
              "(pip install -r bench/requirements-bench.txt)", flush=True)
        args.algorithms = [a for a in args.algorithms if not a.startswith("implicit-")]
    X = synthetic(args.users, args.items, args.interactions)
    print(f"matrix {X.shape[0]} x {X.shape[1]}, {X.nnz} non-zeros", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "X.npz")
        sp.save_npz(path, X, compressed=False)
        del X
        for name in args.algorithms:
            runs = []
            for _ in range(args.repeat):
                # implicit asks for one BLAS thread (it warns otherwise): its own threads
                # do the work. Set before the child starts, when OpenBLAS reads it.
                env = os.environ | ({"OPENBLAS_NUM_THREADS": "1"}
                                    if name.startswith("implicit-") else {})
                out = subprocess.run([sys.executable, __file__, "--child", name, path],
                                     check=True, capture_output=True, text=True, env=env)
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            best = min(runs, key=lambda r: r["fit_seconds"])
            best["all_seconds"] = [r["fit_seconds"] for r in runs]
            results.append(best)
            print(f"  {name:16s} fit {best['fit_seconds']:8.2f} s  peak {best['peak_mb']:6d} MB"
                  f"  (runs: {best['all_seconds']})", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"size": vars(args) | {"json": str(args.json)},
                                         "results": results}, indent=2))


if __name__ == "__main__":
    main()
