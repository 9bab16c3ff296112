"""Views of the demo shop: catalog, search, product, cart, checkout and orders."""

import secrets
from functools import reduce
from operator import and_

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

import recommender
from shopdemo.shop.cart import Cart
from shopdemo.shop.forms import AddToCartForm, SearchForm, UpdateCartForm
from shopdemo.shop.models import Category, Order, OrderLine, Product

#: Products per catalogue page: full rows at 5 columns (the grid at the container's
#: full width), and at 3, 2 and 1.
PAGE_SIZE = 30
#: Most search results the recommendation block of the search page leaves out.
SEARCH_EXCLUDE_MAX = 500
ORDERS_PAGE_SIZE = 20
SORTS = {
    "title": ("title", "pk"),
    "price": ("price", "title"),
    "-price": ("-price", "title"),
}
SORT_LABELS = [
    ("title", gettext_lazy("Name")),
    ("price", gettext_lazy("Price: low to high")),
    ("-price", gettext_lazy("Price: high to low")),
]


def active_products():
    return Product.objects.filter(is_active=True).select_related("category")


def _listing(request, queryset, **context):
    """Sort and paginate a product queryset; returns the template context."""
    sort = request.GET.get("sort", "title")
    if sort not in SORTS:
        sort = "title"
    page = Paginator(queryset.order_by(*SORTS[sort]), PAGE_SIZE).get_page(request.GET.get("page"))
    return {
        "page_obj": page,
        "products": page.object_list,
        "sort": sort,
        "sort_labels": SORT_LABELS,
        **context,
    }


def _cart_pks(request):
    """Keys of the products in the cart, so recommendation blocks leave them out."""
    return [int(pk) for pk in Cart(request).data if pk.isdigit()]


def home(request):
    categories = (Category.objects.filter(products__is_active=True)
                  .annotate(product_count=Count("products")).order_by("name"))
    context = _listing(request, active_products(), categories=categories, rec_context="home",
                       cart_pks=_cart_pks(request))
    return render(request, "shop/home.html", context)


def category(request, slug):
    cat = get_object_or_404(Category, slug=slug)
    context = _listing(request, active_products().filter(category=cat), category=cat,
                       rec_context=f"category:{cat.slug}", cart_pks=_cart_pks(request))
    return render(request, "shop/category.html", context)


def search(request):
    form = SearchForm(request.GET)
    query = form.cleaned_data["q"].strip() if form.is_valid() else ""
    words = query.split()[:8]
    if words:
        conditions = [Q(title__icontains=w) | Q(description__icontains=w) for w in words]
        products = active_products().filter(reduce(and_, conditions) | Q(stock_code__iexact=query))
    else:
        products = Product.objects.none()
    # the recommendation block leaves out the results (and the cart)
    result_pks = [*products.values_list("pk", flat=True)[:SEARCH_EXCLUDE_MAX], *_cart_pks(request)]
    context = _listing(request, products, query=query, rec_context="search", result_pks=result_pks)
    return render(request, "shop/search.html", context)


def product_detail(request, pk):
    product = get_object_or_404(active_products(), pk=pk)
    form = AddToCartForm(initial={"quantity": 1, "source": "product"})
    return render(request, "shop/product.html", {
        "product": product,
        "form": form,
        "in_cart": Cart(request).quantity_of(product),
        "cart_pks": _cart_pks(request),
    })


# Cart -------------------------------------------------------------------------


