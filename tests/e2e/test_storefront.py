"""End to end in headless Chromium (Debian's package, driven by Playwright; no browser download).

A demo customer logs in, sees a personalised block, clicks a recommendation, and the
click is recorded with its block and algorithm.
"""

import time

import pytest
from django.core.cache import cache

from recommender import serving
from recommender.models import Interaction
from recommender.serving import published

pytestmark = pytest.mark.django_db(transaction=True)




def wait_for(predicate, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_customer_sees_a_personal_block_and_the_click_is_recorded(live_server, browser, catalog,
                                                                   django_user_model):
    cache.clear()
    serving.connect()
    customer = django_user_model.objects.create_user("customer17850", password="demo1234")
    red, blue, bag = catalog[:3]
    published.publish("for_user", "hybrid", {customer.pk: [[bag.pk, 0.9, red.pk], [blue.pk, 0.8, red.pk]]})
    Interaction.objects.create(user=customer, item=red, event="view")

    page = browser.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", "customer17850")
    page.fill("input[name=password]", "demo1234")
    page.click("form[action=\"/accounts/login/\"] button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    assert "customer17850" in page.content()

    block = page.locator("section.rec-block-recommended_for_you")
    assert block.is_visible()
    links = block.locator("a.rec-link")
    assert links.count() == 2
    assert links.first.locator(".rec-name").inner_text().strip() == bag.title
    # the card's "Add to cart" button posts to the shop's cart (CSRF token included)
    block.locator(".rec-add-button").nth(1).click()
    page.wait_for_url(f"{live_server.url}/")
    assert page.locator(".cart-link .badge").inner_text().strip() == "1"
    assert Interaction.objects.filter(user=customer, item=blue, event="add_to_cart",
                                      context="recommended_for_you").exists()
    block = page.locator("section.rec-block-recommended_for_you")
    links = block.locator("a.rec-link")
    assert "Because you viewed Red Spotty Mug" in block.inner_text()

    links.first.click()
    page.wait_for_url(f"{live_server.url}{bag.get_absolute_url()}")
    assert bag.title in page.locator("h1").inner_text()

    def click_recorded():
        return Interaction.objects.filter(user=customer, item=bag, event="click").exists()

    assert wait_for(click_recorded), "the click was not recorded"
    click = Interaction.objects.get(user=customer, item=bag, event="click")
    assert click.context == "recommended_for_you:hybrid"
    # the product page recorded its view, and the home page the block's impressions
    assert wait_for(lambda: Interaction.objects.filter(user=customer, item=bag, event="view").exists())
    impressions = Interaction.objects.filter(user=customer, event="impression")
    assert set(impressions.values_list("context", flat=True)) >= {"recommended_for_you:hybrid"}
