"""Template tags and the demo shop's blocks: cards, reasons, tracking attributes, queries."""

import re

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.template import Context, Template
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

import recommender
from tests.serving.conftest import ranked

pytestmark = pytest.mark.django_db


def render(source, user=None, **context):
    request = RequestFactory().get("/")
    request.user = user or AnonymousUser()
    request.session = SessionStore()
    request.session.create()
    template = Template("{% load recommender_tags %}" + source)
    return template.render(Context({"request": request, **context})), request


def test_recommended_for_you_block(shelf, alice, publish):
    recommender.track(alice, shelf[0], "view")
    publish("for_user", "hybrid", {alice: [(shelf[4], 0.9, shelf[0]), (shelf[8], 0.8, None)]})
    html, _request = render('{% recommended_for_you n=8 currency="£" %}', user=alice)
    assert html.count('class="rec-card"') == 2
    assert f'data-rec-impression="{shelf[4].pk},{shelf[8].pk}"' in html
    assert 'data-rec-context="recommended_for_you:hybrid"' in html
    assert f'href="/product/{shelf[4].pk}/" data-rec-click="{shelf[4].pk}"' in html
    assert "Mug 4" in html and "£9.00" in html
    assert "Because you viewed Red Spotty Mug" in html and "Recommended for you" in html
    assert "recommender/placeholder.svg" in html


def test_cards_show_the_item_image_or_the_placeholder(shelf, alice, publish):
    shelf[4].image.name = "products/mug-4.png"
    shelf[4].save()
    publish("for_user", "hybrid", {alice: ranked([shelf[4], shelf[8]])})
    html, _request = render("{% recommended_for_you n=2 %}", user=alice)
    images = re.findall(r'<img src="([^"]+)"', html)
    assert images[0] == "/media/products/mug-4.png"     # MEDIA_URL + the file's name
    assert images[1].endswith("recommender/placeholder.svg")


def test_each_link_names_its_algorithm(shelf, alice, publish):
    publish("for_user", "hybrid", {alice: ranked([shelf[4]])})
    publish("trending", "trending", {0: ranked([shelf[9]])})
    html, _request = render("{% recommended_for_you n=2 %}", user=alice)
    assert f'data-rec-click="{shelf[4].pk}" data-rec-context="recommended_for_you:hybrid"' in html
    assert f'data-rec-click="{shelf[9].pk}" data-rec-context="recommended_for_you:trending"' in html


def test_item_blocks(shelf, publish):
    publish("similar", "itemknn", {shelf[0]: ranked(shelf[4:6])})
    publish("bought_together", "cooccurrence", {shelf[0]: ranked(shelf[8:10])})
    publish("trending", "trending", {0: ranked([shelf[10]])})
    source = "{% similar_items product n=6 %}{% bought_together product n=6 %}{% trending n=8 %}"
    html, _request = render(source, product=shelf[0])
    assert 'data-rec-context="similar_items:itemknn"' in html and "Similar to Red Spotty Mug" in html
    assert 'data-rec-context="bought_together:cooccurrence"' in html
    assert "Customers who bought Red Spotty Mug also bought this" in html
    assert 'data-rec-context="trending:trending"' in html and "Trending now" in html
    assert html.count("<section") == 3
    assert len(set(re.findall(r'id="(rec-[^"]+)"', html))) == 3  # unique ids on one page


def test_blocks_render_nothing_without_lists(shelf, alice):
    source = "{% recommended_for_you %}{% similar_items product %}{% bought_together product %}{% trending %}"
    html, _request = render(source, user=alice, product=shelf[0])
    assert html.strip() == ""


def test_blocks_of_a_page_do_not_repeat_items(shelf, alice, publish):
    publish("for_user", "hybrid", {alice: ranked(shelf[4:6])})
    publish("trending", "trending", {0: ranked([shelf[4], shelf[9]])})
    html, _request = render("{% recommended_for_you n=2 %}{% trending n=2 %}", user=alice)
    assert html.count(f'data-rec-click="{shelf[4].pk}"') == 1
    html, _request = render("{% recommended_for_you n=2 %}{% trending n=2 dedupe=False %}", user=alice)
    assert html.count(f'data-rec-click="{shelf[4].pk}"') == 2


