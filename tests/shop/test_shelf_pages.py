"""The demo shop's recommendation blocks: which pages have them, what each one answers, the cards."""

import datetime as dt
import re

import pytest
from django.test import Client
from django.utils import timezone

import recommender
from recommender.models import Interaction, ServedList
from recommender.serving import published
from recommender.serving.candidates import category_subject
from recommender.training import services
from recommender.training.refresh import plan, refresh_chunk
from tests.serving import conftest as serving_fixtures
from tests.serving.conftest import ranked

pytestmark = pytest.mark.django_db
# the serving tests' fixtures: the bigger catalog, lists published by hand, a fresh cache
shelf, publish = serving_fixtures.shelf, serving_fixtures.publish
_fresh_cache_and_receivers = serving_fixtures._fresh_cache_and_receivers

BLOCK = re.compile(r'<section class="rec-block rec-block-(\w+)".*?</section>', re.S)


def blocks(html):
    """``[(block name, title, [item keys])]`` of the page's recommendation blocks, in order."""
    found = []
    for match in BLOCK.finditer(html):
        section = match.group(0)
        title = re.search(r'<h2 class="rec-block-title"[^>]*>(.*?)</h2>', section).group(1)
        found.append((match.group(1), title, [int(pk) for pk in re.findall(r'data-rec-click="(\d+)"', section)]))
    return found


@pytest.fixture
def small_category(shelf):
    """A category of three products, none of them in the site's top lists."""
    from shopdemo.shop.models import Category, Product

    cat = Category.objects.create(name="Clocks", slug="clocks")
    return [Product.objects.create(stock_code=f"3000{i}", title=f"Alarm Clock {i}", category=cat, price=7)
            for i in range(3)]


def test_new_visitor_home_has_one_trending_row_not_two(client, shelf, publish):
    publish("trending", "trending", {0: ranked([p for p in shelf if p.is_active])})
    found = blocks(client.get("/").content.decode())
    assert [(name, title) for name, title, _items in found] == [("recommended_for_you", "Trending now")]
    assert len(found[0][2]) == 5


def test_category_page_shows_trending_in_the_category_from_its_own_list(client, shelf, small_category, publish):
    # the site's list has no clock: before the category lists, the block had nothing to show
    publish("trending", "trending", {0: ranked([p for p in shelf if p.is_active]),
                                     small_category[0].category_id: ranked(small_category[::-1])})
    html = client.get("/category/clocks/").content.decode()
    found = blocks(html)
    assert [(name, title) for name, title, _items in found] == [("recommended_for_you", "Trending in Clocks")]
    assert found[0][2] == [p.pk for p in small_category[::-1]]
    # the README's tag itself, for a visitor whose own block came first
    html = client.get("/category/mugs/").content.decode()
    assert all(pk in [p.pk for p in shelf if p.category.slug == "mugs"] for pk in blocks(html)[0][2])


def test_category_page_personal_block_stays_in_the_category_then_trending(client, shelf, alice, publish):
    mugs = [p for p in shelf if p.category.slug == "mugs" and p.is_active]
    publish("for_user", "hybrid", {alice: ranked([shelf[8], mugs[0], shelf[9], mugs[1]])})
    publish("trending", "trending", {mugs[0].category_id: ranked(mugs)})
    client.force_login(alice)
    found = blocks(client.get("/category/mugs/").content.decode())
    assert [(name, title) for name, title, _items in found] == [
        ("recommended_for_you", "Recommended for you"), ("trending", "Trending in Mugs")]
    assert found[0][2][:2] == [mugs[0].pk, mugs[1].pk]  # her list, bags left out
    everything = found[0][2] + found[1][2]
    assert len(everything) == len(set(everything))  # no item twice on the page
    assert set(everything) <= {p.pk for p in mugs}


def test_search_page_block_leaves_out_the_results(client, shelf, publish):
    publish("trending", "trending", {0: ranked([p for p in shelf if p.is_active])})
    html = client.get("/search/?q=mug").content.decode()
    found = blocks(html)
    assert len(found) == 1 and found[0][2]
    mugs = {p.pk for p in shelf if "Mug" in p.title}
    assert not mugs & set(found[0][2])
    assert {p.pk for p in shelf if p.is_active} - mugs == set(found[0][2])


