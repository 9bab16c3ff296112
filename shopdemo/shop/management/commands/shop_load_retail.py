"""Load the UCI Online Retail data set into the demo shop.

    python manage.py shop_load_retail [--path FILE.csv.gz] [--limit-customers N]
                                      [--password demo1234] [--no-admin]

What it creates (see datasets/online-retail/SOURCE.md for the data):

* Cleaning: rows with no CustomerID, cancellations (InvoiceNo starting with "C"),
  Quantity <= 0, UnitPrice <= 0 and non-product stock codes are dropped. Product codes
  start with a digit; the others (POST, DOT, M, D, C2, S, B, BANK CHARGES, AMAZONFEE,
  CRUK, PADS, DCGS..., gift_0001_...) are postage, fees, adjustments and vouchers. Two
  numeric codes are charges too and are dropped by name ("Next Day Carriage",
  "PACKING CHARGE"), as is the "High Resolution Image" entry.
* Products: one per stock code. The title is the code's most frequent description in
  title case; the description is the original name and the derived category; the
  price is the most common (mode) unit price. Categories come from
  ``shopdemo.shop.categories`` (ordered keyword rules).
* Users: one per customer, username ``customer<CustomerID>`` (e.g. customer17850), all
  with the same password (default ``demo1234``, hashed once).
* Orders: one per invoice (created = InvoiceDate, UTC). Order lines are aggregated per
  (invoice, product) with the quantities summed and the unit price of the first row.
* Interactions: one ``purchase`` per order line (value = quantity, timestamp = invoice
  date) through ``recommender.tracking.importer.import_rows``.
* A superuser ``admin`` with password ``admin`` when no superuser exists yet (a demo
  convenience; ``--no-admin`` skips it). Change it on any shared machine.

Running it twice adds nothing: existing categories, products, users and orders (by
invoice number) are kept as they are, and the importer skips interactions it already
stored. After changing the category rules, ``--recategorize`` moves the products already
loaded to their new categories.
"""

import csv
import datetime as dt
import gzip
import io
import re
import time
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from recommender.tracking import importer
from shopdemo.shop.categories import CATEGORY_NAMES, categorize, category_slug
from shopdemo.shop.models import Category, Order, OrderLine, Product

DEFAULT_PATH = Path(settings.BASE_DIR) / "datasets" / "online-retail" / "online_retail.csv.gz"
DEFAULT_PASSWORD = "demo1234"
USERNAME_PREFIX = "customer"
BATCH = 5000
NON_PRODUCT_DESCRIPTIONS = {"next day carriage", "packing charge", "high resolution image"}
CENT = Decimal("0.01")

_SMALL_WORDS = {"a", "an", "and", "as", "at", "by", "for", "in", "of", "on", "or", "the", "to",
                "with", "w"}
_UPPER_WORDS = {"uk", "usa", "led", "diy", "abc", "dvd", "cd", "tv", "ii", "iii", "i", "mop",
                "xl", "dof", "pc", "pcs", "s/4", "s/3", "s/2", "s/6", "b'fly"}


def nice_title(name):
    """``WHITE HANGING HEART T-LIGHT HOLDER`` -> ``White Hanging Heart T-Light Holder``.

    A trailing full stop (1,830 source rows, e.g. ``RED WOOLLY HOTTIE WHITE HEART.``) is
    dropped: the title is shown inside sentences ("Customers who bought ... also bought this").
    """
    words = re.sub(r"\s+", " ", name.strip().rstrip(".").rstrip()).split(" ")
    out = []
    for index, word in enumerate(words):
        low = word.lower()
        if low in _UPPER_WORDS:
            out.append(word.upper())
        elif index and low in _SMALL_WORDS:
            out.append(low)
        else:
            # Capitalise each run of letters that starts a word part (after "-", "/", "(",
            # '"' ...), but not letters following a digit (30cm) or an apostrophe (mum's).
            out.append(re.sub(
                r"(?<![A-Za-z0-9'’])([a-z])",
                lambda m: m.group(1).upper(),
                low,
            ))
    return " ".join(out)


