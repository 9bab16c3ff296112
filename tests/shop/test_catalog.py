"""Catalog pages: home, category, search, product."""

from decimal import Decimal

import pytest
from django.urls import reverse

from shopdemo.shop.models import Category, Product


@pytest.fixture
def many_products(db):
    """36 active lanterns in one category, an active teapot in another, and an inactive lantern."""
    cat = Category.objects.create(name="Candles & Lighting", slug="candles-lighting")
    other = Category.objects.create(name="Tea & Coffee", slug="tea-coffee")
    products = [
        Product.objects.create(stock_code=f"2{i:04d}", title=f"Lantern {i:02d}",
                               description=f"LANTERN {i:02d} glass", category=cat,
                               price=Decimal("1.00") + i)
        for i in range(36)
    ]
    Product.objects.create(stock_code="30001", title="Teapot Blue", description="TEAPOT",
                           category=other, price=Decimal("9.95"))
    Product.objects.create(stock_code="30002", title="Lantern Retired", description="old lantern",
                           category=cat, price=Decimal("5.00"), is_active=False)
    return cat, other, products


@pytest.mark.django_db
def test_home_paginates_30_per_page(client, many_products):
    response = client.get(reverse("shop:home"))
    assert response.status_code == 200
    page = response.context["page_obj"]
    assert page.paginator.count == 37  # inactive product not counted
    assert len(response.context["products"]) == 30
    response = client.get(reverse("shop:home"), {"page": 2})
    assert len(response.context["products"]) == 7
    # An out-of-range page shows the last page instead of failing.
    response = client.get(reverse("shop:home"), {"page": 99})
    assert response.context["page_obj"].number == 2


@pytest.mark.django_db
def test_home_lists_categories_and_nav(client, many_products):
    cat, other, _ = many_products
    response = client.get(reverse("shop:home"))
    content = response.content.decode()
    assert cat.get_absolute_url() in content
    assert other.get_absolute_url() in content
    counts = {c.slug: c.product_count for c in response.context["categories"]}
    assert counts == {"candles-lighting": 36, "tea-coffee": 1}  # active products only


@pytest.mark.django_db
def test_inactive_products_are_hidden_everywhere(client, many_products):
    cat, _, _ = many_products
    retired = Product.objects.get(stock_code="30002")
    for url, params in [(reverse("shop:home"), {"page": 2}), (cat.get_absolute_url(), {"page": 2}),
                        (reverse("shop:search"), {"q": "retired"})]:
        response = client.get(url, params)
        assert "Lantern Retired" not in response.content.decode()
    assert client.get(retired.get_absolute_url()).status_code == 404
    response = client.post(reverse("shop:cart_add", args=[retired.pk]), {"quantity": 1})
    assert response.status_code == 404


@pytest.mark.django_db
def test_category_page(client, many_products):
    cat, other, _ = many_products
    response = client.get(other.get_absolute_url())
    assert response.status_code == 200
    assert [p.title for p in response.context["products"]] == ["Teapot Blue"]
    response = client.get(cat.get_absolute_url())
    assert response.context["page_obj"].paginator.count == 36
    assert all(p.category_id == cat.pk for p in response.context["products"])
    assert client.get(reverse("shop:category", args=["no-such-thing"])).status_code == 404


@pytest.mark.django_db
def test_sorting_by_price(client, many_products):
    cat, _, _ = many_products
    response = client.get(cat.get_absolute_url(), {"sort": "-price"})
    prices = [p.price for p in response.context["products"]]
    assert prices == sorted(prices, reverse=True)
    assert prices[0] == Decimal("36.00")
    # Unknown sort keys fall back to the name.
    response = client.get(cat.get_absolute_url(), {"sort": "drop table"})
    assert response.context["sort"] == "title"


@pytest.mark.django_db
def test_search_title_and_description(client, many_products):
    response = client.get(reverse("shop:search"), {"q": "teapot"})
    assert [p.stock_code for p in response.context["products"]] == ["30001"]
    # Description words match too, and every word must match.
    response = client.get(reverse("shop:search"), {"q": "glass lantern"})
    assert response.context["page_obj"].paginator.count == 36
    response = client.get(reverse("shop:search"), {"q": "glass teapot"})
    assert response.context["page_obj"].paginator.count == 0
    assert "No products match" in response.content.decode()


@pytest.mark.django_db
def test_search_is_paginated_and_keeps_query(client, many_products):
    response = client.get(reverse("shop:search"), {"q": "lantern"})
    assert response.context["page_obj"].paginator.num_pages == 2
    assert "q=lantern&amp;page=2" in response.content.decode()
    response = client.get(reverse("shop:search"), {"q": "lantern", "page": 2})
    assert len(response.context["products"]) == 6


@pytest.mark.django_db
def test_empty_search(client, many_products):
    response = client.get(reverse("shop:search"), {"q": "  "})
    assert response.status_code == 200
    assert response.context["page_obj"].paginator.count == 0


@pytest.mark.django_db
def test_product_page(client, catalog):
    mug = catalog[0]
    response = client.get(mug.get_absolute_url())
    assert response.status_code == 200
    content = response.content.decode()
    assert mug.title in content
    assert f"£{mug.price}" in content
    assert mug.category.name in content
    assert f'data-rec-view="{mug.pk}"' in content
    assert reverse("shop:cart_add", args=[mug.pk]) in content
    assert 'name="quantity"' in content
    assert client.get(reverse("shop:product", args=[999999])).status_code == 404


@pytest.mark.django_db
def test_product_pictures_or_the_placeholder(client, catalog):
    mug = catalog[0]
    assert 'src="/static/shop/placeholder.svg" alt="No photo available"' in client.get(
        mug.get_absolute_url()).content.decode()
    mug.image.name = "products/mug.png"
    mug.save()
    assert f'src="/media/products/mug.png" alt="{mug.title}"' in client.get(
        mug.get_absolute_url()).content.decode()


@pytest.mark.django_db
def test_product_links_record_clicks_with_context(client, catalog):
    content = client.get(reverse("shop:home")).content.decode()
    assert f'data-rec-click="{catalog[0].pk}" data-rec-context="home"' in content
    content = client.get(catalog[0].category.get_absolute_url()).content.decode()
    assert f'data-rec-context="category:{catalog[0].category.slug}"' in content
    # The tracking script is on every page.
    assert "recommender/track.js" in content


@pytest.mark.django_db
def test_static_assets_are_local(client, catalog):
    content = client.get(reverse("shop:home")).content.decode()
    assert "http://" not in content.replace("http://testserver", "")
    assert "https://" not in content
