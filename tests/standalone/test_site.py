"""The app in a site that is not the demo: its own product model, field names and settings.

Run with ``--ds tests.standalone.settings`` (``./run tests`` does). Everything here goes
through the public surface a site uses: the settings dict, ``recommender.track``, the
events API, ``recommender_import`` / ``recommender_export``, ``recommender_train --sync``,
the template tags, the recommendation API and the admin.
"""

import csv
import io

import pytest
from django.core.management import call_command
from django.template import Context, Template
from django.test import RequestFactory
from rest_framework.test import APIClient

import recommender
from recommender.models import Interaction, TrainingRun

pytestmark = pytest.mark.django_db


def test_the_site_passes_the_system_checks():
    out = io.StringIO()
    call_command("check", stdout=out)
    assert "no issues" in out.getvalue()


@pytest.fixture
def shoppers(django_user_model):
    return [django_user_model.objects.create_user(f"shopper{i}", password="pw-123456") for i in range(12)]


def _history(shoppers, gadgets):
    # lamps with lamps, clocks with clocks: item 0 and 1 bought together by most shoppers
    for i, user in enumerate(shoppers):
        group = gadgets[0:3] if i % 2 == 0 else gadgets[3:6]
        for gadget in group[: 2 + i % 2]:
            recommender.track(user, gadget, "purchase")
        recommender.track(user, gadgets[6], "view")


def test_track_train_and_serve_with_the_sites_own_model(shoppers, gadgets):
    _history(shoppers, gadgets)
    call_command("recommender_train", "--sync", "--no-progress", "--algorithm", "popular",
                 "--algorithm", "itemknn", "--algorithm", "cooccurrence", stdout=io.StringIO())
    assert set(TrainingRun.objects.filter(is_active=True).values_list("algorithm", flat=True)) == {
        "popular", "itemknn", "cooccurrence"}

    api = APIClient()
    similar = api.get(f"/recommender/api/items/{gadgets[0].pk}/similar/", {"algorithm": "itemknn"}).json()
    items = [row["item"] for row in similar["results"]]
    assert items[0] == gadgets[1].pk  # bought with it by every lamp buyer
    first = similar["results"][0]
    assert first["title"] == "Gadget 1"  # ITEM_FIELDS["title"] = "name"
    assert float(first["price"]) == float(gadgets[1].cost)  # ITEM_FIELDS["price"] = "cost"
    assert gadgets[7].pk not in items  # on_sale=False is ITEM_FIELDS["available"]

    api.force_login(shoppers[1])  # a clock buyer: clocks, never what they bought
    mine = api.get("/recommender/api/recommendations/", {"algorithm": "itemknn"}).json()["results"]
    bought = set(Interaction.objects.filter(user=shoppers[1], event="purchase").values_list("item", flat=True))
    assert mine and not {row["item"] for row in mine} & bought


def test_template_tags_render_the_sites_items(shoppers, gadgets):
    _history(shoppers, gadgets)
    call_command("recommender_train", "--sync", "--no-progress", "--algorithm", "itemknn",
                 "--algorithm", "popular", stdout=io.StringIO())
    request = RequestFactory().get("/")
    request.user = shoppers[0]
    request.session = {}
    html = Template("{% load recommender_tags %}{% similar_items item n=3 algorithm='itemknn' %}").render(
        Context({"request": request, "item": gadgets[3]}))
    assert "Gadget 4" in html or "Gadget 5" in html
    assert "/gadgets/" in html  # the item's get_absolute_url


def test_events_api_and_own_history(shoppers, gadgets):
    api = APIClient()
    api.force_login(shoppers[0])
    response = api.post("/recommender/api/events/", [{"item": gadgets[0].pk, "event": "view"},
                                                     {"item": gadgets[1].pk, "event": "add_to_cart"}], format="json")
    assert response.status_code == 201, response.content
    recommender.track(shoppers[1], gadgets[2], "view")
    rows = api.get("/recommender/api/events/").json()["results"]
    assert sorted(row["item"] for row in rows) == sorted([gadgets[0].pk, gadgets[1].pk])


def test_csv_import_by_sku_and_export(shoppers, gadgets, tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("user_id,item_id,event,value,timestamp\n"
                    f"{shoppers[0].pk},G-001,purchase,2,2024-05-01T10:00:00Z\n"
                    f"{shoppers[1].pk},G-004,view,,1714557600\n")
    call_command("recommender_import", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    assert set(Interaction.objects.values_list("user__username", "item__sku", "event")) == {
        ("shopper0", "G-001", "purchase"), ("shopper1", "G-004", "view")}
    out = tmp_path / "out.csv"
    call_command("recommender_export", "-o", str(out), stdout=io.StringIO(), stderr=io.StringIO())
    rows = list(csv.DictReader(out.open()))
    assert sorted(row["item_id"] for row in rows) == ["G-001", "G-004"]


def test_admin_lists_interactions_of_the_sites_model(shoppers, gadgets, admin_client):
    recommender.track(shoppers[0], gadgets[0], "view")
    response = admin_client.get("/admin/recommender/interaction/")
    assert response.status_code == 200
    assert "Gadget 0" in response.content.decode()
    response = admin_client.get("/admin/recommender/interaction/", {"q": "shopper0"})
    assert response.status_code == 200
