"""What a running experiment adds to a recommendation block and to the recommendations API.

    .venv/bin/python bench/bench_experiments.py            # 20,000 block calls, 2,000 requests per case
    .venv/bin/python bench/bench_experiments.py --smoke    # 500 calls, 100 requests

Times the template tags' assignment step (``recommender_tags._assigned``: the process's
copy of the running experiments, the visitor's variant, the exposure) with no running
experiment and with one whose exposure this process already recorded, on a fresh SQLite
database; and counts the queries of the warm case (0).

With Redis reachable at ``--redis-url`` (the demo's cache backend and its fast path), it
also times a logged-in user's ``GET /recommender/api/recommendations/?limit=10`` in
process (Django's test client, a database session, no throttle), answered by the fast
path from the stored response: with no experiment, and while one governs the block (the
visitor's variant, the exposure already recorded). Results: docs/benchmarks.md, "Online
metrics".
"""

import argparse
import os
import time
import timeit

from _django import add_smoke, setup

#: The Redis database this benchmark empties (the demo's cache while it runs).
REDIS = "redis://127.0.0.1:6379/11"


def _redis_up(url):
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        client.flushdb()
        return True
    except Exception as error:  # noqa: BLE001 (any failure: skip the API part and say why)
        print(f"SKIPPED: the API part needs Redis at {url} ({error})", flush=True)
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--redis-url", default=REDIS, help=f"Redis database the benchmark empties (default {REDIS})")
    add_smoke(parser)
    args = parser.parse_args()
    calls = 500 if args.smoke else args.calls
    requests = 100 if args.smoke else args.requests
    api = _redis_up(args.redis_url)
    if api:
        os.environ["REDIS_URL"] = args.redis_url
    setup("sqlite")
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.template import Context
    from django.test import Client, RequestFactory
    from django.test.utils import CaptureQueriesContext, override_settings

    from recommender.analytics import experiments
    from recommender.models import Experiment, Variant
    from recommender.serving import published
    from recommender.templatetags.recommender_tags import _assigned
    from shopdemo.shop.models import Category, Product

    class Session(dict):
        session_key = "bench-session"

    user = get_user_model().objects.create_user("bench")
    request = RequestFactory().get("/")
    request.user = user
    request.session = Session()
    context = Context({"request": request})

    category = Category.objects.create(name="Bench", slug="bench")
    Product.objects.bulk_create([Product(stock_code=f"S{i}", title=f"Product {i}", category=category, price=1)
                                 for i in range(60)])
    ranked = [[pk, 1.0 - i / 100, None] for i, pk in enumerate(Product.objects.values_list("pk", flat=True)[:50])]
    for algorithm in ("hybrid", "ease"):
        published.publish("for_user", algorithm, {user.pk: ranked})
    client = Client()
    client.force_login(user)

    def per_call():
        return timeit.timeit(lambda: _assigned(context, "recommended_for_you", None), number=calls) / calls * 1e6

    def per_request(label):
        url = "/recommender/api/recommendations/?limit=10"
        response = client.get(url)  # warm: the stored response, the experiments, the exposure
        client.get(url)
        if response.status_code != 200 or len(response.json()["results"]) != 10:
            raise SystemExit(f"GET {url} answered {response.status_code}: {response.content[:200]!r}")
        with CaptureQueriesContext(connection) as queries:
            start = time.perf_counter()
            for _ in range(requests):
                client.get(url)
            ms = (time.perf_counter() - start) / requests * 1000
        print(f"API, {label}: {ms:.3f} ms per request, {len(queries) / requests:.1f} queries per request", flush=True)

    # one client asks thousands of times: no throttle (as behind a proxy's rate limit, docs/serving.md)
    unthrottled = {"recommendations_anon": None, "recommendations_user": None}
    override_settings(RECOMMENDER={**getattr(settings, "RECOMMENDER", {}), "THROTTLE_RATES": unthrottled}).enable()
    print(f"no running experiment: {per_call():.2f} us per block", flush=True)
    if api:
        per_request("no running experiment (the fast path)")
    experiment = Experiment.objects.create(name="bench", blocks=["recommended_for_you"])
    Variant.objects.create(experiment=experiment, name="a", algorithm="hybrid", share=0.5)
    Variant.objects.create(experiment=experiment, name="b", algorithm="ease", share=0.5)
    experiments.start(experiment)
    _assigned(context, "recommended_for_you", None)  # loads the experiments, records the exposure
    with CaptureQueriesContext(connection) as queries:
        warm = per_call()
    print(f"a running experiment, exposure recorded: {warm:.2f} us per block, {len(queries)} queries", flush=True)
    if api:
        per_request("a running experiment governs the block, exposure recorded")


if __name__ == "__main__":
    main()
