"""Template context for every page: the category navigation and the cart size."""

from shopdemo.shop.cart import Cart
from shopdemo.shop.models import Category


def shop(request):
    return {
        "nav_categories": Category.objects.only("name", "slug"),
        "cart_count": Cart(request).__len__() if hasattr(request, "session") else 0,
    }
