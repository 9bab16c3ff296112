"""The deep models side by side: the two-tower model and the sequence model (GRU4Rec-style).

Two measurements:

``refresh``: what a refresh task of the app does with a saved deep model. It trains the
engine once on the whole dataset (timestamps, item content), saves it, then in a fresh
interpreter loads it and times the engine calls of one chunk of users:
``recommend_batch`` (n = 60) for the chunk, then ``explain_many`` for each user's top 10
(``recommender/training/refresh.py`` explains each user's whole list; docs/benchmarks-engine.md
times that in the app), then ``similar_items`` for as many items.
It reports whether TensorFlow was imported by that process.

``accuracy``: the protocol of ``bench/engine/accuracy.py`` (per-user temporal split,
latest 20% held out, a validation split carved the same way from train) for the deep
engines only, with EASE as the reference peer.

``staleness``: EASE and the deep engines fitted with and without the latest 20% of each
user's training history, scored on test and, one level down, on validation (see
:func:`staleness`).

Usage::

    .venv/bin/python bench/engine/deep_models.py refresh --engine two_tower --datasets online-retail
    .venv/bin/python bench/engine/deep_models.py accuracy --engines two_tower sequence --seeds 1
    .venv/bin/python bench/engine/deep_models.py accuracy --smoke   # 300 users x 300 items, tiny models
    .venv/bin/python bench/engine/deep_models.py staleness --engines sequence --datasets online-retail
    .venv/bin/python bench/engine/deep_models.py refresh --smoke --engine sequence   # and a 50-user chunk
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from common import PeerEASE, apply_smoke, base_parser, load_dataset, temporal_split  # noqa: E402

from recommender.engine import build_engine  # noqa: E402
from recommender.engine.evaluation import latest_times, ranking_metrics, split_matrix  # noqa: E402

#: ``--before``: the TwoTower similarity and explanation code before the cached unit vectors
#: (norms of all item vectors recomputed per similarity row, one row per explained item).
_BEFORE = """
import numpy as np
from recommender.engine.base import RecommenderBase
from recommender.engine.deep import TwoTower
def _similarity_row(self, item_index):
    V = self.item_vectors_
    norms = np.linalg.norm(V, axis=1)
    norms[norms == 0] = 1.0
    return (V @ V[item_index]) / (norms * norms[item_index])
TwoTower._similarity_row = _similarity_row
TwoTower._explain_matrix = RecommenderBase._explain_matrix
TwoTower._explain_contributions = RecommenderBase._explain_contributions
"""

_CHUNK_CODE = """
import sys, time, json
import numpy as np, scipy.sparse as sp
from recommender.engine.base import RecommenderBase
path, users, n_users = sys.argv[1], int(sys.argv[2]), None
t0 = time.perf_counter()
model = RecommenderBase.load(path)
X = sp.load_npz(path + "/matrix.npz").tocsr()
load = time.perf_counter() - t0
users = np.arange(min(users, X.shape[0]))
t0 = time.perf_counter()
idx, scores = model.recommend_batch(users, X[users], n=60)
t_rec = time.perf_counter() - t0
t0 = time.perf_counter()
for row, u in enumerate(users):
    top = [int(i) for i in idx[row][:10] if i >= 0]
    if top:
        model.explain_many(int(u), X[int(u)], top, n=1)
t_explain = time.perf_counter() - t0
t0 = time.perf_counter()
for item in range(min(len(users), model.n_items_)):
    model.similar_items(item, n=50)
t_similar = time.perf_counter() - t0
print(json.dumps({"load_s": load, "recommend_batch_s": t_rec, "explain_s": t_explain,
                  "similar_items_s": t_similar, "users": len(users),
                  "tensorflow_imported": "tensorflow" in sys.modules}))
