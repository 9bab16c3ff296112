"""Every benchmark under bench/ runs in its smoke mode (tiny sizes, same code), as a subprocess.

A model, settings or layout change that breaks a benchmark fails here. The benchmarks on
PostgreSQL (and Redis) run when DATABASE_URL points at PostgreSQL, as in the second pass
of './run tests'; on SQLite-only runs they are skipped (failed with REQUIRE_SERVICES=1).
Benchmark-only tools (gunicorn, wrk, implicit) are optional: without them the scripts
skip those parts and say so.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import REQUIRE_SERVICES

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def bench_env(tmp_path, **extra):
    """The environment of a benchmark: temp files under ``tmp_path``, none of the test run's services."""
    env = {key: value for key, value in os.environ.items()
           if key not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE",
                          "SHOPDEMO_VAR_DIR", "SHOPDEMO_URLCONF", "SHOPDEMO_SESSION_ENGINE"}}
    return env | {"TMPDIR": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3"} | extra


def run_smoke(script, tmp_path, *args, env=None, timeout=180):
    """Run ``bench/<script> --smoke *args``; its stdout, or a failure with the whole output."""
    proc = subprocess.run([sys.executable, str(BENCH / script), "--smoke", *args], cwd=ROOT,
                          env=env or bench_env(tmp_path), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"bench/{script} --smoke {' '.join(args)} exited with {proc.returncode}:\n"
                    f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc.stdout


def needs(message):
    if REQUIRE_SERVICES:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def postgres(tmp_path):
    """``(env, database)`` for a benchmark on the PostgreSQL server of DATABASE_URL; drops the database after."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        needs("needs PostgreSQL (DATABASE_URL=postgres://...): benchmark smoke runs on PostgreSQL are skipped")
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    server = f"postgresql://{parts.netloc}"
    database = f"{parts.path.lstrip('/')}_smoke"
    try:
        psycopg.connect(f"{server}/postgres", connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        needs(f"needs PostgreSQL at {parts.hostname}:{parts.port}: {exc}")
    yield bench_env(tmp_path, BENCH_POSTGRES_SERVER=server), database
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))


def cache_tests_redis_url():
    """The Redis database of the cache tests (TEST_REDIS_DB, as in tests/serving/conftest.py)."""
    base = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379"
    if urlsplit(base).path.strip("/"):
        base = base.rstrip("/").rsplit("/", 1)[0]
    return f"{base}/{os.environ.get('TEST_REDIS_DB', '15')}"


@pytest.fixture
def redis_url():
    """``cache_tests_redis_url()``, or a skip (a failure with REQUIRE_SERVICES) when it is not reachable."""
    import redis

    url = cache_tests_redis_url()
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except Exception as exc:
        needs(f"needs Redis at {url}: {exc}")
    return url


def test_track_sqlite(tmp_path):
    out = run_smoke("bench_track.py", tmp_path, "--backend", "sqlite")
    assert "backend=sqlite mode=autocommit calls=200 " in out


def test_experiments_overhead(tmp_path):
    # without Redis the script skips its API part and says so
    out = run_smoke("bench_experiments.py", tmp_path, "--redis-url", cache_tests_redis_url())
    assert "no running experiment:" in out and ", 0 queries" in out
    if "SKIPPED: the API part needs Redis" not in out:
        api = re.findall(r"^API, (.+): [0-9.]+ ms per request, ([0-9.]+) queries per request$", out, re.M)
        assert [label for label, _q in api] == ["no running experiment (the fast path)",
                                                "a running experiment governs the block, exposure recorded"], out
        assert api[0][1] == api[1][1]  # the experiment adds no query once warm


def test_import_sqlite(tmp_path):
    out = run_smoke("bench_import.py", tmp_path, "--backend", "sqlite")
    assert "backend=sqlite rows=2000 created=2000 " in out
    assert "re-import of the same file: created=0 skipped=2000 " in out


def test_engine_fit_scale(tmp_path):
    out = run_smoke("engine/fit_scale.py", tmp_path)
    for name in ("itemknn", "cooccurrence", "als"):
        assert f"  {name} " in out
    assert ("implicit-als" in out) != ("SKIPPED: the implicit-* fits" in out)


def test_engine_accuracy(tmp_path):
    # One dataset per script keeps the suite short: accuracy reads MovieLens, cold start Online Retail.
    out = run_smoke("engine/accuracy.py", tmp_path, "--datasets", "ml-latest-small",
                    "--json", str(tmp_path / "accuracy.json"))
    results = json.loads((tmp_path / "accuracy.json").read_text())
    assert [r["dataset"] for r in results] == ["ml-latest-small"]
    for result in results:
        rows = {row["algorithm"]: row for row in result["table"]}
        assert {"peer: EASE (numpy)", "ease", "temporal_ease", "two_tower (deep)",
                "hybrid (+ recency rows)"} <= set(rows)
        assert all(0 < row["ndcg"] <= 1 for row in rows.values())
    assert ("peer: implicit ALS" in out) != ("SKIPPED: the implicit peers" in out)


def test_engine_cold_start(tmp_path):
    out = run_smoke("engine/cold_start.py", tmp_path, "--datasets", "online-retail")
    assert "### online-retail: 60 cold items" in out
    assert "| two_tower " in out


def test_deep_models_accuracy(tmp_path):
    out = run_smoke("engine/deep_models.py", tmp_path, "accuracy", "--engines", "sequence", "two_tower",
                    "--datasets", "online-retail", "--json", str(tmp_path / "deep.json"))
    assert "== online-retail: peer EASE lambda=100.0 " in out  # the first point of the lambda grid
    rows = {row["engine"]: row for row in json.loads((tmp_path / "deep.json").read_text())}
    assert set(rows) == {"sequence", "two_tower"}
    for row in rows.values():
        assert 0 < row["test_ndcg_mean"] <= 1 and 0 < row["validation_ndcg"] <= 1
        assert len(row["epochs"]) == 1 and row["epochs"][0] <= 2  # one seed, the tiny models
    assert rows["two_tower"]["trend_kept"] == [None]  # no trend input
    assert rows["sequence"]["trend_kept"][0] in (True, False)  # the default trend input was checked
    assert "hidden_dim" in rows["two_tower"]["params"] and "max_length" in rows["sequence"]["params"]


def test_deep_models_staleness(tmp_path):
    out = run_smoke("engine/deep_models.py", tmp_path, "staleness", "--engines", "sequence",
                    "--datasets", "online-retail")
    rows = {row["engine"]: row for row in map(json.loads, re.findall(r"^\{.*\}$", out, re.M))}
    assert set(rows) == {"ease", "sequence"}, out[-2000:]
    for row in rows.values():
        assert all(0 < row[f"{split}_{label}"] <= 1 for split in ("test", "validation")
                   for label in ("all", "without_latest_20pct")), row


def test_sasrec_probe(tmp_path):
    out = run_smoke("engine/sasrec_probe.py", tmp_path, "--datasets", "online-retail",
                    "--params", '[{}, {"causal": false}]', "--json", str(tmp_path / "probe.json"))
    assert "== online-retail: peer EASE lambda=100.0 " in out
    rows = json.loads((tmp_path / "probe.json").read_text())
    assert [row["params"]["causal"] if "causal" in row["params"] else True for row in rows] == [True, False]
    for row in rows:
        assert row["engine"] == "sasrec_probe" and row["params"]["num_blocks"] == 1  # the smoke model
        assert 0 < row["test_ndcg_mean"] <= 1 and 0 < row["validation_ndcg"] <= 1
        assert row["epochs"] == [1]


def test_deep_models_refresh(tmp_path):
    out = run_smoke("engine/deep_models.py", tmp_path, "refresh", "--engine", "sequence",
                    "--datasets", "online-retail")
    result = json.loads(out.strip().splitlines()[-1])
    assert result["engine"] == "sequence" and result["dataset"] == "online-retail"
    assert result["users"] == 50 and result["epochs"] <= 2  # the smoke chunk, the tiny SequenceModel
    assert result["tensorflow_imported"] is False


def test_shelf(tmp_path):
    out = run_smoke("bench_shelf.py", tmp_path)
    for label in ("itemknn (old similar)", "cooccurrence (old bought together)", "similar (new)",
                  "complements llr (new)", "complements lift"):
        ndcg = re.search(rf"^  {re.escape(label)} +ndcg=([0-9.]+) hit_rate=", out, re.M)
        assert ndcg and 0 < float(ndcg[1]) <= 1, label
        assert re.search(rf"^  {re.escape(label)} +coverage=[01]\.\d+ distinct categories=", out, re.M), label
    assert re.search(r"^  overlap similar vs bought together, old: [01]\.\d+$", out, re.M)
    assert re.search(r"^  overlap similar vs bought together, new: [01]\.\d+; without the product-line rule: "
                     r"[01]\.\d+$", out, re.M)
    lines = dict(re.findall(r"^  (.+?) +first 5 cards of the item's own product line=([01]\.\d+); "
                            r"lists with two of one line=[01]\.\d+$", out, re.M))
    assert set(lines) == {"cooccurrence (old bought together)", "complements llr, no product-line rule",
                          "complements llr (new)"}, out[-2000:]
    assert float(lines["complements llr (new)"]) == 0.0
    assert re.search(r"^  complements llr \(new\) +first 5 cards .*lists with two of one line=0\.0000$", out, re.M)
    pages = dict(re.findall(r"^  product pages \(5 \+ 5 cards\) whose rows share a title, page rule (on|off): "
                            r"([01]\.\d+); cards in the second row [0-5]\.\d\d$", out, re.M))
    assert set(pages) == {"on", "off"} and float(pages["on"]) == 0.0, out[-2000:]
    reasons = re.search(r", (\d+) users with >= 3 items\): distinct reasons per card old=([0-9.]+) new=([0-9.]+) "
                        r"served=([0-9.]+); blocks with one reason on more than half the cards new=([0-9.]+) "
                        r"served=([0-9.]+)", out)
    assert reasons and int(reasons[1]) == 50, out[-2000:]
    assert all(0 < float(reasons[i]) <= 1 for i in (2, 3, 4)) and all(0 <= float(reasons[i]) <= 1 for i in (5, 6))
    assert float(reasons[4]) >= float(reasons[3])  # the serving's reordering only adds reasons to a block
    category = re.search(r"category pages \((\d+) blocks of 5, .*capped before the category filter=([0-9.]+), "
                         r"after it=([0-9.]+)$", out, re.M)
    assert category and int(category[1]) > 0, out[-2000:]
    assert float(category[3]) <= float(category[2])  # capping the filtered items never breaks the cap more often
    pages = re.findall(r"(list(?: \+ similar)?(?: \+ bought with)?): pages with any=([0-9.]+) mean=([0-9.]+)", out)
    assert [label for label, _s, _m in pages] == ["list", "list + similar", "list + similar + bought with"], out
    # each source adds candidates: never fewer personal cards
    assert [float(m) for _l, _s, m in pages] == sorted(float(m) for _l, _s, m in pages)
    waiting = re.search(r"with >= 3 designs of one line: designs over the cap wait for their source's end=([0-9.]+), "
                        r"for every source=([0-9.]+)$", out, re.M)
    assert waiting and float(waiting[2]) <= float(waiting[1]), out[-2000:]
    lines = re.search(r"^At most 2 designs of a product line \(SAME_LINE_CAP\): .* ndcg=([0-9.]+) -> ([0-9.]+); "
                      r"blocks of 5 with >= 3 of one line ([0-9.]+) -> ([0-9.]+); trending in a category "
                      r"\((\d+) categories\) ([0-9.]+) -> ([0-9.]+)", out, re.M)
    assert lines and 0 < float(lines[2]) <= 1 and int(lines[5]) > 0, out[-2000:]
    # with other lines among the top 50, no block of 5 keeps 3 designs of one line
    assert float(lines[4]) <= float(lines[3]) and float(lines[7]) <= float(lines[6])


@pytest.mark.services
@pytest.mark.parametrize("script", ["bench_track.py", "bench_import.py"])
def test_postgresql(script, postgres, tmp_path):
    env, database = postgres
    out = run_smoke(script, tmp_path, "--backend", "postgresql", "--database", database, env=env)
    assert "backend=postgresql " in out


@pytest.mark.services
def test_scale(postgres, tmp_path):
    """The SQL fill gives every NOT NULL column of the demo Product a value, then each engine fits."""
    env, database = postgres
    out = run_smoke("bench_scale.py", tmp_path, "--database", database, env=env)
    assert "filled 2,000 users, 500 items, 20,000 interactions" in out
    for name in ("popular", "cooccurrence", "itemknn", "als"):
        assert f"{name}: fit " in out


@pytest.mark.services
def test_serving(postgres, redis_url, tmp_path):
    env, database = postgres
    out = run_smoke("bench_serving.py", tmp_path, "--database", database, "--redis-url", redis_url, env=env)
    for engine in ("cached_db", "cache", "signed_cookies"):
        assert f"in process, {engine}: GET /recommender/api/recommendations/?limit=10 200" in out
    assert "stored blocks reused: p50" in out
    assert ("sessions: cached_db; wrk" in out) != ("SKIPPED: the HTTP measurements" in out)


@pytest.mark.services
def test_aggregates(postgres, tmp_path):
    env, database = postgres
    out = run_smoke("bench_aggregates.py", tmp_path, "--database", database, env=env)
    assert "filled 20,000 interactions" in out and "full rebuild:" in out
    assert "daily rows: 0" not in out
