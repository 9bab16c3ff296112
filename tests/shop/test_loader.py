"""The shop_load_retail command on a small generated Online Retail file."""

import csv
import datetime as dt
import gzip
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from recommender.models import Interaction
from shopdemo.shop.management.commands.shop_load_retail import nice_title
from shopdemo.shop.models import Category, Order, OrderLine, Product

C = "UK"  # the country column is not used
HEADER = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
          "CustomerID", "Country"]
ROWS = [
    # Customer 17850: two invoices.
    ["536365", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", "6", "2010-12-01 08:26", "2.55", "17850", C],
    ["536365", "71053", "WHITE METAL LANTERN", "6", "2010-12-01 08:26", "3.39", "17850", C],
    # The same product again on the same invoice: one line with quantity 6 + 2.
    ["536365", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", "2", "2010-12-01 08:26", "2.55", "17850", C],
    ["536366", "22633", "HAND WARMER UNION JACK", "6", "2010-12-01 08:28", "1.85", "17850", C],
    # Customer 13047: one invoice, three products.
    ["536367", "84879", "ASSORTED COLOUR BIRD ORNAMENT", "32", "2010-12-01 08:34", "1.69", "13047", C],
    ["536367", "22086", "PAPER CHAIN KIT 50'S CHRISTMAS", "4", "2010-12-01 08:34", "2.95", "13047", C],
    ["536367", "71053", "WHITE METAL LANTERN ", "1", "2010-12-01 08:34", "4.25", "13047", C],
    # Dropped: a cancellation, postage, no customer (and no price), a negative quantity.
    ["C536379", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", "-1", "2010-12-01 09:41", "2.55", "17850", C],
    ["536370", "POST", "POSTAGE", "3", "2010-12-01 08:45", "18.00", "12583", "FR"],
    ["536414", "22139", "", "56", "2010-12-01 11:52", "0", "", C],
    ["536371", "22139", "RETROSPOT TEA SET CERAMIC 11 PC", "-2", "2010-12-01 09:00", "4.95", "12583", "FR"],
    ["536372", "23444", "Next Day Carriage", "1", "2010-12-01 09:01", "15.00", "12583", "FR"],
    # Customer 12583 (France): one real purchase, 2011 date.
    ["536373", "84029G", "KNITTED UNION FLAG HOT WATER BOTTLE", "6", "2011-01-04 10:00", "3.39", "12583",
     "FR"],
    ["536373", "71053", "WHITE METAL LANTERN", "2", "2011-01-04 10:00", "3.39", "12583", "FR"],
]


@pytest.fixture
def retail_csv(tmp_path):
    path = tmp_path / "online_retail.csv.gz"
    with gzip.open(path, "wt", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(ROWS)
    return path


def load(path, *args, **options):
    out = StringIO()
    call_command("shop_load_retail", "--path", str(path), *args, stdout=out, stderr=StringIO(),
                 **options)
    return out.getvalue()


@pytest.mark.django_db
def test_loader_counts(retail_csv):
    output = load(retail_csv, "--no-admin")
    User = get_user_model()
    assert sorted(User.objects.values_list("username", flat=True)) == [
        "customer12583", "customer13047", "customer17850"]
    assert Product.objects.count() == 6
    assert not Product.objects.filter(stock_code__in=["POST", "22139", "23444"]).exists()
    assert sorted(Order.objects.values_list("invoice_no", flat=True)) == [
        "536365", "536366", "536367", "536373"]
    assert OrderLine.objects.count() == 8
    assert Interaction.objects.filter(event="purchase").count() == 8
    assert not User.objects.filter(is_superuser=True).exists()
    assert "Products per category" in output


@pytest.mark.django_db
def test_loader_aggregates_lines_and_orders(retail_csv):
    load(retail_csv, "--no-admin")
    order = Order.objects.get(invoice_no="536365")
    assert order.user.username == "customer17850"
    assert order.created == dt.datetime(2010, 12, 1, 8, 26, tzinfo=dt.UTC)
    lines = {line.product.stock_code: (line.quantity, line.price) for line in order.lines.all()}
    assert lines == {"85123A": (8, Decimal("2.55")), "71053": (6, Decimal("3.39"))}
    assert order.total == Decimal("2.55") * 8 + Decimal("3.39") * 6

    heart = Product.objects.get(stock_code="85123A")
    purchase = Interaction.objects.get(item=heart)
    assert purchase.event == "purchase"
    assert purchase.value == 8
    assert purchase.user.username == "customer17850"
    assert purchase.timestamp == order.created


@pytest.mark.django_db
def test_loader_products_and_categories(retail_csv):
    load(retail_csv, "--no-admin")
    lantern = Product.objects.get(stock_code="71053")
    assert lantern.title == "White Metal Lantern"
    assert lantern.price == Decimal("3.39")  # the most common unit price, not 4.25
    assert "WHITE METAL LANTERN" in lantern.description
    assert lantern.is_active
    categories = dict(Product.objects.values_list("stock_code", "category__name"))
    assert categories == {
        "85123A": "Candles & Lighting",
        "71053": "Candles & Lighting",
        "22633": "Jewellery & Accessories",
        "84879": "Home Decor",
        "22086": "Christmas",
        "84029G": "Home Decor",
    }
    assert Category.objects.get(name="Tea & Coffee").slug == "tea-coffee"


@pytest.mark.django_db
def test_loader_is_idempotent(retail_csv):
    load(retail_csv, "--no-admin")
    counts = [m.objects.count() for m in (get_user_model(), Product, Category, Order, OrderLine, Interaction)]
    output = load(retail_csv, "--no-admin")
    assert [m.objects.count() for m in (get_user_model(), Product, Category, Order, OrderLine,
                                        Interaction)] == counts
    assert "0 interactions (8 already there)" in output


@pytest.mark.django_db
def test_loader_password_is_shared_and_documented(retail_csv):
    load(retail_csv, "--no-admin", "--password", "sesame-42")
    users = list(get_user_model().objects.filter(username__startswith="customer"))
    assert len({u.password for u in users}) == 1  # hashed once
    assert users[0].check_password("sesame-42")
    assert not users[0].is_staff


@pytest.mark.django_db
def test_loader_limit_customers(retail_csv):
    load(retail_csv, "--no-admin", "--limit-customers", "1")
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["customer17850"]
    assert Order.objects.count() == 2
    assert OrderLine.objects.count() == 3
    assert Product.objects.count() == 3
    assert Interaction.objects.count() == 3
    # Loading the rest later adds the other customers only.
    load(retail_csv, "--no-admin")
    assert Order.objects.count() == 4
    assert Interaction.objects.count() == 8


@pytest.mark.django_db
def test_loader_creates_admin_only_without_superuser(retail_csv, django_user_model):
    load(retail_csv)
    admin = django_user_model.objects.get(username="admin")
    assert admin.is_superuser and admin.check_password("admin")
    admin.set_password("changed")
    admin.save()
    load(retail_csv)
    admin.refresh_from_db()
    assert admin.check_password("changed")
    assert django_user_model.objects.filter(is_superuser=True).count() == 1


@pytest.mark.django_db
def test_loader_missing_file(tmp_path):
    with pytest.raises(CommandError):
        load(tmp_path / "nope.csv.gz")


@pytest.mark.parametrize("name, title", [
    ("WHITE HANGING HEART T-LIGHT HOLDER", "White Hanging Heart T-Light Holder"),
    ("SET OF 3 CAKE TINS PANTRY DESIGN", "Set of 3 Cake Tins Pantry Design"),
    ("MUM'S 30CM CLOCK", "Mum's 30cm Clock"),
    ("I LOVE LONDON MINI BACKPACK", "I Love London Mini Backpack"),
    ("RED WOOLLY HOTTIE WHITE HEART. ", "Red Woolly Hottie White Heart"),
])
def test_nice_title(name, title):
    assert nice_title(name) == title


@pytest.mark.django_db
def test_loader_recategorize(retail_csv):
    load(retail_csv, "--no-admin")
    lantern = Product.objects.get(stock_code="71053")
    kitchen = Category.objects.get(name="Kitchen & Dining")
    Product.objects.filter(pk=lantern.pk).update(category=kitchen)
    load(retail_csv, "--no-admin")  # without the flag: kept as it is
    lantern.refresh_from_db()
    assert lantern.category == kitchen
    output = load(retail_csv, "--no-admin", "--recategorize")
    lantern.refresh_from_db()
    assert lantern.category.name == "Candles & Lighting"
    assert "1 products moved" in output


@pytest.mark.django_db
def test_loader_keeps_the_same_purchase_on_two_invoices_in_the_same_minute(tmp_path):
    path = tmp_path / "online_retail.csv.gz"
    repeat = ["536368", "71053", "WHITE METAL LANTERN", "1", "2010-12-01 08:34", "3.39", "13047", C]
    with gzip.open(path, "wt", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows([*ROWS, repeat])
    load(path, "--no-admin")
    lantern = Product.objects.get(stock_code="71053")
    bought = Interaction.objects.filter(user__username="customer13047", item=lantern)
    assert [(i.value, i.timestamp) for i in bought] == [(1.0, dt.datetime(2010, 12, 1, 8, 34, tzinfo=dt.UTC))] * 2
    assert Interaction.objects.count() == OrderLine.objects.count() == 9
    assert "0 interactions (9 already there)" in load(path, "--no-admin")
