"""Serving speed: the recommendations API against bare Django views, under gunicorn + PostgreSQL + Redis.

    .venv/bin/python bench/bench_serving.py            # needs wrk and gunicorn (bench/requirements-bench.txt)
    .venv/bin/python bench/bench_serving.py --smoke    # tiny data, 1 s per URL

Loads 1M synthetic interactions (100k users, 20k items) into a fresh PostgreSQL
database, publishes served lists, then for each session engine (--sessions) starts
gunicorn (2 sync workers, the demo site with two baseline views) and runs wrk with 20
connections on loopback against each URL, each request carrying the session cookie of
one of 1,000 users. Also times, in process, the server time the three blocks of a
product page add, rendered every time and reused once stored.

Without gunicorn or wrk the HTTP part is skipped (with a printed reason); ``--smoke``
also requests each URL once in process, so the URLs and views are checked either way.
"""

import argparse
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path

from _django import add_smoke, missing_tool

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DB = "recommender_serve_bench"
REDIS = "redis://127.0.0.1:6379/13"
PORT = 8100
SETTINGS = "serving_settings"  # bench/serving_settings.py: the demo's, behind one trusted proxy


def prepare(users, items, interactions, bench_users, listed, database, redis_url):
    """Fill the database, publish lists; the first ``bench_users`` users and ``listed`` items with lists."""
    os.environ["REDIS_URL"] = redis_url
    os.environ["SHOPDEMO_URLCONF"] = "shopdemo.bench_urls"  # the server's URLs, for the in-process checks
    from _django import setup

    setup("postgresql", name=database, settings=SETTINGS)
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    from bench_scale import fill
    from django.contrib.auth import get_user_model

    from recommender.conf import rec_settings
    from recommender.serving import published
    from shopdemo.shop.models import Product

    t0 = time.perf_counter()
    fill(users, items, interactions)
    print(f"loaded {interactions:,} interactions in {time.perf_counter() - t0:.0f}s")
    rng = random.Random(1)
    item_pks = list(Product.objects.values_list("pk", flat=True))
    people = list(get_user_model().objects.order_by("pk")[:bench_users])

    def a_list(n=50):
        return [[pk, round(1 - i / 100, 3), rng.choice(item_pks)] for i, pk in enumerate(rng.sample(item_pks, n))]

    # under the algorithm names the site serves (rec_settings.list_algorithm: the defaults)
    name = rec_settings.list_algorithm
    published.publish("for_user", name("for_user"), {u.pk: a_list() for u in people})
    published.publish("trending", name("trending"), {0: a_list()})
    published.publish("popular", name("popular"), {0: a_list()})
    published.publish("similar", name("similar"), {pk: a_list() for pk in item_pks[:listed]})
    published.publish("bought_together", name("bought_together"), {pk: a_list() for pk in item_pks[:listed]})
    return people, item_pks[:listed]


def forget_stored_responses(redis_url):
    """Drop stored API responses and auth records, so each session engine starts cold."""
    import redis

    client = redis.Redis.from_url(redis_url)
    for pattern in ("*recommender:api:*", "*recommender:auth:*"):
        keys = list(client.scan_iter(pattern, count=10_000))
        for start in range(0, len(keys), 10_000):
            client.delete(*keys[start:start + 10_000])


