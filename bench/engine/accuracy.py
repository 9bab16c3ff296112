"""Top-N accuracy of our engines side by side with peers, in one run.

Protocol: every (user, item) pair counted once at its first time; per user, the latest 20%
held out as test (users with < 5 interactions stay in train); full ranking over the whole
catalog with each user's train items filtered; metrics @k. Hyperparameters of peers and
ours are tuned only on a validation split carved the same way from the training data.
Random models report the mean over ``--seeds`` seeds.

Usage::

    .venv/bin/python bench/engine/accuracy.py                      # both datasets
    .venv/bin/python bench/engine/accuracy.py --datasets ml-latest-small --seeds 1
    .venv/bin/python bench/engine/accuracy.py --smoke              # 300 users x 300 items per dataset
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import (  # noqa: E402
    PeerEASE,
    PeerImplicit,
    PeerPopular,
    apply_smoke,
    base_parser,
    have_implicit,
    load_dataset,
    temporal_split,
)

from recommender.engine import build_engine  # noqa: E402
from recommender.engine.data import build_interaction_matrix  # noqa: E402
from recommender.engine.evaluation import METRICS, format_table, latest_times, ranking_metrics, split_matrix  # noqa: E402

COLUMNS = ["algorithm", "ndcg", "precision", "recall", "f1", "map", "hit_rate", "coverage",
           "novelty", "fit_seconds", "params"]


def evaluate_recs(recs, test, users, train, k):
    return ranking_metrics(recs, test[users], k, train.getnnz(axis=0), train.shape[0])


def run_peer(make, train, test, k):
    users = np.flatnonzero(test.getnnz(axis=1) > 0)
    start = time.perf_counter()
    model = make().fit(train)
    fit = time.perf_counter() - start
    recs = model.recommend_batch(users, train[users], k)
    return evaluate_recs(recs, test, users, train, k) | {"fit_seconds": fit}


def run_ours(make, train, test, k, rows=None, **fit_kwargs):
    """Fit on ``train``; score with ``rows`` (recency-weighted rows) when given."""
    users = np.flatnonzero(test.getnnz(axis=1) > 0)
    start = time.perf_counter()
    model = make().fit(train, **fit_kwargs)
    fit = time.perf_counter() - start
    if fit_kwargs.get("timestamps") is not None:  # time-aware engines score each user as of their latest event
        model.replay_at(latest_times(fit_kwargs["timestamps"]))
    source = train if rows is None else rows
    recs, _ = model.recommend_batch(users, source[users], n=k)
    return evaluate_recs(recs, test, users, train, k) | {"fit_seconds": fit}, model


def mean_rows(rows):
    out = dict(rows[0])
    for key in METRICS + ("fit_seconds",):
        out[key] = float(np.mean([r[key] for r in rows]))
    out["ndcg_std"] = float(np.std([r["ndcg"] for r in rows]))
    return out


def tune(name, grid, evaluate):
    """Best params of ``grid`` by validation NDCG; returns (params, table of trials)."""
    trials = [(evaluate(p)["ndcg"], p) for p in grid]
    best = max(trials, key=lambda t: t[0])
    print(f"  tuned {name}: " + ", ".join(f"{p}={s:.4f}" for s, p in trials), flush=True)
    return best[1]


def decayed(T, half_life):
    """Binary rows re-weighted by per-user recency (the data helper's ``per_user`` decay)."""
    coo = T.tocoo()
    return build_interaction_matrix(coo.row, coo.col, None, coo.data, n_users=T.shape[0],
                                    n_items=T.shape[1], half_life_days=half_life,
                                    decay="per_user")


#: TwoTower settings tried on validation when --deep-params does not fix them; each entry
#: overrides DEEP_BASE. The wide part (``wide_neighbours``) is on throughout: with it the
#: best validation NDCG@10 is 0.1364 on MovieLens and 0.1211 on Online Retail, against
#: 0.1085 and 0.0956 with ``wide_neighbours=0`` (docs/benchmarks-engine.md, "The deep
#: model alone").
DEEP_BASE: dict = {"epochs": 60, "patience": 10, "monitor": "ndcg", "l2": 1e-3,
                   "wide_neighbours": 100}
DEEP_GRID: list = [{"sequence_aware": seq, "learning_rate": lr, "half_life_days": h}
                   for seq in (True, False) for lr in (1e-3, 3e-4) for h in (30.0, 365.0)]


def deep_scoring_rows(X, T, params):
    """Rows TwoTower scores from: recency-weighted like its training inputs, if it uses them."""
    h = params.get("half_life_days")
    return X if h is None else decayed(T, h)


def tune_deep(deep_p, grid, fit_tr, val, T_tr, features, k):
    """Pick TwoTower settings on validation (grid points override ``deep_p``)."""
    grid = [g for g in grid if not set(g) & set(deep_p)] or [{}]
    if len(grid) == 1:
        return DEEP_BASE | deep_p | grid[0]
    best = tune("two_tower", grid, lambda g: run_ours(
        lambda: build_engine("two_tower", **(DEEP_BASE | deep_p | g)), fit_tr, val, k,
        rows=deep_scoring_rows(fit_tr, T_tr, DEEP_BASE | deep_p | g),
        item_features=features, timestamps=T_tr)[0])
    return DEEP_BASE | deep_p | best


def run_dataset(name, args):
    print(f"== {name}", flush=True)
    u, i, ts, n_items, features = load_dataset(name, args)
    train, test, T = temporal_split(u, i, ts, n_items)
    # validation split carved from train, the same way (latest 20% per user)
    fit_tr, val = split_matrix(train, 0.2, timestamps=T)
    T_tr = T.multiply(fit_tr > 0).tocsr()
    T_tr.sort_indices()
    info = {"users": train.shape[0], "items": n_items, "train": int(train.nnz),
            "test": int(test.nnz), "validation": int(val.nnz)}
    print(f"  {info}", flush=True)
    k = args.k
    seeds = list(range(args.seeds))
    table = []
    only = set(args.only or ())

    def grid(values):  # --smoke: the first point of each tuning grid
        return values[:1] if args.smoke else values

    def want(group):
        return not only or group in only

    def add(algorithm, rows, params):
        row = mean_rows(rows) if isinstance(rows, list) else rows
        row |= {"algorithm": algorithm, "params": params}
        table.append(row)
        print(f"  {algorithm:28s} ndcg={row['ndcg']:.4f} fit={row['fit_seconds']:.1f}s",
              flush=True)

    # ---- peers ----------------------------------------------------------------------
    lams = grid([100.0, 200.0, 300.0, 500.0])
    if want("peers"):
        add("peer: popularity", run_peer(PeerPopular, train, test, k), "")
        if have_implicit("the implicit peers (item-kNN, ALS)"):
            knn_k = tune("implicit item-kNN K", grid([20, 50, 100, 200]),
                         lambda K: run_peer(lambda: PeerImplicit("knn", K=K), fit_tr, val, k))
            add("peer: implicit item-kNN", run_peer(lambda: PeerImplicit("knn", K=knn_k), train,
                                                    test, k), f"K={knn_k}")
            als_grid = grid([{"factors": f, "regularization": r, "alpha": a}
                             for f in (64, 128) for r in (0.01, 0.1) for a in (1.0, 10.0)])
            als_p = tune("implicit ALS", als_grid, lambda p: run_peer(
                lambda: PeerImplicit("als", random_state=0, **p), fit_tr, val, k))
            add("peer: implicit ALS", [run_peer(lambda s=s: PeerImplicit("als", random_state=s, **als_p),
                                                train, test, k) for s in seeds], str(als_p))
        lam = tune("peer EASE lambda", lams,
                   lambda v: run_peer(lambda: PeerEASE(v), fit_tr, val, k))
        add("peer: EASE (numpy)", run_peer(lambda: PeerEASE(lam), train, test, k),
            f"lambda={lam}")
    best_peer = max((r["ndcg"] for r in table), default=float("nan"))

    # ---- ours -----------------------------------------------------------------------
    tuned: dict = {}

    def ours_k():
        if "k" not in tuned:
            tuned["k"] = tune("itemknn k", grid([20, 50, 100, 200]), lambda v: run_ours(
                lambda: build_engine("itemknn", k=v), fit_tr, val, k)[0])
        return tuned["k"]

    def ease_lam():
        if "lam" not in tuned:
            tuned["lam"] = tune("EASE regularization", lams, lambda v: run_ours(
                lambda: build_engine("ease", regularization=v), fit_tr, val, k)[0])
        return tuned["lam"]

    if want("popular"):
        add("popular", run_ours(lambda: build_engine("popular"), train, test, k)[0], "")
    if want("itemknn"):
        add("itemknn", run_ours(lambda: build_engine("itemknn", k=ours_k()), train, test,
                                k)[0], f"k={ours_k()}")
    if want("cooccurrence"):
        add("cooccurrence", run_ours(lambda: build_engine("cooccurrence", k=ours_k()), train,
                                     test, k)[0], f"k={ours_k()}, jaccard")
    if want("ease"):
        add("ease", run_ours(lambda: build_engine("ease", regularization=ease_lam()), train,
                             test, k)[0], f"regularization={ease_lam()}")
    if want("als"):
        our_als = grid([{"factors": f, "regularization": r, "alpha": a}
                        for f in (64, 128) for r in (0.05, 1.0) for a in (2.0, 10.0)])
        our_als_p = tune("ALS", our_als, lambda p: run_ours(
            lambda: build_engine("als", **p), fit_tr, val, k)[0])
        add("als", [run_ours(lambda s=s: build_engine("als", random_state=s, **our_als_p), train,
                             test, k)[0] for s in seeds], str(our_als_p))
    if want("temporal_ease"):
        add("temporal_ease", run_ours(lambda: build_engine("temporal_ease",
                                                           regularization=ease_lam()),
                                      train, test, k, timestamps=T)[0],
            f"regularization={ease_lam()}")
    if want("content"):
        add("content", run_ours(lambda: build_engine("content"), train, test, k,
                                item_features=features)[0], "")
    deep_p = dict(args.deep_params)
    if want("two_tower"):
        deep_p = tune_deep(deep_p, args.deep_grid, fit_tr, val, T_tr, features, k)
        deep_rows = deep_scoring_rows(train, T, deep_p)
        add("two_tower (deep)", [run_ours(lambda s=s: build_engine("two_tower", random_state=s,
                                                               **deep_p),
                                          train, test, k, rows=deep_rows,
                                          item_features=features, timestamps=T)[0]
                                 for s in seeds],
            str(deep_p))
    if want("recency") or want("hybrid"):
        # recency of the user's rows (data helper, decay="per_user"), tuned on validation
        half_lives = grid([None, 7.0, 30.0, 90.0, 365.0])
        ease_val = build_engine("ease", regularization=ease_lam()).fit(fit_tr)
        users_val = np.flatnonzero(val.getnnz(axis=1) > 0)

        def recency_score(h):
            rows = fit_tr if h is None else decayed(T_tr, h)
            recs, _ = ease_val.recommend_batch(users_val, rows[users_val], n=k)
            return evaluate_recs(recs, val, users_val, fit_tr, k)

        half_life = tune("row recency half-life (days)", half_lives, recency_score)
        rows = train if half_life is None else decayed(T, half_life)
        if want("recency"):
            add("ease + recency rows", run_ours(lambda: build_engine("ease", regularization=ease_lam()),
                                                train, test, k, rows=rows)[0],
                f"regularization={ease_lam()}, half_life_days={half_life}")
    if want("hybrid"):
        components = [{"engine": "temporal_ease", "params": {"regularization": ease_lam()}},
                      {"engine": "ease", "params": {"regularization": ease_lam()}},
                      {"engine": "itemknn", "params": {"k": ours_k(), "binarize": True}},
                      {"engine": "content", "params": {}}]
        deep_engine = args.hybrid_deep
        if not args.no_deep_in_hybrid:
            # the sequence model with its engine defaults (what the app's default hybrid
            # blends), or the two-tower model with the settings tuned above
            components.append({"engine": deep_engine,
                               "params": deep_p if deep_engine == "two_tower" else dict(args.seq_params)})
        hybrids = []
        for s in seeds:
            comps = [c if c["engine"] != deep_engine else
                     {"engine": deep_engine, "params": c["params"] | {"random_state": s}}
                     for c in components]
            res, model = run_ours(lambda s=s, comps=comps: build_engine("hybrid", components=comps,
                                                       random_state=s), rows, test, k, rows=rows,
                                  item_features=features, timestamps=T)
            hybrids.append(res)
            print(f"    hybrid weights {dict(zip(model.component_names_, model.weights_.round(2), strict=True))}")
        add("hybrid (+ recency rows)", hybrids,
            f"components={[c['engine'] for c in components]}, half_life_days={half_life}")
    for row in table:
        row["vs_best_peer"] = row["ndcg"] / best_peer
    return {"dataset": name, "info": info, "table": table, "best_peer_ndcg": best_peer}


def main(argv=None):
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--deep-grid", type=json.loads, default=None,
                        help="JSON list of TwoTower settings to choose from on validation "
                             "(default: the built-in DEEP_GRID)")
    parser.add_argument("--only", nargs="+", metavar="GROUP",
                        choices=["peers", "popular", "itemknn", "cooccurrence", "ease", "als",
                                 "temporal_ease", "content", "two_tower", "recency", "hybrid"],
                        help="run only these rows (peers = all four peers)")
    parser.add_argument("--no-deep-in-hybrid", action="store_true")
    parser.add_argument("--hybrid-deep", choices=["sequence", "two_tower"], default="sequence",
                        help="the deep component of the hybrid (default: sequence, as the app's default hybrid)")
    parser.add_argument("--seq-params", type=json.loads, default={},
                        help="JSON dict of SequenceModel parameters for the hybrid's sequence component")
    args = apply_smoke(parser.parse_args(argv))
    if args.deep_grid is None:
        args.deep_grid = DEEP_GRID[:1] if args.smoke else DEEP_GRID
    results = [run_dataset(name, args) for name in args.datasets]
    for res in results:
        print(f"\n### {res['dataset']} ({res['info']}), @{args.k}\n")
        print(format_table(res["table"], COLUMNS + ["vs_best_peer"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
