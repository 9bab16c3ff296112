"""Set up Django for a benchmark on a fresh database: SQLite (temp file) or PostgreSQL."""

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

def setup(backend, name="recommender_bench", fresh=True):
    """Point the demo settings at a new, empty database of ``backend`` and migrate it.

    ``fresh=False`` keeps an existing PostgreSQL database (to re-measure on the same data).
    """
    var = tempfile.mkdtemp(prefix="recommender-bench-")
    os.environ["SHOPDEMO_VAR_DIR"] = var
    os.environ["DJANGO_SETTINGS_MODULE"] = "shopdemo.settings"
    os.environ["DJANGO_DEBUG"] = "0"  # as in production: no query log
    if backend == "postgresql" and not fresh:
        os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{name}"
    elif backend == "postgresql":
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
        os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{name}"
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