def test_order_confirmation_shows_what_customers_also_bought(client, shelf, alice, publish):
    publish("bought_together", "cooccurrence", {shelf[0]: ranked([shelf[5], shelf[9]])})
    client.force_login(alice)
    session = client.session
    session["cart"] = {str(shelf[0].pk): 1}
    session.save()
    response = client.post("/checkout/", follow=True)
    found = blocks(response.content.decode())
    assert [(name, items) for name, _title, items in found] == [("bought_together", [shelf[5].pk, shelf[9].pk])]
    order_url = response.redirect_chain[-1][0].replace("thanks/", "")
    assert not blocks(client.get(order_url).content.decode())  # the order's own page: no block


def test_recommendation_cards_add_to_the_cart(shelf, publish):
    """The card's button posts to the shop's cart with a CSRF token of this visitor, also when
    another visitor's request rendered (and stored) the block first."""
    publish("similar", "itemknn", {shelf[0]: ranked([shelf[4], shelf[5]])})
    first, second = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
    first.get(f"/product/{shelf[0].pk}/")
    html = second.get(f"/product/{shelf[0].pk}/").content.decode()
    card = html[html.index('class="rec-card"'):]
    form = re.search(r'<form class="rec-add" action="([^"]+)" method="post">(.*?)</form>', card, re.S)
    assert form.group(1) == f"/cart/add/{shelf[4].pk}/"
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', form.group(2)))
    assert fields["next"] == f"/product/{shelf[0].pk}/" and fields["source"] == "similar_items"
    assert "Add to cart" in form.group(2)
    response = second.post(form.group(1), fields)
    assert response.status_code == 302 and response.url == f"/product/{shelf[0].pk}/"
    assert second.session["cart"] == {str(shelf[4].pk): 1}
    added = Interaction.objects.get(event="add_to_cart")
    assert (added.item_id, added.context) == (shelf[4].pk, "similar_items")


def test_cards_look_like_the_shop_cards(client, shelf, publish):
    publish("trending", "trending", {0: ranked([shelf[4]])})
    html = client.get("/").content.decode()
    card = html[html.index('class="rec-card"'):html.index("</li>", html.index('class="rec-card"'))]
    # the product card's coloured tile (tint by the key's last digit), category, title and price
    assert f"rec-tint-{str(shelf[4].pk)[-1]} rec-no-image" in card
    assert '<span class="rec-category">Mugs</span>' in card
    assert '<span class="rec-name">Mug 4</span>' in card and "£9.00" in card
    css = open("shopdemo/shop/static/shop/shop.css").read()
    for digit in range(10):
        tint = re.search(rf"\.tint-{digit} {{ background: (#\w+); }}", css).group(1)
        assert f".rec-tint-{digit} {{ background-color: {tint}; }}" in css


def test_refresh_publishes_a_list_per_category(settings, tmp_path, shelf, small_category, alice, bob):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "ARTIFACT_DIR": str(tmp_path / "artifacts"),
                            "SERVED_LIST_LENGTH": 2}
    t0 = timezone.now() - dt.timedelta(days=3)
    popular = shelf[4:10] + small_category[:1]
    Interaction.objects.bulk_create([
        Interaction(user=user, item=item, event="purchase", timestamp=t0 + dt.timedelta(hours=i))
        for user in (alice, bob) for i, item in enumerate(popular)])
    recommender.track(alice, shelf[0], "view")
    run = services.train(services.enqueue_training(["popular"])[0].pk, refresh=False)
    run_id, chunks = plan("popular")
    for kind, start, stop in chunks:
        refresh_chunk("popular", run_id, kind, start, stop)
    assert len(published.read("popular", "popular", 0)) == 2
    by_category = {row.subject: [pk for pk, *_ in row.items]
                   for row in ServedList.objects.filter(kind="popular", algorithm="popular").exclude(subject=0)}
    clocks, mugs, bags = small_category[0].category, shelf[0].category, shelf[8].category
    assert by_category[category_subject(clocks)] == [small_category[0].pk]  # only items with a score
    assert set(by_category[category_subject(mugs)]) <= {p.pk for p in shelf if p.category == mugs}
    assert len(by_category[category_subject(mugs)]) == 2
    assert set(by_category[category_subject(bags)]) <= {p.pk for p in shelf[8:10]}
    assert run.is_active


def test_category_subjects():
    assert category_subject(None) == 0 and category_subject("") == 0
    assert category_subject(7) == 7 and category_subject("7") == 7
    text = category_subject("Home > Kitchen")
    assert text < 0 and text == category_subject("Home > Kitchen") != category_subject("Home > Garden")
    assert category_subject(0) < 0  # never the site-wide subject
