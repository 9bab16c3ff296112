"""Set up Django for a benchmark on a fresh database (SQLite in a temp folder, or PostgreSQL),
and the options every benchmark shares (``--smoke``, ``--database``)."""

import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: The PostgreSQL server the benchmarks create their databases on (BENCH_POSTGRES_SERVER overrides it).
SERVER = os.environ.get("BENCH_POSTGRES_SERVER", "postgresql://postgres@127.0.0.1:5432")


def add_smoke(parser):
    """``--smoke``: tiny sizes, a few seconds, the same code path (tests/test_bench_smoke.py)."""
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes that run in seconds, through the same code (what the tests run)")


def add_database(parser, default="recommender_bench"):
    """``--database``: the PostgreSQL database to drop and create (default ``recommender_bench``)."""
    parser.add_argument("--database", default=default,
                        help=f"PostgreSQL database the benchmark drops and creates (default {default})")


def missing_tool(name, hint):
    """Print why a part is skipped when the tool ``name`` is not installed; True if it is missing."""
    if shutil.which(name):
        return False
    print(f"SKIPPED: {name} is not installed ({hint})", flush=True)
    return True


def setup(backend, name="recommender_bench", fresh=True, settings="shopdemo.settings"):
    """Point the demo settings at a new, empty database of ``backend`` and migrate it.

    ``fresh=False`` keeps an existing PostgreSQL database (to re-measure on the same data).
    """
    var = tempfile.mkdtemp(prefix="recommender-bench-")
    os.environ["SHOPDEMO_VAR_DIR"] = var
    os.environ["DJANGO_SETTINGS_MODULE"] = settings
    os.environ["DJANGO_DEBUG"] = "0"  # as in production: no query log
    # With DEBUG off the demo settings need a key of their own, and redirect to HTTPS unless told not to.
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-" + os.urandom(24).hex())
    os.environ.setdefault("DJANGO_HTTPS", "0")
    # With DEBUG off the demo wants a secret key of its own; gunicorn (bench_serving) inherits it.
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("DJANGO_HTTPS", "0")  # plain HTTP on loopback: no redirect to https://
    if backend == "postgresql" and not fresh:
        os.environ["DATABASE_URL"] = f"{SERVER}/{name}"
    elif backend == "postgresql":
        import psycopg
        from psycopg import sql

        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        os.environ["DATABASE_URL"] = f"{SERVER}/{name}"
    elif backend == "sqlite":
        os.environ["DATABASE_URL"] = f"sqlite:///{var}/bench.sqlite3"
    else:
        raise SystemExit(f"unknown backend {backend!r}: use sqlite or postgresql")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return var


def make_catalog(n_items, n_users):
    """Bulk-create a category, ``n_items`` products and ``n_users`` users; return their pks."""
    from decimal import Decimal

    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from shopdemo.shop.models import Category, Product

    category = Category.objects.create(name="Bench", slug="bench")
    Product.objects.bulk_create(
        [Product(stock_code=f"S{i}", title=f"Product {i}", category=category, price=Decimal("1.00"))
         for i in range(n_items)], batch_size=5000)
    password = make_password(None)
    User = get_user_model()
    User.objects.bulk_create([User(username=f"u{i}", password=password) for i in range(n_users)],
                             batch_size=5000)
    return (list(Product.objects.order_by("pk").values_list("pk", flat=True)),
            list(User.objects.order_by("pk").values_list("pk", flat=True)))