def test_exclude_argument_forms(shelf, publish):
    publish("trending", "trending", {0: ranked(shelf[4:8])})
    html, _request = render('{% trending n=8 exclude="' + f"{shelf[4].pk},{shelf[5].pk}" + '" %}')
    assert f'data-rec-click="{shelf[4].pk}"' not in html and f'data-rec-click="{shelf[6].pk}"' in html
    html, _request = render("{% trending n=8 exclude=cart %}", cart=[shelf[6], shelf[7].pk])
    assert f'data-rec-click="{shelf[6].pk}"' not in html and f'data-rec-click="{shelf[4].pk}"' in html


def test_category_title(shelf, publish):
    publish("trending", "trending", {0: ranked([shelf[8], shelf[4]])})
    html, _request = render("{% trending category=cat %}", cat=shelf[8].category)
    assert "Trending in Bags" in html and f'data-rec-click="{shelf[4].pk}"' not in html


def test_block_queries_do_not_grow_with_items(shelf, alice, publish, settings):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "ITEM_CACHE_TIMEOUT": None}
    publish("for_user", "hybrid", {alice: ranked(shelf[4:8])})
    publish("similar", "itemknn", {shelf[0]: ranked(shelf[4:12])})
    source = "{% recommended_for_you n=4 cache=False %}{% similar_items product n=4 cache=False %}"
    render(source, user=alice, product=shelf[0])  # warms the user's facts
    with CaptureQueriesContext(connection) as queries:
        html, _request = render(source, user=alice, product=shelf[0])
    assert html.count('class="rec-card"') == 8  # the similar block repeats none of the first
    # session creation (1) + one item query per block, categories joined, no N+1
    item_queries = [q for q in queries if "shop_product" in q["sql"]]
    assert len(item_queries) == 2, [q["sql"] for q in queries]


# Stored blocks (recommender.fastpath.blocks) ----------------------------------------------------

PAGE = "{% similar_items product n=3 %}{% bought_together product n=3 %}{% recommended_for_you n=2 %}"


def _without_csrf(html):
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)


def _cards(html):
    return [int(pk) for pk in re.findall(r'data-rec-click="(\d+)"', html)]


def test_stored_blocks_render_the_same_page_without_queries(shelf, alice, publish):
    publish("similar", "itemknn", {shelf[0]: ranked(shelf[4:12])})
    publish("bought_together", "cooccurrence", {shelf[0]: ranked(shelf[4:12])})
    publish("for_user", "hybrid", {alice: ranked(shelf[4:12])})
    first, _request = render(PAGE, user=alice, product=shelf[0])
    with CaptureQueriesContext(connection) as queries:
        second, request = render(PAGE, user=alice, product=shelf[0])
    assert _without_csrf(second) == _without_csrf(first)  # each render masks the token anew
    # three blocks, eight different items: the stored blocks also fill the page's dedupe set
    assert _cards(second) == [p.pk for p in shelf[4:12]]
    assert request._recommender_shown == set(_cards(second))
    assert not [q for q in queries if "shop_product" in q["sql"] or "recommender_" in q["sql"]]


def test_stored_block_follows_its_list_items_and_purchases(shelf, alice, publish):
    publish("for_user", "hybrid", {alice: ranked(shelf[4:10])})
    source = "{% recommended_for_you n=2 %}"
    assert _cards(render(source, user=alice)[0]) == [shelf[4].pk, shelf[5].pk]
    publish("for_user", "hybrid", {alice: ranked(shelf[6:10])})  # a retrain
    assert _cards(render(source, user=alice)[0]) == [shelf[6].pk, shelf[7].pk]
    shelf[6].is_active = False  # an item goes out of stock
    shelf[6].save()
    assert _cards(render(source, user=alice)[0]) == [shelf[7].pk, shelf[8].pk]
    recommender.track(alice, shelf[7], "purchase")  # bought items are not recommended
    assert _cards(render(source, user=alice)[0]) == [shelf[8].pk, shelf[9].pk]


