"""Cart, checkout, orders and the login header."""

from decimal import Decimal

import pytest
from django.urls import reverse

from recommender.models import Interaction
from shopdemo.shop.cart import SESSION_KEY
from shopdemo.shop.models import Order, OrderLine


def add(client, product, quantity=1, **extra):
    return client.post(reverse("shop:cart_add", args=[product.pk]), {"quantity": quantity, **extra})


def cart_of(client):
    return client.session.get(SESSION_KEY, {})


@pytest.mark.django_db
def test_add_to_cart_records_interaction(client, catalog):
    mug = catalog[0]
    response = add(client, mug, 3, source="product")
    assert response.status_code == 302
    assert cart_of(client) == {str(mug.pk): 3}
    row = Interaction.objects.get(event="add_to_cart")
    assert row.item_id == mug.pk
    assert row.value == 3
    assert row.context == "product"
    assert row.user is None and row.session_key  # an anonymous visitor's session
    add(client, mug, 2)
    assert cart_of(client) == {str(mug.pk): 5}
    response = client.get(reverse("shop:cart"))
    assert response.context["cart_count"] == 5
    assert response.context["cart"].total == mug.price * 5


@pytest.mark.django_db
def test_add_to_cart_needs_post_and_valid_quantity(client, catalog):
    mug = catalog[0]
    assert client.get(reverse("shop:cart_add", args=[mug.pk])).status_code == 405
    response = add(client, mug, 0)
    assert response.status_code == 302
    assert cart_of(client) == {}
    add(client, mug, "lots")
    assert cart_of(client) == {}
    assert not Interaction.objects.exists()


@pytest.mark.django_db
def test_add_redirects_to_safe_next_only(client, catalog):
    mug = catalog[0]
    response = add(client, mug, 1, next="/category/mugs/")
    assert response["Location"] == "/category/mugs/"
    response = add(client, mug, 1, next="https://evil.example/")
    assert response["Location"] == reverse("shop:cart")


@pytest.mark.django_db
def test_update_quantity(client, catalog):
    mug = catalog[0]
    add(client, mug, 2)
    client.post(reverse("shop:cart_update", args=[mug.pk]), {"quantity": 5})
    assert cart_of(client) == {str(mug.pk): 5}
    assert Interaction.objects.filter(event="add_to_cart").order_by("id").last().value == 3
    client.post(reverse("shop:cart_update", args=[mug.pk]), {"quantity": 1})
    assert cart_of(client) == {str(mug.pk): 1}
    removed = Interaction.objects.get(event="remove_from_cart")
    assert removed.value == 4 and removed.context == "cart"
    client.post(reverse("shop:cart_update", args=[mug.pk]), {"quantity": 0})
    assert cart_of(client) == {}
    # Updating a product that is not in the cart changes nothing.
    response = client.post(reverse("shop:cart_update", args=[catalog[1].pk]), {"quantity": 2}, follow=True)
    assert cart_of(client) == {}
    assert "not in your cart" in response.content.decode()


@pytest.mark.django_db
def test_remove_from_cart(client, catalog):
    mug, other = catalog[0], catalog[1]
    add(client, mug, 4)
    add(client, other, 1)
    response = client.post(reverse("shop:cart_remove", args=[mug.pk]), follow=True)
    assert cart_of(client) == {str(other.pk): 1}
    row = Interaction.objects.get(event="remove_from_cart")
    assert row.item_id == mug.pk and row.value == 4
    assert "Removed" in response.content.decode()
    # Removing again is harmless and records nothing.
    client.post(reverse("shop:cart_remove", args=[mug.pk]))
    assert Interaction.objects.filter(event="remove_from_cart").count() == 1


@pytest.mark.django_db
def test_cart_page_lists_items_and_total(client, catalog):
    add(client, catalog[0], 2)
    add(client, catalog[2], 1)
    response = client.get(reverse("shop:cart"))
    content = response.content.decode()
    assert catalog[0].title in content and catalog[2].title in content
    total = catalog[0].price * 2 + catalog[2].price
    assert f"£{total}" in content


@pytest.mark.django_db
def test_cart_drops_products_that_became_inactive(client, catalog):
    mug = catalog[0]
    add(client, mug, 1)
    mug.is_active = False
    mug.save()
    response = client.get(reverse("shop:cart"), follow=True)
    assert cart_of(client) == {}
    assert "no longer available" in response.content.decode()


@pytest.mark.django_db
def test_checkout_requires_login(client, catalog):
    add(client, catalog[0], 1)
    for method in (client.get, client.post):
        response = method(reverse("shop:checkout"))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    assert not Order.objects.exists()


