"""Attribution of clicks, carts, purchases and revenue to blocks; impressions kept out of the history views."""

import datetime as dt

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from recommender import track
from recommender.analytics.attribution import BlockKey, format_context, parse_context, report
from recommender.models import Interaction

T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
EVENTS_URL = "/recommender/api/events/"


def at(hours):
    return T0 + dt.timedelta(hours=hours)


def test_context_format_round_trip():
    assert parse_context("similar_items:itemknn@42") == BlockKey("similar_items", "itemknn", 42)
    assert parse_context("trending:trending") == BlockKey("trending", "trending", 0)
    assert parse_context("category-page") == BlockKey("category-page", "", 0)
    assert parse_context("x:odd@name") == BlockKey("x", "odd@name", 0)
    for key in [BlockKey("bought_together", "complements", 7), BlockKey("trending", "trending", 0)]:
        assert parse_context(format_context(*key)) == key


@pytest.mark.django_db
def test_clicks_carts_purchases_and_revenue_per_block(catalog, alice, bob):
    red, blue, bag = catalog[:3]  # prices 2.50, 3.50, 4.50
    for item in (red, blue, bag):
        track(alice, item, "impression", context="recommended_for_you:hybrid", timestamp=at(0))
        track(bob, item, "impression", context="trending:trending", timestamp=at(0))
    track(alice, red, "click", context="recommended_for_you:hybrid", timestamp=at(1))
    track(alice, red, "add_to_cart", value=1, context="cart", timestamp=at(1.1))
    track(alice, red, "purchase", value=3, context="checkout", timestamp=at(2))
    track(bob, bag, "click", context="trending:trending", timestamp=at(1))
    track(bob, bag, "purchase", value=None, context="checkout", timestamp=at(3))   # None: one
    track(bob, blue, "purchase", value=1, context="checkout", timestamp=at(3))     # never clicked
    totals = report()
    assert totals[BlockKey("recommended_for_you", "hybrid", 0)] == {
        "impressions": 3, "clicks": 1, "add_to_carts": 1, "purchases": 1, "revenue": pytest.approx(7.5)}
    assert totals[BlockKey("trending", "trending", 0)] == {
        "impressions": 3, "clicks": 1, "add_to_carts": 0, "purchases": 1, "revenue": pytest.approx(4.5)}


@pytest.mark.django_db
def test_window_visitor_item_and_last_click(catalog, alice, bob):
    red, blue = catalog[:2]
    track(alice, red, "click", context="similar_items:itemknn", timestamp=at(0))
    track(alice, red, "click", context="trending:trending", timestamp=at(5))       # the last click wins
    track(alice, red, "purchase", value=1, timestamp=at(6))
    track(alice, blue, "click", context="similar_items:itemknn", timestamp=at(0))
    track(alice, blue, "purchase", value=1, timestamp=at(25))                      # 25 h: outside 24 h
    track(bob, red, "purchase", value=1, timestamp=at(6))                          # not bob's click
    track(alice, catalog[2], "purchase", value=1, timestamp=at(1))                 # another item
    totals = report()
    assert totals[BlockKey("trending", "trending", 0)]["purchases"] == 1
    assert totals[BlockKey("similar_items", "itemknn", 0)]["purchases"] == 0
    with override_settings(RECOMMENDER={"ITEM_MODEL": "shop.Product", "ATTRIBUTION_WINDOW_HOURS": 48}):
        assert report()[BlockKey("similar_items", "itemknn", 0)]["purchases"] == 1


@pytest.mark.django_db
def test_anonymous_click_then_purchase_after_login_is_attributed(catalog, alice):
    """The login merge gives the session's click to the user, whose purchase it then explains."""
    from django.contrib.auth.models import AnonymousUser
    from django.test import RequestFactory

    from recommender.tracking.events import ANON_SESSION_KEY, merge_anonymous

    track("anon-1", catalog[0], "click", context="bought_together:complements", timestamp=at(0))
    track("anon-2", catalog[0], "purchase", value=1, timestamp=at(1))              # another session
    assert report()[BlockKey("bought_together", "complements", 0)]["purchases"] == 0
    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    request.session = {ANON_SESSION_KEY: "anon-1"}
    merge_anonymous(request, alice)
    track(alice, catalog[0], "purchase", value=2, timestamp=at(2))
    assert report()[BlockKey("bought_together", "complements", 0)]["purchases"] == 1


@pytest.mark.django_db
def test_a_checkout_purchase_recorded_by_track_or_import_needs_no_context(catalog, alice, tmp_path):
    from django.core.management import call_command

    track(alice, catalog[1], "click", context="similar_items:itemknn", timestamp=at(0))
    path = tmp_path / "orders.csv"
    path.write_text(f"user_id,item_id,event,value,timestamp\n{alice.pk},{catalog[1].stock_code},purchase,2,"
                    f"{at(1).isoformat()}\n")
    call_command("recommender_import", str(path), verbosity=0)
    assert Interaction.objects.filter(event="purchase").count() == 1
    assert report()[BlockKey("similar_items", "itemknn", 0)]["revenue"] == pytest.approx(7.0)


# Impressions out of the history views ----------------------------------------------


@pytest.fixture
def busy_visit(catalog, alice):
    track(alice, catalog[0], "view", context="product")
    track(alice, catalog[1], "view", context="product")
    for _ in range(20):
        for item in catalog[:3]:
            track(alice, item, "impression", context="trending:trending")
    return alice


@pytest.mark.django_db
def test_api_history_leaves_out_impressions_unless_asked(busy_visit):
    cache.clear()
    api = APIClient()
    api.force_authenticate(busy_visit)
    assert {r["event"] for r in api.get(EVENTS_URL).data["results"]} == {"view"}
    assert {r["event"] for r in api.get(EVENTS_URL, {"event": "impression"}).data["results"]} == {"impression"}
    assert len(api.get(EVENTS_URL, {"include": "impressions"}).data["results"]) == 50  # a full page


@pytest.mark.django_db
def test_admin_list_and_history_panel_hide_impressions(admin_client, busy_visit):
    url = reverse("admin:recommender_interaction_changelist")
    assert admin_client.get(url).context["cl"].result_count == 2
    assert admin_client.get(url, {"impressions": "show"}).context["cl"].result_count == 62
    assert admin_client.get(url, {"impressions": "only"}).context["cl"].result_count == 60
    assert admin_client.get(url, {"event": "impression"}).context["cl"].result_count == 60
    page = admin_client.get(reverse("admin:auth_user_change", args=[busy_visit.pk])).content.decode()
    panel = page[page.index("Latest interactions"):]
    assert "Red Spotty Mug" in panel and "Blue Polka Mug" in panel
    assert "impression" not in panel


@pytest.mark.django_db
def test_a_beacon_of_impressions_is_one_insert_whatever_its_size(catalog, alice):
    """track.js posts all of a page's impressions in one request: the queries do not grow with them."""
    cache.clear()
    api = APIClient()
    api.force_authenticate(alice)

    def post(n):
        events = [{"item": catalog[i % 3].pk, "event": "impression", "context": "trending:trending"} for i in range(n)]
        with CaptureQueriesContext(connection) as queries:
            assert api.post(EVENTS_URL, {"events": events}, format="json").status_code == 201
        return [q["sql"] for q in queries]

    few, many = post(3), post(48)
    assert len(few) == len(many)
    assert sum(sql.startswith("INSERT") for sql in many) == 1
    assert Interaction.objects.filter(event="impression", timestamp__lte=timezone.now()).count() == 51
