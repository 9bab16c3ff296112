"""Scale of the training pipeline on synthetic data in PostgreSQL.

    .venv/bin/python bench/bench_scale.py --users 1000000 --items 100000 --interactions 10000000

Fills a fresh database with SQL (generate_series; items drawn with a power law), then
measures: streaming the interactions into the CSR matrix (recommender.training.dataset), fitting
the engines named by --algorithms, and the refresh of served lists per chunk of users.
Peak memory is the process's max RSS after each step.
"""

import argparse
import resource
import time


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fill(users, items, interactions):
    from django.db import connection

    with connection.cursor() as cur:
        # Bulk fill: skip the per-row foreign-key triggers (the generated keys are valid by
        # construction); indexes are maintained as usual.
        cur.execute("SET session_replication_role = replica")
        cur.execute("INSERT INTO shop_category (name, slug) VALUES ('Bench', 'bench') RETURNING id")
        category = cur.fetchone()[0]
        cur.execute("""INSERT INTO shop_product (stock_code, title, description, category_id, price, is_active, created)
                       SELECT 'S' || g, 'Product ' || g, 'synthetic product ' || g, %s, 1.00, TRUE, now()
                       FROM generate_series(1, %s) g""", [category, items])
        cur.execute("""INSERT INTO auth_user (username, password, is_superuser, first_name, last_name, email,
                                              is_staff, is_active, date_joined)
                       SELECT 'u' || g, '!', FALSE, '', '', '', FALSE, TRUE, now()
                       FROM generate_series(1, %s) g""", [users])
        cur.execute("SELECT min(id), max(id) FROM auth_user")
        umin, umax = cur.fetchone()
        cur.execute("SELECT min(id), max(id) FROM shop_product")
        imin, imax = cur.fetchone()
        # items: power law (a few very popular); users: uniform; times: the last 365 days
        cur.execute("""INSERT INTO recommender_interaction (user_id, session_key, item_id, event, value,
                                                           timestamp, context)
                       SELECT %s + floor(random() * %s)::int, '',
                              %s + floor(power(random(), 3) * %s)::int,
                              (ARRAY['view', 'view', 'view', 'click', 'add_to_cart', 'purchase'])
                                  [1 + floor(random() * 6)::int],
                              NULL, now() - random() * interval '365 days', ''
                       FROM generate_series(1, %s)""", [umin, umax - umin + 1, imin, imax - imin + 1, interactions])
        cur.execute("SET session_replication_role = DEFAULT")
        cur.execute("ANALYZE")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=10_000_000)
    parser.add_argument("--algorithms", nargs="+", default=["popular", "cooccurrence", "itemknn", "als"])
    parser.add_argument("--reuse", action="store_true", help="measure on the data a previous run left")
    parser.add_argument("--refresh-users", type=int, default=5000, help="users in the timed refresh chunk")
    args = parser.parse_args()

    from _django import setup

    setup("postgresql", fresh=not args.reuse)
    from recommender.engine import build_engine
    from recommender.training.dataset import load_interactions

    t0 = time.perf_counter()
    if args.reuse:
        print("measuring on the data of a previous run")
    else:
        fill(args.users, args.items, args.interactions)
        print(f"filled {args.users:,} users, {args.items:,} items, {args.interactions:,} interactions "
              f"in {time.perf_counter() - t0:.0f}s (SQL)")

    t0 = time.perf_counter()
    data = load_interactions(log_damping=True, with_timestamps=True)
    X = data.matrix
    print(f"load_interactions: {time.perf_counter() - t0:.1f}s, matrix {X.shape[0]:,} x {X.shape[1]:,}, "
          f"nnz {X.nnz:,}, peak RSS {peak_mb():.0f} MB")

    for name in args.algorithms:
        t0 = time.perf_counter()
        model = build_engine(name).fit(X, timestamps=data.timestamps, reference_time=data.cutoff)
        fit = time.perf_counter() - t0
        users = list(range(min(args.refresh_users, X.shape[0])))
        t0 = time.perf_counter()
        model.recommend_batch(users, X[users], n=50)
        rec = time.perf_counter() - t0
        print(f"{name}: fit {fit:.1f}s; top-50 for {len(users):,} users {rec:.2f}s "
              f"({len(users) / rec:,.0f} users/s); peak RSS {peak_mb():.0f} MB")


if __name__ == "__main__":
    main()