def session_cookies(people, engine):
    """A logged-in session cookie per user, made by the session ``engine``."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.test.utils import override_settings

    with override_settings(SESSION_ENGINE=engine):
        SessionStore = import_module(engine).SessionStore
        cookies = []
        for user in people:
            session = SessionStore()
            session[SESSION_KEY] = str(user.pk)
            session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
            session[HASH_SESSION_KEY] = user.get_session_auth_hash()
            session.save()
            cookies.append(f"sessionid={session.session_key}")
    return cookies


def blocks_server_time(people, products, rounds, stored=True):
    """Milliseconds that rendering the three product-page blocks adds, per request.

    ``stored=False`` renders every block (``cache=False``): a page whose blocks nobody
    has seen yet. With ``stored=True`` blocks are reused once rendered: similar items
    and customers-also-bought per product for every visitor, the personal block per user.
    Products are drawn with Zipf weights over the ones with lists (2,000), visitors uniformly
    from the users with sessions (1,000).
    """
    from django.contrib.sessions.backends.cached_db import SessionStore
    from django.template import RequestContext, Template
    from django.test import RequestFactory

    from shopdemo.shop.models import Product

    flag = "" if stored else " cache=False"
    template = Template("{% load recommender_tags %}"
                        f"{{% similar_items product n=6{flag} %}}{{% bought_together product n=6{flag} %}}"
                        f"{{% recommended_for_you n=6{flag} %}}")
    factory = RequestFactory()
    rng = random.Random(2)
    # page views are skewed (Zipf, s=1): a few products get most of them; visitors uniform
    weights = [1 / (rank + 1) for rank in range(len(products))]
    timings = []
    for _ in range(rounds):
        request = factory.get("/product/")
        request.user = people[rng.randrange(len(people))]
        request.session = SessionStore()
        product = Product.objects.get(pk=rng.choices(products, weights)[0])
        start = time.perf_counter()
        html = template.render(RequestContext(request, {"product": product}))
        timings.append((time.perf_counter() - start) * 1000)
        assert "rec-block" in html
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.99)]


LUA = """
local cookies = {%s}
local path = "/"
init = function(args) path = args[1] end
request = function()
  return wrk.format("GET", path, {["Cookie"] = cookies[math.random(#cookies)]})
end
"""


PAGES_LUA = """
local cookies = {%s}
local pages = {%s}
local suffix = "/"
init = function(args) suffix = args[1] end
request = function()
  local path = "/bench/product/" .. pages[math.random(#pages)] .. suffix
  return wrk.format("GET", path, {["Cookie"] = cookies[math.random(#cookies)]})
end
"""


ANON_LUA = """
local pages = {%s}
local template = "/"
init = function(args) template = args[1] end
request = function()
  -- visitors from 10,000 addresses: DRF's anonymous throttle counts per address
  local address = "10.0." .. math.random(0, 39) .. "." .. math.random(1, 250)
  return wrk.format("GET", (string.gsub(template, "PK", pages[math.random(#pages)])),
                    {["X-Forwarded-For"] = address})
end
"""


def product_pages(products, n=5000, seed=3):
    """Product keys drawn with Zipf weights (s=1): the page views of a shop."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(products))]
    return rng.choices(products, weights, k=n)


def first_requests(base, path, cookies, threads=4):
    """Request ``path`` once per cookie (4 at a time); latencies in ms, sorted.

    A user's first request stores their response and auth record (the slow path, as
    after a retrain); wrk then measures the steady state.
    """
    def one(cookie):
        request = urllib.request.Request(base + path, headers={"Cookie": cookie})
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
        return (time.perf_counter() - start) * 1000

    with ThreadPoolExecutor(threads) as pool:
        return sorted(pool.map(one, cookies))


def run_wrk(url, path, script, seconds, connections):
    if seconds <= 0:  # --smoke: no warm-up runs
        return None
    command = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency",
               "-s", script, url, "--", path]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout

    def ms(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"p50": ms(50), "p99": ms(99), "rps": rps, "non2xx": int(errors.group(1)) if errors else 0}


def check_in_process(engine, cookie, product):
    """Request each URL the benchmark loads once, through Django's test client; fail on a non-200."""
    from django.test import Client
    from django.test.utils import override_settings

    name, value = cookie.split("=", 1)
    paths = [("/bench/bare/", True), ("/bench/bare-user/", True),
             ("/recommender/api/recommendations/?limit=10", True),
             (f"/recommender/api/items/{product}/similar/?limit=10", False),
             ("/recommender/api/trending/?limit=10", False),
             (f"/bench/product/{product}/no-blocks/", True), (f"/bench/product/{product}/three-blocks/", True)]
    with override_settings(SESSION_ENGINE=engine):
        for path, logged_in in paths:
            client = Client()
            if logged_in:
                client.cookies[name] = value
            start = time.perf_counter()
            response = client.get(path)
            ms = (time.perf_counter() - start) * 1000
            if response.status_code != 200:
                raise SystemExit(f"in process: GET {path} answered {response.status_code}")
            if path.startswith("/recommender/api/") and not response.json()["results"]:
                raise SystemExit(f"in process: GET {path} returned no results")
            print(f"  in process, {engine.rsplit('.', 1)[1]}: GET {path} 200 ({ms:.1f} ms)", flush=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


ENGINES = {
    "cached_db": "django.contrib.sessions.backends.cached_db",
    "cache": "django.contrib.sessions.backends.cache",
    "signed_cookies": "django.contrib.sessions.backends.signed_cookies",
}


def serve_and_load(engine, cookies, args, products=None):
    """Start gunicorn with the session ``engine``, run wrk on each URL; ``{name: result}``."""
    script = Path(tempfile.mkdtemp()) / "cookies.lua"
    script.write_text(LUA % ",".join(f'"{c}"' for c in cookies))
    env = dict(os.environ, DJANGO_SETTINGS_MODULE=SETTINGS, SHOPDEMO_URLCONF="shopdemo.bench_urls",
               DJANGO_DEBUG="0", DB_CONN_MAX_AGE="600", SHOPDEMO_SESSION_ENGINE=engine,
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), str(HERE), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "gunicorn", "shopdemo.wsgi", "-w", str(args.workers),
               "-b", f"127.0.0.1:{args.port}", "--log-level", "warning"]
    if args.threads > 1:  # gthread workers: a thread can run while another waits on Redis
        command += ["-k", "gthread", "--threads", str(args.threads)]
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{args.port}"
    warm_up = 0 if args.smoke else min(3, args.seconds)
    try:
        for _ in range(150):
            if server.poll() is not None:
                raise SystemExit(f"gunicorn exited with status {server.returncode}")
            try:
                urllib.request.urlopen(f"{base}/bench/bare/", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit("gunicorn did not answer within 30 s")
        paths = {
            "bare Django JSON view": "/bench/bare/",
            "bare view + request.user": "/bench/bare-user/",
            "recommendations API (own, limit 10)": "/recommender/api/recommendations/?limit=10",
        }
        first = first_requests(base, paths["recommendations API (own, limit 10)"], cookies)
        for path in paths.values():  # warm up: connections
            run_wrk(base, path, str(script), warm_up, args.connections)
        results = {name: run_wrk(base, path, str(script), args.seconds, args.connections)
                   for name, path in paths.items()}
        results["first"] = first
        if products:  # anonymous visitors (no cookie): responses shared by all of them
            anon = Path(script.parent) / "anonymous.lua"
            anon.write_text(ANON_LUA % ",".join(str(pk) for pk in product_pages(products)))
            anonymous = {
                "similar-items API (anonymous, limit 10)": "/recommender/api/items/PK/similar/?limit=10",
                "trending API (anonymous, limit 10)": "/recommender/api/trending/?limit=10",
            }
            for path in anonymous.values():
                run_wrk(base, path, str(anon), warm_up, args.connections)
            for name, path in anonymous.items():
                results[name] = run_wrk(base, path, str(anon), args.seconds, args.connections)
        if products:  # the product page with and without three blocks, one client at a time
            pages = Path(script.parent) / "pages.lua"
            pages.write_text(PAGES_LUA % (",".join(f'"{c}"' for c in cookies),
                                          ",".join(str(pk) for pk in product_pages(products))))
            for suffix in ("/no-blocks/", "/three-blocks/"):
                run_wrk(base, suffix, str(pages), warm_up and 4, 1)  # warm up: stored blocks, connections
            for label, suffix in (("product page, no blocks", "/no-blocks/"),
                                  ("product page, three blocks", "/three-blocks/")):
                results[label] = run_wrk(base, suffix, str(pages), args.seconds, 1)
        return results
    finally:
        server.terminate()
        server.wait(timeout=20)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="> 1: gunicorn gthread workers with this many threads")
    parser.add_argument("--sessions", default="cached_db,cache,signed_cookies",
                        help="session engines to compare: " + ", ".join(ENGINES))
    parser.add_argument("--near-cache", choices=("on", "off"), default="on",
                        help="the cache's near cache of recommender keys and sessions "
                             "(recommender/fastpath/near_cache.py)")
    parser.add_argument("--database", default=DB, help=f"PostgreSQL database to drop and create (default {DB})")
    parser.add_argument("--redis-url", default=REDIS, help=f"Redis database the benchmark empties (default {REDIS})")
    parser.add_argument("--port", type=int, default=PORT, help=f"gunicorn's port (default {PORT}; 0: any free port)")
    add_smoke(parser)
    args = parser.parse_args()
    users, items, bench_users, listed, rounds = 100_000, 20_000, 1000, 2000, (300, 1000)
    if args.smoke:
        users, items, bench_users, listed, rounds = 2000, 500, 50, 200, (20, 50)
        args.interactions, args.seconds, args.connections, args.port = 20_000, 1, 4, 0
    if args.port == 0:
        args.port = free_port()
    os.environ["SHOPDEMO_NEAR_CACHE"] = "1" if args.near_cache == "on" else "0"
    sys.path.insert(0, str(HERE))
    http = not missing_tool("wrk", "apt-get install wrk")
    if find_spec("gunicorn") is None:
        print("SKIPPED: gunicorn is not installed (pip install -r bench/requirements-bench.txt)", flush=True)
        http = False
    if not http:
        print("SKIPPED: the HTTP measurements (gunicorn + wrk); the in-process ones still run", flush=True)
    people, products = prepare(users, items, args.interactions, bench_users, listed, args.database, args.redis_url)
    kind = "sync" if args.threads == 1 else f"gthread x {args.threads}"
    for name in args.sessions.split(","):
        forget_stored_responses(args.redis_url)
        cookies = session_cookies(people, ENGINES[name])
        if args.smoke or not http:
            check_in_process(ENGINES[name], cookies[0], products[0])
        if not http:
            continue
        results = serve_and_load(ENGINES[name], cookies, args, products if name == "cached_db" else None)
        bare = results["bare Django JSON view"]["p50"]
        bare_user = results["bare view + request.user"]["p50"]
        print(f"\nsessions: {name}; wrk, {args.connections} connections, {args.seconds}s per URL, "
              f"gunicorn {args.workers} {kind} workers, PostgreSQL + Redis (near cache {args.near_cache}), "
              f"{args.interactions:,} interactions")
        print("| path | req/s | p50 ms | p99 ms | p50 vs bare | p50 vs bare + user | non-2xx |")
        print("|---|---|---|---|---|---|---|")
        first = results.pop("first")
        failed = [label for label, r in results.items() if r["non2xx"]]
        if failed and args.smoke:
            raise SystemExit(f"non-2xx responses (see the table above the error) from: {', '.join(failed)}")
        for label, r in results.items():
            if label.startswith("product page"):
                continue
            print(f"| {label} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['p50'] / bare:.2f} | "
                  f"{r['p50'] / bare_user:.2f} | {r['non2xx']} |", flush=True)
        print(f"first request of each of the {len(first):,} users to the API (4 clients; stores the response and "
              f"the auth record): p50 {statistics.median(first):.1f} ms, p99 {first[int(len(first) * 0.99)]:.1f} ms")
        if "product page, no blocks" in results:
            none, three = results["product page, no blocks"], results["product page, three blocks"]
            print("\nproduct page over HTTP, wrk with 1 connection (products drawn with Zipf weights):")
            print("| page | req/s | p50 ms | p99 ms | non-2xx |")
            print("|---|---|---|---|---|")
            for label in ("product page, no blocks", "product page, three blocks"):
                r = results[label]
                print(f"| {label} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['non2xx']} |")
            print(f"three blocks add p50 {three['p50'] - none['p50']:.2f} ms, p99 {three['p99'] - none['p99']:.2f} ms",
                  flush=True)
    for stored in (False, True):
        blocks_server_time(people, products, rounds[0], stored)  # warm up (and store, when stored)
        p50, p99 = blocks_server_time(people, products, rounds[1], stored)
        label = "stored blocks reused" if stored else "every block rendered (cache=False)"
        print(f"\nthree product-page blocks (similar, bought together, for you), in process, {label}: "
              f"p50 {p50:.2f} ms, p99 {p99:.2f} ms of added server time per page", flush=True)


if __name__ == "__main__":
    main()
