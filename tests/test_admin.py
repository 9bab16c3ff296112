"""The interaction admin: filters, search, history panels, staff only, few queries."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from recommender import track


@pytest.fixture
def history(catalog, alice, bob):
    for product in catalog[:3]:
        track(alice, product, "view")
    track(alice, catalog[0], "purchase", value=2)
    track(bob, catalog[2], "add_to_cart", value=1)
    track("anon-session-key", catalog[1], "view")
    return catalog


@pytest.mark.django_db
def test_changelist_filters_and_search(admin_client, history):
    url = reverse("admin:recommender_interaction_changelist")
    response = admin_client.get(url)
    assert response.status_code == 200
    assert response.context["cl"].result_count == 6
    assert admin_client.get(url, {"event": "purchase"}).context["cl"].result_count == 1
    assert admin_client.get(url, {"q": "bob"}).context["cl"].result_count == 1
    assert admin_client.get(url, {"q": "Red Spotty"}).context["cl"].result_count == 2
    assert admin_client.get(url, {"q": "10002"}).context["cl"].result_count == 2  # stock code


@pytest.mark.django_db
def test_changelist_queries_do_not_grow_with_rows(admin_client, history, alice, catalog):
    url = reverse("admin:recommender_interaction_changelist")
    admin_client.get(url)
    with CaptureQueriesContext(connection) as few:
        admin_client.get(url)
    for _ in range(30):
        track(alice, catalog[1], "click")
    with CaptureQueriesContext(connection) as more:
        admin_client.get(url)
    assert len(more) == len(few)


@pytest.mark.django_db
def test_user_and_item_pages_show_history(admin_client, history, alice, catalog):
    page = admin_client.get(reverse("admin:auth_user_change", args=[alice.pk])).content.decode()
    assert "Latest interactions" in page and "Jumbo Shopper Bag" in page
    assert f"?user__id__exact={alice.pk}" in page
    page = admin_client.get(reverse("admin:shop_product_change", args=[catalog[2].pk])).content.decode()
    assert "Latest interactions" in page and "bob" in page
    assert f"?item__id__exact={catalog[2].pk}" in page


@pytest.mark.django_db
def test_admin_is_staff_only(client, alice, history):
    client.force_login(alice)
    response = client.get(reverse("admin:recommender_interaction_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
