"""The training run that served a block reaches its impressions, clicks and daily rows.

The served lists carry their run to the request path; a block's links write it into their
context (``<block>:<algorithm>@<run>``), track.js posts that context with each impression
and click, and the aggregation files the rows under the run.
"""

import datetime as dt
import json
import re
from html.parser import HTMLParser

import pytest
from django.core.cache import cache
from django.db import connection
from django.template import Context, Template
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from recommender import track
from recommender.analytics import aggregates
from recommender.analytics.attribution import BlockKey, format_context, parse_context
from recommender.models import DailyBlockStats, Interaction, TrainingRun
from recommender.serving import published
from recommender.tracking.csvformat import MAX_RUN, clean_context
from recommender.tracking.events import TrackingError
from recommender.tracking.importer import ImportFailed, import_rows
from recommender.training import services
from recommender.training.refresh import plan, refresh_chunk

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _trained_settings(tmp_path, settings):
    settings.RECOMMENDER = {
        **settings.RECOMMENDER, "ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "ALGORITHMS": {"itemknn": {"class": "recommender.engine.neighbors.ItemKNN", "params": {"k": 10}}},
    }
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def history(catalog, alice, bob, django_user_model):
    """Six shoppers, each touching six of eight items over the last month."""
    from shopdemo.shop.models import Product

    users = [alice, bob] + [django_user_model.objects.create_user(f"s{i}") for i in range(4)]
    extra = [Product.objects.create(stock_code=f"2000{i}", title=f"Extra {i}", category=catalog[0].category,
                                    price=1) for i in range(5)]
    items = catalog[:3] + extra
    t0 = timezone.now() - dt.timedelta(days=30)
    Interaction.objects.bulk_create([
        Interaction(user=user, item=items[(u + step) % len(items)], event="purchase" if step % 2 else "view",
                    timestamp=t0 + dt.timedelta(hours=u * 10 + step))
        for u, user in enumerate(users) for step in range(6)])
    return users


def train_and_publish():
    """A new itemknn run, trained on the history and its lists published, as the refresh does."""
    run = services.train(TrainingRun.objects.create(algorithm="itemknn").pk, refresh=False)
    assert run.is_active
    run_id, chunks = plan("itemknn")
    assert run_id == run.pk
    assert sum(refresh_chunk("itemknn", run.pk, kind, start, stop) for kind, start, stop in chunks) > 0
    return run


class Page(HTMLParser):
    """What track.js reads from a page: its endpoint and token, the blocks and the links."""

    def __init__(self, html):
        super().__init__()
        self.endpoint = self.csrf = None
        self.blocks, self.links = [], []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and "data-endpoint" in attrs:
            self.endpoint, self.csrf = attrs["data-endpoint"], attrs["data-csrf"]
        if "data-rec-impression" in attrs:
            self.blocks.append((attrs["data-rec-impression"], attrs.get("data-rec-context") or "", []))
        if "data-rec-click" in attrs:
            link = (attrs["data-rec-click"], attrs.get("data-rec-context") or "")
            self.links.append(link)
            if self.blocks:
                self.blocks[-1][2].append(link)

    def impressions(self):
        """recordImpressions(): one impression per shown item, with its link's context."""
        events = []
        for pks, block_context, links in self.blocks:
            for pk in filter(None, pks.split(",")):
                context = next((c for item, c in links if item == pk and c), block_context)
                events.append({"item": pk, "event": "impression", "context": context})
        return events


def send(client, page, events):
    """send(): one event as an object, several as {"events": [...]}, with the page's CSRF token."""
    body = events[0] if len(events) == 1 else {"events": events}
    response = client.post(page.endpoint, json.dumps(body), content_type="application/json",
                           HTTP_X_CSRFTOKEN=page.csrf)
    assert response.status_code == 201, response.content
    return response


def visit(client, product):
    page = Page(client.get(f"/product/{product.pk}/").content.decode())
    assert page.endpoint and page.blocks
    return page


def test_impressions_clicks_and_sales_of_a_block_count_under_the_run_that_served_it(client, history, catalog):
    run = train_and_publish()
    alice = history[0]
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    page = visit(client, catalog[0])
    similar = [link for link in page.links if link[1].startswith("similar_items:")]
    assert similar and {context for _pk, context in similar} == {f"similar_items:itemknn@{run.pk}"}

    impressions = page.impressions()
    send(client, page, impressions)
    clicked_pk, clicked_context = similar[0]
    send(client, page, [{"item": clicked_pk, "event": "click", "context": clicked_context}])
    track(alice, int(clicked_pk), "purchase", value=2)
    aggregates.aggregate_daily()

    row = DailyBlockStats.objects.get(block="similar_items")
    assert (row.algorithm, row.run) == ("itemknn", run.pk)
    shown = sum(1 for event in impressions if event["context"].startswith("similar_items:"))
    assert (row.impressions, row.clicks, row.purchases) == (shown, 1, 1)
    assert not DailyBlockStats.objects.filter(run=0).exists()


