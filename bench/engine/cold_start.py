"""Cold-start benchmark: rank items never seen in training, by content alone.

Protocol: 20% of the items (with interactions) are held out of training entirely. The
engines are fitted on the interactions with the remaining items. For every user with at
least one interaction on both sides, only the held-out items are ranked, from the user's
training row. NDCG@k is computed against the held-out items the user really interacted
with. The baseline is a random ranking (mean of 20 draws). Each of ``--seeds`` seeds
draws a new set of cold items and trains new models.

Usage::

    .venv/bin/python bench/engine/cold_start.py
    .venv/bin/python bench/engine/cold_start.py --smoke     # 300 users x 300 items per dataset
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from common import apply_smoke, base_parser, load_dataset  # noqa: E402

from recommender.engine import build_engine  # noqa: E402
from recommender.engine.evaluation import format_table, ranking_metrics  # noqa: E402


def run(name, args):
    u, i, ts, n_items, features = load_dataset(name, args)
    X = sp.csr_matrix((np.ones(len(u), np.float32), (u, i)), shape=(int(u.max()) + 1, n_items))
    rows = []
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        active = np.flatnonzero(X.getnnz(axis=0) > 0)
        cold = np.sort(rng.choice(active, int(0.2 * len(active)), replace=False))
        is_cold = np.zeros(n_items, bool)
        is_cold[cold] = True
        train = sp.csr_matrix(X @ sp.diags((~is_cold).astype(np.float32)), dtype=np.float32)
        test = sp.csr_matrix(X @ sp.diags(is_cold.astype(np.float32)), dtype=np.float32)
        train.eliminate_zeros()
        test.eliminate_zeros()
        users = np.flatnonzero((train.getnnz(axis=1) > 0) & (test.getnnz(axis=1) > 0))
        result = {"seed": seed, "users": len(users), "cold_items": len(cold)}
        draws = []
        for _ in range(20):
            scores = rng.random((len(users), len(cold)))
            recs = cold[np.argsort(-scores, axis=1)[:, :args.k]]
            draws.append(ranking_metrics(recs, test[users], args.k)["ndcg"])
        result["random"] = float(np.mean(draws))
        for engine, params in (("content", {}), ("two_tower", dict(args.deep_params))):
            if engine == "two_tower":
                params = params | {"random_state": seed}
            start = time.perf_counter()
            model = build_engine(engine, **params).fit(train, item_features=features)
            result[f"{engine}_fit_seconds"] = time.perf_counter() - start
            recs, _ = model.recommend_batch(users, train[users], n=args.k, items=cold)
            result[engine] = ranking_metrics(recs, test[users], args.k)["ndcg"]
        print(f"  {name} seed {seed}: {result}", flush=True)
        rows.append(result)
    mean = {key: float(np.mean([r[key] for r in rows])) for key in rows[0] if key != "seed"}
    table = [{"engine": "random ranking", "ndcg": mean["random"], "vs_random": 1.0}]
    for engine in ("content", "two_tower"):
        table.append({"engine": engine, "ndcg": mean[engine],
                      "vs_random": mean[engine] / mean["random"],
                      "fit_seconds": mean[f"{engine}_fit_seconds"]})
    return {"dataset": name, "users": int(mean["users"]), "cold_items": int(mean["cold_items"]),
            "table": table}


def main(argv=None):
    parser = base_parser(__doc__.splitlines()[0])
    args = apply_smoke(parser.parse_args(argv))
    results = [run(name, args) for name in args.datasets]
    for res in results:
        print(f"\n### {res['dataset']}: {res['cold_items']} cold items, {res['users']} users, "
              f"NDCG@{args.k} over cold items only\n")
        print(format_table(res["table"], ["engine", "ndcg", "vs_random", "fit_seconds"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