def test_item_blocks_are_shared_by_visitors_unless_they_exclude_an_item(shelf, alice, bob, publish):
    from django.contrib.auth import get_user_model

    carol = get_user_model().objects.create_user("carol", password="pw-carol-123")
    publish("similar", "itemknn", {shelf[0]: ranked(shelf[4:10])})
    recommender.track(bob, shelf[4], "purchase")
    source = "{% similar_items product n=2 %}"
    assert _cards(render(source, user=alice, product=shelf[0])[0]) == [shelf[4].pk, shelf[5].pk]
    with CaptureQueriesContext(connection) as queries:  # carol gets alice's stored block
        assert _cards(render(source, user=carol, product=shelf[0])[0]) == [shelf[4].pk, shelf[5].pk]
        assert _cards(render(source, product=shelf[0])[0]) == [shelf[4].pk, shelf[5].pk]  # anonymous
    assert not [q for q in queries if "shop_product" in q["sql"]]
    # bob bought one of its items: his block is made for him, and not stored for others
    assert _cards(render(source, user=bob, product=shelf[0])[0]) == [shelf[5].pk, shelf[6].pk]
    assert _cards(render(source, user=alice, product=shelf[0])[0]) == [shelf[4].pk, shelf[5].pk]
    # an item shown by an earlier block of the page, or excluded by the template, likewise
    assert _cards(render("{% similar_items product n=2 exclude=skip %}", user=alice, product=shelf[0],
                         skip=[shelf[4].pk])[0]) == [shelf[5].pk, shelf[6].pk]
    assert _cards(render(source, user=alice, product=shelf[0])[0]) == [shelf[4].pk, shelf[5].pk]


def test_blocks_of_a_page_do_not_repeat_a_title(shelf, alice, publish):
    """Another colour of a product an earlier block showed reads as the same card twice."""
    shelf[9].title = "MUG 5"  # a twin of shelf[5] (the title folded)
    shelf[9].save()
    publish("similar", "itemknn", {shelf[0]: ranked(shelf[4:6])})
    publish("bought_together", "cooccurrence", {shelf[0]: ranked([shelf[9], shelf[10], shelf[11]])})
    alone = "{% bought_together product n=2 %}"
    # alone, the bought-together block shows the twin, and is stored for every visitor
    assert _cards(render(alone, user=alice, product=shelf[0])[0]) == [shelf[9].pk, shelf[10].pk]
    page = "{% similar_items product n=2 %}" + alone
    for _ in range(2):  # made, then served from the stored blocks
        html, request = render(page, user=alice, product=shelf[0])
        assert _cards(html) == [shelf[4].pk, shelf[5].pk, shelf[10].pk, shelf[11].pk]
        assert request._recommender_shown_titles == {"mug 4", "mug 5", "bag 10", "bag 11"}
    # the stored block with the twin is still what the block alone shows
    with CaptureQueriesContext(connection) as queries:
        assert _cards(render(alone, product=shelf[0])[0]) == [shelf[9].pk, shelf[10].pk]
    assert not [q for q in queries if "shop_product" in q["sql"]]
    html, _request = render("{% similar_items product n=2 %}{% bought_together product n=2 dedupe=False %}",
                            product=shelf[0])
    assert _cards(html) == [shelf[4].pk, shelf[5].pk, shelf[9].pk, shelf[10].pk]


def test_stored_blocks_are_per_language_and_options(shelf, alice, publish):
    from django.utils import translation

    publish("similar", "itemknn", {shelf[0]: ranked(shelf[4:10])})
    publish("for_user", "hybrid", {alice: ranked(shelf[4:10])})
    assert _cards(render("{% similar_items product n=2 %}", product=shelf[0])[0]) == [shelf[4].pk, shelf[5].pk]
    assert _cards(render("{% similar_items product n=3 %}", product=shelf[0])[0]) == [
        shelf[4].pk, shelf[5].pk, shelf[6].pk]
    with translation.override("zh-hans"):
        html = render("{% similar_items product n=2 %}", product=shelf[0])[0]
    assert "相似" in html and "Similar items" not in html
    assert "Similar items" in render("{% similar_items product n=2 %}", product=shelf[0])[0]
    html = render('{% similar_items product n=2 title="Like this" currency="€" %}', product=shelf[0])[0]
    assert "Like this" in html and "€" in html
    # a personal block is the visitor's own: another user never gets it
    from django.contrib.auth import get_user_model

    dave = get_user_model().objects.create_user("dave", password="pw-dave-123")
    publish("for_user", "hybrid", {dave: ranked(shelf[8:10])})
    assert _cards(render("{% recommended_for_you n=2 %}", user=alice)[0]) == [shelf[4].pk, shelf[5].pk]
    assert _cards(render("{% recommended_for_you n=2 %}", user=dave)[0]) == [shelf[8].pk, shelf[9].pk]