@pytest.mark.django_db
def test_checkout_creates_order_and_purchase_interactions(client, catalog, alice):
    mug, bag = catalog[0], catalog[2]
    client.force_login(alice)
    add(client, mug, 2)
    add(client, bag, 1)
    response = client.get(reverse("shop:checkout"))
    assert response.status_code == 200
    assert "Place order" in response.content.decode()
    assert not Order.objects.exists()  # GET only shows the summary

    response = client.post(reverse("shop:checkout"))
    order = Order.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("shop:order_confirmation", args=[order.pk])
    assert order.user == alice
    assert order.total == mug.price * 2 + bag.price
    lines = {line.product_id: (line.quantity, line.price) for line in order.lines.all()}
    assert lines == {mug.pk: (2, mug.price), bag.pk: (1, bag.price)}
    purchases = Interaction.objects.filter(event="purchase", user=alice)
    assert {(p.item_id, p.value, p.context) for p in purchases} == {
        (mug.pk, 2, "checkout"), (bag.pk, 1, "checkout")}
    assert cart_of(client) == {}

    page = client.get(response["Location"])
    content = page.content.decode()
    assert "Thank you for your order" in content
    assert order.invoice_no in content


@pytest.mark.django_db
def test_invoice_numbers_are_unique(client, catalog, alice):
    client.force_login(alice)
    for _ in range(3):
        add(client, catalog[0], 1)
        client.post(reverse("shop:checkout"))
    invoices = list(Order.objects.values_list("invoice_no", flat=True))
    assert len(invoices) == len(set(invoices)) == 3


@pytest.mark.django_db
def test_invoice_number_clash_is_retried(client, catalog, alice, monkeypatch):
    from shopdemo.shop import views

    other = Order.objects.create(user=alice, invoice_no="W-TAKEN", created="2024-01-01T00:00Z")
    numbers = iter(["W-TAKEN", "W-FRESH"])
    monkeypatch.setattr(views, "new_invoice_no", lambda: next(numbers))
    client.force_login(alice)
    add(client, catalog[0], 1)
    client.post(reverse("shop:checkout"))
    assert Order.objects.exclude(pk=other.pk).get().invoice_no == "W-FRESH"
    assert OrderLine.objects.count() == 1


@pytest.mark.django_db
def test_checkout_with_empty_cart(client, alice):
    client.force_login(alice)
    response = client.post(reverse("shop:checkout"))
    assert response["Location"] == reverse("shop:cart")
    assert not Order.objects.exists()


@pytest.mark.django_db
def test_my_orders_are_private(client, catalog, alice, bob):
    order = Order.objects.create(user=alice, invoice_no="536365", created="2010-12-01T08:26Z",
                                 total=Decimal("5.00"))
    OrderLine.objects.create(order=order, product=catalog[0], quantity=2, price=Decimal("2.50"))
    client.force_login(alice)
    response = client.get(reverse("shop:orders"))
    assert "536365" in response.content.decode()
    assert client.get(reverse("shop:order", args=[order.pk])).status_code == 200

    client.force_login(bob)
    response = client.get(reverse("shop:orders"))
    assert "536365" not in response.content.decode()
    assert "not ordered anything" in response.content.decode()
    assert client.get(reverse("shop:order", args=[order.pk])).status_code == 404
    assert client.get(reverse("shop:order_confirmation", args=[order.pk])).status_code == 404

    client.logout()
    response = client.get(reverse("shop:orders"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_login_page_and_header(client, catalog, alice):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert 'name="username"' in response.content.decode()
    response = client.post(reverse("login"), {"username": "alice", "password": "pw-alice-123"})
    assert response.status_code == 302
    content = client.get(reverse("shop:home")).content.decode()
    assert "alice" in content
    assert f'action="{reverse("logout")}" method="post"' in content
    assert "csrfmiddlewaretoken" in content
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_cart_survives_login(client, catalog, alice):
    add(client, catalog[0], 2)
    client.post(reverse("login"), {"username": "alice", "password": "pw-alice-123"})
    assert cart_of(client) == {str(catalog[0].pk): 2}
    # The anonymous add_to_cart now belongs to alice (merged by the recommender at login).
    assert Interaction.objects.get(event="add_to_cart").user == alice


@pytest.mark.django_db
def test_admin_pages(admin_client, catalog, alice):
    order = Order.objects.create(user=alice, invoice_no="536999", created="2010-12-01T08:26Z")
    OrderLine.objects.create(order=order, product=catalog[0], quantity=1, price=Decimal("2.50"))
    for url in [reverse("admin:shop_product_changelist"), reverse("admin:shop_category_changelist"),
                reverse("admin:shop_order_changelist"),
                reverse("admin:shop_order_change", args=[order.pk]),
                reverse("admin:shop_product_change", args=[catalog[0].pk])]:
        assert admin_client.get(url).status_code == 200, url
    response = admin_client.get(reverse("admin:shop_product_changelist"), {"q": "10000"})
    assert response.context["cl"].result_count == 1