def _back(request, default):
    """The ``next`` URL of a POST if it is safe, else ``default``."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


def cart_detail(request):
    cart = Cart(request)
    if cart.drop_unavailable():
        messages.warning(request, _("Some products are no longer available and were removed from your cart."))
    return render(request, "shop/cart.html", {"cart": cart, "cart_products": [item.product for item in cart]})


@require_POST
def cart_add(request, pk):
    product = get_object_or_404(Product, pk=pk, is_active=True)
    form = AddToCartForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Please enter a quantity between 1 and 999."))
        return redirect(_back(request, product.get_absolute_url()))
    added = Cart(request).add(product, form.cleaned_data["quantity"])
    if added:
        recommender.track(request, product, "add_to_cart", value=added,
                          context=form.cleaned_data["source"] or "cart")
        messages.success(request, _("Added %(quantity)s × %(title)s to your cart.")
                         % {"quantity": added, "title": product.title})
    else:
        messages.info(request, _("Your cart already holds the most we can sell of %(title)s.")
                      % {"title": product.title})
    return redirect(_back(request, "shop:cart"))


@require_POST
def cart_update(request, pk):
    cart = Cart(request)
    form = UpdateCartForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Please enter a quantity between 0 and 999."))
        return redirect("shop:cart")
    if not cart.quantity_of(pk):
        messages.error(request, _("That product is not in your cart."))
        return redirect("shop:cart")
    change = cart.set(pk, form.cleaned_data["quantity"])
    product = Product.objects.filter(pk=pk).first()
    if product is not None and change:
        event = "add_to_cart" if change > 0 else "remove_from_cart"
        recommender.track(request, product, event, value=abs(change), context="cart")
    if form.cleaned_data["quantity"] == 0:
        messages.success(request, _("Removed the product from your cart."))
    else:
        messages.success(request, _("Updated your cart."))
    return redirect("shop:cart")


@require_POST
def cart_remove(request, pk):
    removed = Cart(request).remove(pk)
    if removed:
        product = Product.objects.filter(pk=pk).first()
        if product is not None:
            recommender.track(request, product, "remove_from_cart", value=removed, context="cart")
        messages.success(request, _("Removed the product from your cart."))
    return redirect("shop:cart")


# Checkout and orders ----------------------------------------------------------


def new_invoice_no():
    """A web order number, e.g. ``W261128-3F9A1C`` (the loaded data uses 6 digits)."""
    return f"W{timezone.now():%y%m%d}-{secrets.token_hex(3).upper()}"


def _create_order(user, total, attempts=5):
    """An order with a fresh invoice number (drawn again if it is already taken)."""
    for attempt in range(attempts):
        try:
            with transaction.atomic():  # a savepoint: a clash leaves the outer transaction usable
                return Order.objects.create(user=user, invoice_no=new_invoice_no(),
                                            created=timezone.now(), total=total)
        except IntegrityError:
            if attempt == attempts - 1:
                raise


@login_required
def checkout(request):
    cart = Cart(request)
    if cart.drop_unavailable():
        messages.warning(request, _("Some products are no longer available and were removed from your cart."))
        return redirect("shop:cart")
    if not cart:
        messages.info(request, _("Your cart is empty."))
        return redirect("shop:cart")
    if request.method != "POST":
        return render(request, "shop/checkout.html", {"cart": cart})

    items = cart.items()
    with transaction.atomic():
        order = _create_order(request.user, cart.total)
        OrderLine.objects.bulk_create([
            OrderLine(order=order, product=item.product, quantity=item.quantity, price=item.price)
            for item in items
        ])
        for item in items:
            recommender.track(request, item.product, "purchase", value=item.quantity, context="checkout")
    cart.clear()
    # The confirmation page itself thanks the customer: no message here.
    return redirect("shop:order_confirmation", pk=order.pk)


def _own_order(request, pk):
    return get_object_or_404(Order.objects.select_related("user"), pk=pk, user=request.user)


@login_required
def order_confirmation(request, pk):
    order = _own_order(request, pk)
    lines = list(order.lines.select_related("product", "product__category"))
    return render(request, "shop/order_detail.html", {
        "order": order, "lines": lines, "just_placed": True,
        "order_products": [line.product for line in lines],  # for "customers also bought"
    })


@login_required
def order_detail(request, pk):
    order = _own_order(request, pk)
    lines = order.lines.select_related("product", "product__category")
    return render(request, "shop/order_detail.html", {"order": order, "lines": lines})


@login_required
def order_list(request):
    orders = request.user.orders.annotate(line_count=Count("lines")).order_by("-created", "-pk")
    page = Paginator(orders, ORDERS_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "shop/order_list.html", {"page_obj": page, "orders": page.object_list})
