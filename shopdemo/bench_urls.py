"""The demo site plus two baseline views, for bench/bench_serving.py only."""

from django.http import JsonResponse
from django.urls import path

from shopdemo.urls import urlpatterns as site_urlpatterns

TEN_ITEMS = [{"item": i, "title": f"Product {i}", "price": "1.00", "score": 1.0 - i / 10} for i in range(10)]


def bare_json(request):
    """A bare Django JSON view: the floor any view pays."""
    return JsonResponse({"results": TEN_ITEMS})


def bare_json_user(request):
    """The same, after resolving the logged-in user (session + user lookup), as a personal API must."""
    return JsonResponse({"user": request.user.pk, "results": TEN_ITEMS})


urlpatterns = [
    path("bench/bare/", bare_json),
    path("bench/bare-user/", bare_json_user),
    *site_urlpatterns,
]