def to_money(text):
    value = Decimal(text).quantize(CENT, rounding=ROUND_HALF_UP)
    return max(value, CENT)


def is_product_row(row):
    """Whether a CSV row is a real, kept sale of a product (see the module docstring)."""
    if not row["CustomerID"] or row["InvoiceNo"].startswith(("C", "c")):
        return False
    code = row["StockCode"].strip()
    if not code[:1].isdigit():
        return False
    if row["Description"].strip().lower() in NON_PRODUCT_DESCRIPTIONS:
        return False
    try:
        return int(row["Quantity"]) > 0 and Decimal(row["UnitPrice"]) > 0
    except (ValueError, ArithmeticError):
        return False


class RetailData:
    """What one pass over the CSV collects, cleaned and aggregated."""

    def __init__(self):
        self.rows = 0
        self.kept = 0
        self.descriptions = {}  # stock code -> Counter of descriptions
        self.prices = {}  # stock code -> Counter of unit price strings
        self.customers = {}  # customer id -> username, in order of first purchase
        self.invoices = {}  # invoice no -> (customer id, created)
        self.lines = {}  # (invoice no, stock code) -> [quantity, unit price, first csv line]


def parse_date(text):
    return dt.datetime.strptime(text.strip()[:16], "%Y-%m-%d %H:%M").replace(tzinfo=dt.UTC)