def test_a_new_run_changes_the_run_of_newly_rendered_and_stored_blocks(history, catalog):
    first = train_and_publish()
    template = Template("{% load recommender_tags %}{% similar_items item n=3 %}")

    def render():
        request = RequestFactory().get("/")
        request.user = history[1]
        request.session = {}
        html = template.render(Context({"request": request, "item": catalog[0]}))
        return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)  # masked anew each time

    before = render()
    assert f"similar_items:itemknn@{first.pk}" in before
    with CaptureQueriesContext(connection) as queries:
        assert render() == before  # the stored block: no item or list query
    assert not [q for q in queries if "shop_product" in q["sql"] or "recommender_" in q["sql"]]
    items_before = list(published.read("similar", "itemknn", catalog[0].pk))

    second = train_and_publish()
    assert second.pk != first.pk and not TrainingRun.objects.get(pk=first.pk).is_active
    # the same history gives the same list: only its run tells the stored block is stale
    assert list(published.read("similar", "itemknn", catalog[0].pk)) == items_before
    after = render()
    assert f"similar_items:itemknn@{second.pk}" in after and f"@{first.pk}\"" not in after
    assert after.replace(f"@{second.pk}\"", f"@{first.pk}\"") == before


def render_similar(item, user):
    request = RequestFactory().get("/")
    request.user, request.session = user, {}
    return Template("{% load recommender_tags %}{% similar_items item n=3 %}").render(
        Context({"request": request, "item": item}))


def test_a_list_names_its_run_unless_it_has_none_without_thousand_separators(catalog, alice, settings):
    settings.USE_THOUSAND_SEPARATOR = True
    published.publish("similar", "itemknn", {catalog[0].pk: [[catalog[1].pk, 0.9, None]]})  # no run
    assert render_similar(catalog[0], alice).count('data-rec-context="similar_items:itemknn"') == 2
    run = TrainingRun.objects.create(pk=12345, algorithm="itemknn", status="succeeded")
    published.publish("similar", "itemknn", {catalog[0].pk: [[catalog[1].pk, 0.9, None]]}, run=run)
    html = render_similar(catalog[0], alice)
    assert html.count('data-rec-context="similar_items:itemknn@12345"') == 2  # the block and its link


def test_context_format_with_a_run_and_no_algorithm_round_trips():
    for key in [BlockKey("home", "", 9), BlockKey("similar_items", "itemknn", 42), BlockKey("home", "", 0)]:
        assert parse_context(format_context(*key)) == key


@pytest.mark.parametrize("context", ["similar_items:itemknn@-1", "similar_items:itemknn@1.5",
                                     "similar_items:itemknn@", "similar_items:itemknn@ 3",
                                     f"similar_items:itemknn@{MAX_RUN + 1}", "similar_items:itemknn@²"])
def test_a_bad_run_is_refused_by_track_and_the_import(context, catalog, alice):
    with pytest.raises(ValueError, match="training run"):
        clean_context("impression", context)
    with pytest.raises(TrackingError, match="training run"):
        track(alice, catalog[0], "impression", context=context)
    with pytest.raises(ImportFailed) as failed:
        import_rows([(2, alice.pk, catalog[0].pk, "click", "", "2026-01-01T00:00:00+00:00", "", context)],
                     item_field="pk", user_field="pk")
    assert [line for line, message in failed.value.errors if "training run" in message] == [2]
    assert not Interaction.objects.exists()
    # the context of other events is free text (docs/online-metrics.md)
    assert track(alice, catalog[0], "purchase", context=context).context == context


@pytest.mark.parametrize("context", ["similar_items:itemknn@0", f"similar_items:itemknn@{MAX_RUN}",
                                     "x:odd@name", "newsletter@2024", "similar_items:itemknn", ""])
def test_contexts_without_a_bad_run_are_accepted(context, catalog, alice):
    assert clean_context("click", context) == context
    assert track(alice, catalog[0], "impression", context=context).context == context


def test_an_unreadable_run_stored_earlier_does_not_stop_the_aggregation(catalog, alice):
    for context in (f"similar_items:itemknn@{10 ** 20}", "similar_items:itemknn@²", "similar_items:itemknn@7"):
        Interaction.objects.create(user=alice, item=catalog[0], event="impression", context=context,
                                   timestamp=timezone.now())
    aggregates.aggregate_daily()
    rows = set(DailyBlockStats.objects.values_list("algorithm", "run"))
    assert rows == {(f"itemknn@{10 ** 20}", 0), ("itemknn@²", 0), ("itemknn", 7)}


def test_the_events_api_refuses_a_bad_run_naming_the_context(catalog, alice):
    api = APIClient()
    api.force_authenticate(alice)
    bad = {"item": catalog[0].pk, "event": "impression", "context": "similar_items:itemknn@-1"}
    response = api.post("/recommender/api/events/", bad, format="json")
    assert response.status_code == 400
    assert response.json() == {"context": [
        "The training run '-1' after '@' is not an integer from 0 to 9223372036854775807."]}
    good = dict(bad, context="similar_items:itemknn@12")
    assert api.post("/recommender/api/events/", good, format="json").status_code == 201
