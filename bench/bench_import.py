"""Import throughput of ``recommender_import`` on a synthetic CSV, and memory while importing.

    .venv/bin/python bench/bench_import.py --backend postgresql --rows 1000000
    .venv/bin/python bench/bench_import.py --smoke         # 2,000 rows: a few seconds

The file has Zipf-distributed items (10k) and users (100k); memory is sampled
after each batch (resident set size) to show it stays flat while streaming.
"""

import argparse
import csv
import datetime as dt
import os
import random
import time


def rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def write_csv(path, rows, users, items, stock_codes):
    rng = random.Random(42)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    weights = [1 / (i + 1) ** 0.8 for i in range(len(items))]
    picks = rng.choices(range(len(items)), weights=weights, k=rows)
    events = ["view"] * 6 + ["click"] * 2 + ["add_to_cart", "purchase"]
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["user_id", "item_id", "event", "value", "timestamp"])
        for i in range(rows):
            event = rng.choice(events)
            out.writerow([users[rng.randrange(len(users))], stock_codes[picks[i]], event,
                          rng.randint(1, 5) if event == "purchase" else "",
                          (start + dt.timedelta(seconds=i * 3)).isoformat()])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    from _django import add_database, add_smoke, make_catalog, setup

    add_database(parser)
    add_smoke(parser)
    args = parser.parse_args()
    n_items, n_users = 10_000, 100_000
    if args.smoke:
        args.rows, args.batch_size, n_items, n_users = 2000, 500, 200, 500
    var = setup(args.backend, name=args.database)
    from recommender.models import Interaction
    from recommender.tracking.importer import import_rows, open_text, read_csv

    items, users = make_catalog(n_items, n_users)
    stock_codes = [f"S{i}" for i in range(len(items))]
    path = os.path.join(var, "events.csv")
    t0 = time.perf_counter()
    write_csv(path, args.rows, users, items, stock_codes)
    print(f"wrote {args.rows} rows in {time.perf_counter() - t0:.1f}s ({os.path.getsize(path) / 2**20:.0f} MB)")

    samples = []
    base = rss_mb()

    def progress(done):
        samples.append((done, rss_mb()))

    t0 = time.perf_counter()
    with open_text(path) as fh:
        result = import_rows(read_csv(fh), batch_size=args.batch_size, progress=progress)
    elapsed = time.perf_counter() - t0
    assert Interaction.objects.count() == result.created
    marks = [samples[int(len(samples) * f) - 1] for f in (0.1, 0.5, 1.0)]
    print(f"backend={args.backend} rows={result.rows} created={result.created} "
          f"seconds={elapsed:.1f} rows/s={result.rows / elapsed:,.0f}")
    print("RSS MB before import {:.0f}; at 10% {:.0f}, 50% {:.0f}, 100% {:.0f}".format(
        base, *(m[1] for m in marks)))
    t0 = time.perf_counter()
    with open_text(path) as fh:
        again = import_rows(read_csv(fh), batch_size=args.batch_size)
    print(f"re-import of the same file: created={again.created} skipped={again.skipped} "
          f"seconds={time.perf_counter() - t0:.1f}")


if __name__ == "__main__":
    main()
