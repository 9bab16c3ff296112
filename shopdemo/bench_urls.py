"""The demo site plus baseline views, for bench/bench_serving.py only."""

from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.template import engines
from django.urls import path

from shopdemo.shop.forms import AddToCartForm
from shopdemo.shop.views import _cart_pks, active_products
from shopdemo.urls import urlpatterns as site_urlpatterns

TEN_ITEMS = [{"item": i, "title": f"Product {i}", "price": "1.00", "score": 1.0 - i / 10} for i in range(10)]


def bare_json(request):
    """A bare Django JSON view: the floor any view pays."""
    return JsonResponse({"results": TEN_ITEMS})


def bare_json_user(request):
    """The same, after resolving the logged-in user (session + user lookup), as a personal API must."""
    return JsonResponse({"user": request.user.pk, "results": TEN_ITEMS})


# The shop's product page with three recommendation blocks, and the same page without any.
_PAGE = '{% extends "shop/product.html" %}{% load recommender_tags %}{% block recommendations %}BLOCKS{% endblock %}'
_THREE = ('{% similar_items product n=6 exclude=cart_pks currency="£" %}'
          '{% bought_together product n=6 exclude=cart_pks currency="£" %}'
          '{% recommended_for_you n=6 exclude=cart_pks currency="£" %}')
PAGES = {
    "three": engines["django"].from_string(_PAGE.replace("BLOCKS", _THREE)),
    "none": engines["django"].from_string(_PAGE.replace("BLOCKS", "")),
}


def product_page(request, pk, blocks):
    product = get_object_or_404(active_products(), pk=pk)
    context = {"product": product, "form": AddToCartForm(initial={"quantity": 1, "source": "product"}),
               "in_cart": 0, "cart_pks": _cart_pks(request)}
    return HttpResponse(PAGES[blocks].render(context, request))


urlpatterns = [
    path("bench/bare/", bare_json),
    path("bench/bare-user/", bare_json_user),
    path("bench/product/<int:pk>/three-blocks/", product_page, {"blocks": "three"}),
    path("bench/product/<int:pk>/no-blocks/", product_page, {"blocks": "none"}),
    *site_urlpatterns,
]
