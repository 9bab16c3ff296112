"""Cost of one ``recommender.track()`` call (one INSERT, autocommit), on SQLite or PostgreSQL.

    .venv/bin/python bench/bench_track.py --backend postgresql --calls 5000
    .venv/bin/python bench/bench_track.py --smoke          # 200 calls on 100 items: a second
"""

import argparse
import statistics
import time

from _django import add_database, add_smoke, make_catalog, setup


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--mode", choices=["autocommit", "atomic", "async-commit"], default="autocommit",
                        help="autocommit: each call commits (a view without ATOMIC_REQUESTS); "
                             "atomic: calls inside a transaction that commits every 20 calls, as in "
                             "requests that also write other rows; async-commit: PostgreSQL "
                             "synchronous_commit=off for the connection")
    add_database(parser)
    add_smoke(parser)
    args = parser.parse_args()
    n_items, n_users, warm_up = 1000, 100, 200
    if args.smoke:
        args.calls, n_items, n_users, warm_up = 200, 100, 20, 20
    setup(args.backend, name=args.database)
    from django.db import connection, transaction

    if args.mode == "async-commit":
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO OFF")

    from django.contrib.auth import get_user_model

    import recommender

    items, users = make_catalog(n_items, n_users)
    user_objs = list(get_user_model().objects.filter(pk__in=users))
    for i in range(warm_up):  # warm up the connection and code paths
        recommender.track(user_objs[i % len(user_objs)], items[i % len(items)], "view")
    timings = []
    for block in range(0, args.calls, 20):
        atomic = transaction.atomic() if args.mode == "atomic" else None
        if atomic:
            atomic.__enter__()
        for i in range(block, min(block + 20, args.calls)):
            user = user_objs[i % len(user_objs)]
            item = items[(i * 7) % len(items)]
            start = time.perf_counter()
            recommender.track(user, item, "view", context="bench")
            timings.append(time.perf_counter() - start)
        if atomic:
            atomic.__exit__(None, None, None)
    timings.sort()
    micro = [t * 1e6 for t in timings]
    print(f"backend={args.backend} mode={args.mode} calls={args.calls} mean={statistics.fmean(micro):.0f}us "
          f"p50={micro[len(micro) // 2]:.0f}us p99={micro[int(len(micro) * 0.99)]:.0f}us "
          f"({1e6 / statistics.fmean(micro):.0f} calls/s)")


if __name__ == "__main__":
    main()
