"""The online-metrics aggregation (``recommender.aggregate_daily``) on a synthetic PostgreSQL table.

    .venv/bin/python bench/bench_aggregates.py --interactions 10000000 --users 1000000 --items 100000
    .venv/bin/python bench/bench_aggregates.py --smoke      # 20,000 interactions, seconds

Fills the table with ``bench_scale.fill`` (a year of interactions), turns half of the rows
into impressions of four blocks and gives the clicks a block context, then times: the
first run (every day), a second run with nothing new, a run after 20,000 new rows on one
day, and a full rebuild. Results: docs/benchmarks.md, "Online metrics".
"""

import argparse
import time

from _django import add_database, add_smoke, setup

BLOCKS = ("ARRAY['recommended_for_you:hybrid','similar_items:similar@3','trending:trending',"
          "'bought_together:complements']")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=10_000)
    add_smoke(parser)
    add_database(parser, default="recommender_bench_aggregates")
    args = parser.parse_args()
    if args.smoke:
        args.interactions, args.users, args.items = 20_000, 2_000, 500
    setup("postgresql", name=args.database, fresh=True)
    from bench_scale import fill
    from django.db import connection

    started = time.perf_counter()
    fill(args.users, args.items, args.interactions)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE recommender_interaction SET event = 'impression', "
                       f"context = ({BLOCKS})[1 + (id % 4)] WHERE id % 2 = 0")
        cursor.execute(f"UPDATE recommender_interaction SET context = ({BLOCKS})[1 + (id % 4)] WHERE event = 'click'")
        cursor.execute("ANALYZE recommender_interaction")
        cursor.execute("SELECT event, count(*) FROM recommender_interaction GROUP BY 1 ORDER BY 1")
        counts = dict(cursor.fetchall())
    print(f"filled {args.interactions:,} interactions in {time.perf_counter() - started:.1f} s: {counts}", flush=True)

    from recommender.analytics import aggregates
    from recommender.models import DailyBlockStats

    def timed(label, **kwargs):
        started = time.perf_counter()
        result = aggregates.aggregate_daily(**kwargs)
        print(f"{label}: {time.perf_counter() - started:.2f} s ({result})", flush=True)

    timed("first run (all days)")
    timed("second run, nothing new")
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO recommender_interaction (user_id, session_key, item_id, event, value, "
                       "timestamp, context, ref) SELECT user_id, '', item_id, event, value, "
                       "now() - interval '2 days', context, '' FROM recommender_interaction ORDER BY id LIMIT 20000")
    timed("after 20,000 new rows on one day")
    timed("full rebuild", full=True)
    print(f"daily rows: {DailyBlockStats.objects.count():,}", flush=True)


if __name__ == "__main__":
    main()