def test_blocks_that_fell_back_are_not_stored(shelf, alice, publish):
    publish("for_user", "hybrid", {alice: ranked(shelf[4:5])})  # one item: the rest is trending
    publish("trending", "trending", {0: ranked(shelf[8:12])})
    source = "{% recommended_for_you n=3 %}"
    assert _cards(render(source, user=alice)[0]) == [shelf[4].pk, shelf[8].pk, shelf[9].pk]
    publish("trending", "trending", {0: ranked(shelf[10:12])})  # not part of the stored digest
    html, _request = render(source, user=alice)
    assert _cards(html) == [shelf[4].pk, shelf[10].pk, shelf[11].pk]


def test_cache_false_and_setting_off_render_every_time(shelf, alice, publish, settings, monkeypatch):
    from recommender import serving

    made = []
    original = serving.recommend_for
    monkeypatch.setattr(serving, "recommend_for", lambda *a, **k: made.append(1) or original(*a, **k))
    publish("for_user", "hybrid", {alice: ranked(shelf[4:8])})
    render("{% recommended_for_you n=2 %}", user=alice)
    render("{% recommended_for_you n=2 %}", user=alice)
    assert len(made) == 1  # the second render reused the stored block
    render("{% recommended_for_you n=2 cache=False %}", user=alice)
    assert len(made) == 2
    settings.RECOMMENDER = {**settings.RECOMMENDER, "BLOCK_CACHE_TIMEOUT": None}
    render("{% recommended_for_you n=2 %}", user=alice)
    assert len(made) == 3


def test_a_changed_template_is_not_served_from_the_store():
    from recommender.fastpath.blocks import template_digest

    assert template_digest(Template("<p>{{ a }}</p>")) != template_digest(Template("<p>{{ b }}</p>"))
    assert template_digest(Template("<p>{{ a }}</p>")) == template_digest(Template("<p>{{ a }}</p>"))


def test_track_js_posts_impressions():
    from django.contrib.staticfiles import finders

    script = open(finders.find("recommender/track.js")).read()
    assert "data-rec-impression" in script and '"impression"' in script
    assert finders.find("recommender/blocks.css") and finders.find("recommender/placeholder.svg")


# The demo shop --------------------------------------------------------------------------------


def test_home_shows_blocks_that_follow_browsing(client, shelf, publish):
    publish("similar", "itemknn", {shelf[2]: ranked(shelf[8:10])})
    publish("trending", "trending", {0: ranked([p for p in shelf if p.is_active])})
    html = client.get("/").content.decode()
    assert "recommender/blocks.css" in html
    # a new visitor has no picks of their own: one row, titled for what it is
    assert 'data-rec-context="recommended_for_you:trending"' in html
    assert 'data-rec-context="trending:trending"' not in html
    assert html.count('class="rec-block ') == 1
    assert "Trending now</h2>" in html and "Recommended for you</h2>" not in html
    assert "Because you viewed" not in html
    # the product page records the view (track.js posts it); then home changes at once
    client.get(f"/product/{shelf[2].pk}/")
    response = client.post("/recommender/api/events/", {"item": shelf[2].pk, "event": "view"},
                           content_type="application/json")
    assert response.status_code == 201
    html = client.get("/").content.decode()
    assert "Because you viewed Jumbo Shopper Bag" in html
    assert 'data-rec-context="recommended_for_you:itemknn"' in html
    # now two blocks, each under its own title, no item twice
    assert "Recommended for you</h2>" in html and "Trending now</h2>" in html
    assert 'data-rec-context="trending:trending"' in html
    cards = _cards(" ".join(re.findall(r'<section class="rec-block.*?</section>', html, re.S)))
    assert len(cards) == len(set(cards)) > 5


def test_logged_in_home(client, shelf, alice, publish):
    publish("for_user", "hybrid", {alice: ranked(shelf[4:6])})
    client.force_login(alice)
    html = client.get("/").content.decode()
    assert 'data-rec-context="recommended_for_you:hybrid"' in html


