"""Scale of the training pipeline on synthetic data in PostgreSQL.

    .venv/bin/python bench/bench_scale.py --users 1000000 --items 100000 --interactions 10000000
    .venv/bin/python bench/bench_scale.py --smoke     # 2,000 users, 500 items, 20,000 interactions

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


def other_columns(model, given, connection):
    """The model's NOT NULL columns not in ``given``, and the value the model would give each.

    A field added later with a constant default, or a blank text field, is filled without
    a change here; one with neither stops the fill with its name.
    """
    columns, values = [], []
    for field in model._meta.concrete_fields:
        if field.column in given or field.null or field.primary_key:
            continue
        if field.has_default() and not callable(field.default):
            value = field.get_db_prep_save(field.get_default(), connection)
        elif field.blank and field.empty_strings_allowed:
            value = ""
        else:
            raise SystemExit(f"bench_scale.fill: {model.__name__}.{field.name} needs a value: add it to fill()")
        columns.append(field.column)
        values.append(value)
    return columns, values


def fill(users, items, interactions):
    from django.contrib.auth import get_user_model
    from django.db import connection

    from recommender.models import Interaction
    from shopdemo.shop.models import Category, Product

    def insert(model, rows, columns, expressions, params=()):
        """``rows`` rows of ``expressions`` (SQL over ``g``, 1..rows) into ``columns``; other columns as the model."""
        extra, values = other_columns(model, columns, connection)
        cur.execute(f"INSERT INTO {model._meta.db_table} ({', '.join(columns + extra)}) "
                    f"SELECT {expressions}{', %s' * len(extra)} FROM generate_series(1, %s) g",
                    [*params, *values, rows])

    User = get_user_model()
    with connection.cursor() as cur:
        # Bulk fill: skip the per-row foreign-key triggers (the generated keys are valid by
        # construction); indexes are maintained as usual.
        cur.execute("SET session_replication_role = replica")
        category = Category.objects.create(name="Bench", slug="bench").pk
        insert(Product, items, ["stock_code", "title", "description", "category_id", "price", "is_active", "created"],
               "'S' || g, 'Product ' || g, 'synthetic product ' || g, %s, 1.00, TRUE, now()", [category])
        insert(User, users, ["username", "password", "is_superuser", "first_name", "last_name", "email",
                             "is_staff", "is_active", "date_joined"],
               "'u' || g, '!', FALSE, '', '', '', FALSE, TRUE, now()")
        cur.execute(f"SELECT min(id), max(id) FROM {User._meta.db_table}")
        umin, umax = cur.fetchone()
        cur.execute(f"SELECT min(id), max(id) FROM {Product._meta.db_table}")
        imin, imax = cur.fetchone()
        # items: power law (a few very popular); users: uniform; times: the last 365 days
        insert(Interaction, interactions,
               ["user_id", "session_key", "item_id", "event", "value", "timestamp", "context"],
               """%s + floor(random() * %s)::int, '', %s + floor(power(random(), 3) * %s)::int,
                  (ARRAY['view', 'view', 'view', 'click', 'add_to_cart', 'purchase'])[1 + floor(random() * 6)::int],
                  NULL, now() - random() * interval '365 days', ''""",
               [umin, umax - umin + 1, imin, imax - imin + 1])
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
    from _django import add_database, add_smoke, setup

    add_database(parser)
    add_smoke(parser)
    args = parser.parse_args()
    if args.smoke:
        args.users, args.items, args.interactions, args.refresh_users = 2000, 500, 20_000, 200
    setup("postgresql", name=args.database, fresh=not args.reuse)
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