"""


#: ``refresh --smoke``: users in the timed chunk.
SMOKE_REFRESH_USERS = 50


def refresh(args):
    for name in args.datasets:
        u, i, ts, n_items, features = load_dataset(name, args)
        shape = (int(u.max()) + 1, n_items)
        X = sp.csr_matrix((np.ones(len(u), np.float32), (u, i)), shape=shape)
        T = sp.csr_matrix((ts, (u, i)), shape=shape)
        X.sort_indices()
        T.sort_indices()
        params = dict(args.deep_params)
        start = time.perf_counter()
        model = build_engine(args.engine, **params).fit(X, item_features=features, timestamps=T)
        fit_s = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            model.save(tmp)
            sp.save_npz(Path(tmp) / "matrix.npz", X)
            for code in ([_BEFORE, ""] if args.before else [""]):
                out = subprocess.run([sys.executable, "-c", code + _CHUNK_CODE, tmp, str(args.users)],
                                     capture_output=True, text=True, cwd=HERE.parents[1], check=True)
                result = json.loads(out.stdout.strip().splitlines()[-1])
                result |= {"dataset": name, "engine": args.engine, "code": "before" if code else "now",
                           "fit_s": fit_s, "epochs": getattr(model, "epochs_trained_", None)}
                print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}),
                      flush=True)


def _ndcg(model, train, test, k, rows=None, **fit_kwargs):
    start = time.perf_counter()
    model.fit(train, **fit_kwargs)
    fit_s = time.perf_counter() - start
    if fit_kwargs.get("timestamps") is not None:
        model.replay_at(latest_times(fit_kwargs["timestamps"]))  # each user as of their latest fitted event
    users = np.flatnonzero(test.getnnz(axis=1) > 0)
    rows = train if rows is None else rows
    recs, _ = model.recommend_batch(users, rows[users], n=k)
    metrics = ranking_metrics(recs, test[users], k, train.getnnz(axis=0), train.shape[0])
    kept = None  # the sequence model's trend check: whether it kept the trend term
    if getattr(model, "trend_check_", None) is not None:
        kept = model.trend_gain_ is not None
    return metrics["ndcg"], fit_s, getattr(model, "epochs_trained_", None), kept


def splits_and_peer(name, args):
    """The protocol's data for one dataset: ``(features, train, test, T, fit_tr, val, T_tr,
    peer, peer_validation)``, the peer being numpy EASE with lambda chosen on validation."""
    u, i, ts, n_items, features = load_dataset(name, args)
    train, test, T = temporal_split(u, i, ts, n_items)
    fit_tr, val = split_matrix(train, 0.2, timestamps=T)
    T_tr = T.multiply(fit_tr > 0).tocsr()
    T_tr.sort_indices()
    lam_grid = [100.0, 200.0, 300.0, 500.0]
    if args.smoke:  # the first point of the grid
        lam_grid = lam_grid[:1]
    val_ease = {lam: _ndcg_peer(lam, fit_tr, val, args.k) for lam in lam_grid}
    lam = max(val_ease, key=val_ease.get)
    peer = _ndcg_peer(lam, train, test, args.k)
    print(f"== {name}: peer EASE lambda={lam} validation {val_ease[lam]:.4f} test {peer:.4f}", flush=True)
    return features, train, test, T, fit_tr, val, T_tr, peer, val_ease[lam]


def accuracy(args):
    results = []
    for name in args.datasets:
        features, train, test, T, fit_tr, val, T_tr, peer, peer_val = splits_and_peer(name, args)
        for engine in args.engines:
            params = dict(args.deep_params) if engine == "two_tower" else dict(args.seq_params)
            vals = [_ndcg(build_engine(engine, **(params | ({"random_state": s} if s else {}))), fit_tr, val,
                          args.k, item_features=features, timestamps=T_tr) for s in range(args.validation_seeds)]
            v, v_ep = float(np.mean([x[0] for x in vals])), [x[2] for x in vals]
            tests = [_ndcg(build_engine(engine, **(params | {"random_state": s})), train, test, args.k,
                           item_features=features, timestamps=T) for s in range(args.seeds)]
            nd = np.array([t[0] for t in tests])
            row = {"dataset": name, "engine": engine, "params": params, "validation_ndcg": round(v, 4),
                   "validation_ndcg_std": round(float(np.std([x[0] for x in vals])), 4),
                   "validation_epochs": v_ep,
                   "validation_trend_kept": [x[3] for x in vals], "test_ndcg_mean": round(float(nd.mean()), 4),
                   "test_ndcg_std": round(float(nd.std()), 4), "vs_peer": round(float(nd.mean() / peer), 3),
                   "fit_s": round(float(np.mean([t[1] for t in tests])), 1),
                   "epochs": [t[2] for t in tests], "trend_kept": [t[3] for t in tests],
                   "peer_ease_test": round(peer, 4),
                   "peer_ease_validation": round(peer_val, 4)}
            results.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def staleness(args):
    """Each engine fitted without the latest 20% of each user's training history (as the
    validation protocol carves it), scored on the same held-out interactions from the
    users' full histories, beside the engine fitted on all of them: on test (fits on
    ``train`` and on ``fit_tr``) and on validation (fits on ``fit_tr`` and on its own
    training part)."""
    for name in args.datasets:
        features, train, test, T, fit_tr, val, T_tr, _peer, _peer_val = splits_and_peer(name, args)
        fit_tr2, _val2 = split_matrix(fit_tr, 0.2, timestamps=T_tr)
        T_tr2 = T_tr.multiply(fit_tr2 > 0).tocsr()
        T_tr2.sort_indices()
        for engine in ("ease", *args.engines):
            params = dict(args.deep_params) if engine == "two_tower" else dict(args.seq_params)
            if engine == "ease":
                params = {}
            row = {"dataset": name, "engine": engine, "params": params}
            for split, (fresh, stale, rows, target) in {
                    "test": ((train, T), (fit_tr, T_tr), train, test),
                    "validation": ((fit_tr, T_tr), (fit_tr2, T_tr2), fit_tr, val)}.items():
                for label, (X, TX) in (("all", fresh), ("without_latest_20pct", stale)):
                    kwargs = {} if engine == "ease" else {"item_features": features, "timestamps": TX}
                    score, *_rest = _ndcg(build_engine(engine, **params), X, target, args.k, rows=rows,
                                               **kwargs)
                    row[f"{split}_{label}"] = round(score, 4)
            print(json.dumps(row), flush=True)


def _ndcg_peer(lam, train, test, k):
    users = np.flatnonzero(test.getnnz(axis=1) > 0)
    peer = PeerEASE(lam)
    peer.fit(train)
    recs = peer.recommend_batch(users, train[users], k)
    return ranking_metrics(recs, test[users], k, train.getnnz(axis=0), train.shape[0])["ndcg"]


def main(argv=None):
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["refresh", "accuracy", "staleness"])
    parser.add_argument("--engine", default="two_tower", help="refresh: the engine to time")
    parser.add_argument("--engines", nargs="+", default=["two_tower", "sequence"],
                        help="accuracy: the engines to compare")
    parser.add_argument("--users", type=int, help="refresh: users in the chunk (default 2000; 50 with --smoke)")
    parser.add_argument("--before", action="store_true",
                        help="refresh: also time the similarity/explanation code the TwoTower had before")
    parser.add_argument("--validation-seeds", type=int, default=1,
                        help="accuracy: seeds of the validation fit (the mean is reported; default 1: seed 0)")
    parser.add_argument("--seq-params", type=json.loads, default={},
                        help="JSON dict of SequenceModel parameters")
    args = parser.parse_args(argv)
    given_deep = dict(args.deep_params)
    args = apply_smoke(args)
    if args.users is None:
        args.users = SMOKE_REFRESH_USERS if args.smoke else 2000
    if args.smoke and args.mode == "refresh" and args.engine == "sequence":
        # refresh builds its engine from --deep-params: the tiny SequenceModel, not the tiny TwoTower
        args.deep_params = args.seq_params | given_deep
    {"refresh": refresh, "accuracy": accuracy, "staleness": staleness}[args.mode](args)


if __name__ == "__main__":
    main()