def test_product_page_blocks(client, shelf, publish):
    publish("similar", "itemknn", {shelf[0]: ranked([shelf[1], shelf[4]])})
    publish("bought_together", "cooccurrence", {shelf[0]: ranked([shelf[8], shelf[4]])})
    session = client.session
    session["cart"] = {str(shelf[4].pk): 1}
    session.save()
    html = client.get(f"/product/{shelf[0].pk}/").content.decode()
    assert "Similar items" in html and "Customers also bought" in html
    assert f'data-rec-click="{shelf[1].pk}"' in html and f'data-rec-click="{shelf[8].pk}"' in html
    assert f'data-rec-click="{shelf[4].pk}"' not in html  # in the cart


def test_cart_page_suggestions_leave_out_the_cart(client, shelf, publish):
    publish("bought_together", "cooccurrence", {
        shelf[0]: ranked([shelf[1], shelf[4]]), shelf[1]: ranked([shelf[0], shelf[9]])})
    publish("trending", "trending", {0: ranked([shelf[0], shelf[10]])})
    session = client.session
    session["cart"] = {str(shelf[0].pk): 1, str(shelf[1].pk): 2}
    session.save()
    html = client.get("/cart/").content.decode()
    block = html[html.index("rec-block-bought_together"):]
    assert f'data-rec-click="{shelf[4].pk}"' in block and f'data-rec-click="{shelf[9].pk}"' in block
    assert f'data-rec-click="{shelf[0].pk}"' not in block.split("</section>")[0]
    assert f'data-rec-click="{shelf[10].pk}"' in html  # recommended for you, cart left out
    for section in re.findall(r"<section class=\"rec-block.*?</section>", html, re.S):
        assert f'data-rec-click="{shelf[0].pk}"' not in section
        assert f'data-rec-click="{shelf[1].pk}"' not in section


def test_a_site_template_is_stored_per_visitor(shelf, alice, bob, publish, tmp_path, settings):
    (tmp_path / "mine.html").write_text("{{ request.user.username }}:{% for rec in recommendations %}"
                                        "{{ rec.item.pk }} {% endfor %}")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [str(tmp_path)]}]
    publish("similar", "itemknn", {shelf[0]: ranked(shelf[4:10])})
    source = '{% similar_items product n=2 template="mine.html" %}'
    assert render(source, user=alice, product=shelf[0])[0].startswith("alice:")
    assert render(source, user=bob, product=shelf[0])[0].startswith("bob:")  # not alice's block
    assert render(source, user=alice, product=shelf[0])[0].startswith("alice:")


# Each block answers its own question ---------------------------------------------------------


def test_a_block_with_nothing_personal_is_titled_trending_and_replaces_the_trending_block(shelf, alice, publish):
    publish("trending", "trending", {0: ranked(shelf[4:12])})
    html, _request = render("{% recommended_for_you n=2 %}{% trending n=2 %}")  # a new visitor
    assert html.count("<section") == 1
    assert "Trending now</h2>" in html and "Recommended for you</h2>" not in html
    # another category's trending question is still open
    html, _request = render("{% recommended_for_you n=2 %}{% trending n=2 category=cat %}", cat=shelf[8].category)
    assert html.count("<section") == 2 and "Trending in Bags</h2>" in html
    # with picks of their own, both blocks under their own titles
    publish("for_user", "hybrid", {alice: ranked(shelf[4:5])})
    html, _request = render("{% recommended_for_you n=2 %}{% trending n=2 %}", user=alice)
    assert "Recommended for you</h2>" in html and "Trending now</h2>" in html


def test_trending_in_a_category_reads_the_category_list_first(shelf, publish):
    bags = shelf[8].category
    publish("trending", "trending", {0: ranked([shelf[4], shelf[8]]), bags.pk: ranked([shelf[11], shelf[10]])})
    publish("popular", "popular", {bags.pk: ranked([shelf[9]])})
    html, _request = render("{% trending n=4 category=cat %}", cat=bags)
    assert _cards(html) == [shelf[11].pk, shelf[10].pk, shelf[9].pk, shelf[8].pk]
    assert _cards(render("{% trending n=4 category=pk %}", pk=str(bags.pk))[0])[:2] == [shelf[11].pk, shelf[10].pk]