class Command(BaseCommand):
    help = "Load the UCI Online Retail data set (products, customers, orders, purchase interactions)."

    def add_arguments(self, parser):
        parser.add_argument("--path", default=str(DEFAULT_PATH),
                            help="The CSV (.csv or .csv.gz) to load. Default: %(default)s")
        parser.add_argument("--limit-customers", type=int, default=None, metavar="N",
                            help="Load only the history of the first N customers of the file.")
        parser.add_argument("--password", default=DEFAULT_PASSWORD,
                            help="Password of every customer account. Default: %(default)s")
        parser.add_argument("--no-admin", action="store_true",
                            help="Do not create the demo superuser admin/admin.")
        parser.add_argument("--recategorize", action="store_true",
                            help="Also apply the category rules again to products loaded before "
                                 "(after editing shopdemo/shop/categories.py).")

    def handle(self, *args, **options):
        path = Path(options["path"])
        if not path.exists():
            raise CommandError(f"No such file: {path}")
        limit = options["limit_customers"]
        if limit is not None and limit < 1:
            raise CommandError("--limit-customers must be at least 1.")
        self.show_progress = options["verbosity"] >= 1
        started = time.monotonic()

        data = self.read(path, limit)
        self.say(f"Read {data.rows:,} rows, kept {data.kept:,}: {len(data.customers):,} customers, "
                 f"{len(data.descriptions):,} products, {len(data.invoices):,} invoices, "
                 f"{len(data.lines):,} order lines.")

        categories = self.load_categories()
        products = self.load_products(data, categories)
        if options["recategorize"]:
            self.recategorize(data, categories)
        users = self.load_users(data, options["password"])
        orders, lines = self.load_orders(data, products, users)
        interactions = self.load_interactions(data)
        if not options["no_admin"]:
            self.ensure_admin()

        counts = Counter(Product.objects.filter(stock_code__in=list(data.descriptions))
                         .values_list("category__name", flat=True))
        self.say("Products per category:")
        for name in sorted(CATEGORY_NAMES, key=lambda n: (-counts.get(n, 0), n)):
            self.say(f"  {counts.get(name, 0):6,}  {name}")
        self.say(self.style.SUCCESS(
            f"Done in {time.monotonic() - started:.1f} s. Created {products['created']:,} products, "
            f"{users['created']:,} users, {orders:,} orders, {lines:,} order lines, "
            f"{interactions.created:,} interactions ({interactions.skipped:,} already there)."
        ))

    # Output -------------------------------------------------------------------

    def say(self, message):
        if self.show_progress:
            self.stdout.write(message)

    def bar(self, iterable=None, **kwargs):
        # disable=None: no bar when the output is not a terminal (logs, CI)
        return tqdm(iterable, disable=True if not self.show_progress else None, mininterval=1.0, **kwargs)

    # Reading ------------------------------------------------------------------

    def read(self, path, limit):
        data = RetailData()
        opener = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
        with opener as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
            reader = csv.DictReader(text)
            missing = {"InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate",
                       "UnitPrice", "CustomerID"} - set(reader.fieldnames or [])
            if missing:
                raise CommandError(f"{path} lacks the columns {', '.join(sorted(missing))}.")
            for row in self.bar(reader, desc="Reading", unit=" rows"):
                data.rows += 1
                if not is_product_row(row):
                    continue
                customer = row["CustomerID"].strip()
                if customer.endswith(".0"):
                    customer = customer[:-2]
                if customer not in data.customers:
                    if limit is not None and len(data.customers) >= limit:
                        continue
                    data.customers[customer] = f"{USERNAME_PREFIX}{customer}"
                data.kept += 1
                code = row["StockCode"].strip().upper()
                invoice = row["InvoiceNo"].strip()
                description = row["Description"].strip()
                if description:
                    data.descriptions.setdefault(code, Counter())[description] += 1
                else:
                    data.descriptions.setdefault(code, Counter())
                data.prices.setdefault(code, Counter())[row["UnitPrice"].strip()] += 1
                if invoice not in data.invoices:
                    data.invoices[invoice] = (customer, parse_date(row["InvoiceDate"]))
                key = (invoice, code)
                line = data.lines.get(key)
                if line is None:
                    data.lines[key] = [int(row["Quantity"]), to_money(row["UnitPrice"]), reader.line_num]
                else:
                    line[0] += int(row["Quantity"])
        return data

    # Loading ------------------------------------------------------------------

    def load_categories(self):
        with transaction.atomic():
            Category.objects.bulk_create(
                [Category(name=name, slug=category_slug(name)) for name in CATEGORY_NAMES],
                ignore_conflicts=True,
            )
        return dict(Category.objects.values_list("name", "pk"))

    def load_products(self, data, categories):
        existing = set(Product.objects.values_list("stock_code", flat=True))
        new = []
        for code, names in data.descriptions.items():
            if code in existing:
                continue
            original = names.most_common(1)[0][0] if names else code
            category = categorize(original)
            if category not in categories:  # a category renamed in the database
                category = Category.objects.get_or_create(
                    slug=category_slug(category), defaults={"name": category})[0].name
                categories[category] = Category.objects.get(name=category).pk
            price = to_money(data.prices[code].most_common(1)[0][0])
            new.append(Product(
                stock_code=code,
                title=nice_title(original)[:200],
                description=f"{original} (stock code {code}). Category: {category}.",
                category_id=categories[category],
                price=price,
                is_active=True,
            ))
        with transaction.atomic():
            Product.objects.bulk_create(new, batch_size=BATCH, ignore_conflicts=True)
        self.say(f"Products: {len(new):,} created, {len(data.descriptions) - len(new):,} already there.")
        return {"created": len(new)}

    def recategorize(self, data, categories):
        changed = []
        products = Product.objects.filter(stock_code__in=list(data.descriptions)).select_related("category")
        for product in products:
            names = data.descriptions[product.stock_code]
            original = names.most_common(1)[0][0] if names else product.stock_code
            name = categorize(original)
            if name in categories and product.category.name != name:
                product.category_id = categories[name]
                product.description = f"{original} (stock code {product.stock_code}). Category: {name}."
                changed.append(product)
        with transaction.atomic():
            Product.objects.bulk_update(changed, ["category", "description"], batch_size=BATCH)
        self.say(f"Recategorized: {len(changed):,} products moved to another category.")

    def load_users(self, data, password):
        User = get_user_model()
        existing = set(User.objects.filter(username__startswith=USERNAME_PREFIX)
                       .values_list("username", flat=True))
        todo = [name for name in data.customers.values() if name not in existing]
        if todo:
            hashed = make_password(password)  # once: hashing is deliberately slow
            with transaction.atomic():
                User.objects.bulk_create(
                    [User(username=name, password=hashed) for name in todo],
                    batch_size=BATCH, ignore_conflicts=True,
                )
        self.say(f"Users: {len(todo):,} created, {len(data.customers) - len(todo):,} already there "
                 f"(password {password!r}).")
        return {"created": len(todo)}

    def load_orders(self, data, products, users):
        User = get_user_model()
        user_pk = {}
        names = list(data.customers.values())
        for start in range(0, len(names), 900):
            user_pk.update(User.objects.filter(username__in=names[start:start + 900])
                           .values_list("username", "pk"))
        product_pk = dict(Product.objects.values_list("stock_code", "pk"))
        existing = set(Order.objects.values_list("invoice_no", flat=True))
        todo = [inv for inv in data.invoices if inv not in existing]
        todo_set = set(todo)
        totals = Counter()
        for (invoice, _code), (quantity, price, _line) in data.lines.items():
            if invoice in todo_set:
                totals[invoice] += quantity * price
        with transaction.atomic():
            Order.objects.bulk_create(
                [Order(user_id=user_pk[data.customers[data.invoices[inv][0]]], invoice_no=inv,
                       created=data.invoices[inv][1], total=totals[inv]) for inv in todo],
                batch_size=BATCH,
            )
            order_pk = {}
            for start in range(0, len(todo), 900):
                order_pk.update(Order.objects.filter(invoice_no__in=todo[start:start + 900])
                                .values_list("invoice_no", "pk"))
            batch, created = [], 0
            for (invoice, code), (quantity, price, _line) in self.bar(
                data.lines.items(), desc="Order lines", unit=" lines", total=len(data.lines)
            ):
                if invoice not in todo_set:
                    continue
                batch.append(OrderLine(order_id=order_pk[invoice], product_id=product_pk[code],
                                       quantity=quantity, price=price))
                if len(batch) >= BATCH:
                    OrderLine.objects.bulk_create(batch)
                    created += len(batch)
                    batch = []
            OrderLine.objects.bulk_create(batch)
            created += len(batch)
        self.say(f"Orders: {len(todo):,} created with {created:,} lines, "
                 f"{len(data.invoices) - len(todo):,} already there.")
        return len(todo), created

    def load_interactions(self, data):
        def rows():
            seen = set()
            for (invoice, code), (quantity, _price, line_no) in data.lines.items():
                customer, when = data.invoices[invoice]
                row = (line_no, data.customers[customer], code, "purchase", float(quantity), when)
                # The same purchase on a second invoice in the same minute is a purchase too:
                # the invoice tells the rows apart. Only repeats carry it, so that databases
                # loaded before keep their keys and a second load still adds nothing.
                ref = invoice if row[1:] in seen else ""
                seen.add(row[1:])
                yield (*row, ref)

        progress = self.bar(desc="Interactions", unit=" rows", total=len(data.lines))
        done = [0]

        def report(count):
            progress.update(count - done[0])
            done[0] = count

        try:
            result = importer.import_rows(rows(), item_field="stock_code", user_field="username",
                                          batch_size=BATCH, progress=report)
        except importer.ImportFailed as exc:
            raise CommandError(f"Importing the purchase interactions failed:\n{exc}") from exc
        finally:
            progress.close()
        self.say(f"Interactions: {result.created:,} created, {result.skipped:,} already there.")
        return result

    def ensure_admin(self):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        if User.objects.filter(username="admin").exists():
            self.say(self.style.WARNING("A user 'admin' exists but is no superuser; not changed."))
            return
        User.objects.create_superuser("admin", "", "admin")
        self.say(self.style.WARNING(
            "Created the demo superuser admin / admin. Change its password on a shared machine."))
