"""The shopping cart, kept in the session as ``{"<product pk>": quantity}``.

Prices are not stored: they are read from the products each time, so the cart always
shows current prices, and products that became unavailable drop out of it.
"""

from decimal import Decimal

from shopdemo.shop.models import Product

SESSION_KEY = "cart"
MAX_QUANTITY = 999


class CartItem:
    __slots__ = ("product", "quantity")

    def __init__(self, product, quantity):
        self.product = product
        self.quantity = quantity

    @property
    def price(self):
        return self.product.price

    @property
    def subtotal(self):
        return self.product.price * self.quantity


class Cart:
    def __init__(self, request):
        self.session = request.session
        data = self.session.get(SESSION_KEY)
        self.data = data if isinstance(data, dict) else {}
        self._items = None

    # Reading ------------------------------------------------------------------

    def __len__(self):
        """The number of articles (sum of quantities), without a query."""
        return sum(q for q in self.data.values() if isinstance(q, int) and q > 0)

    def __bool__(self):
        return bool(self.data)

    def quantity_of(self, product):
        return self.data.get(str(getattr(product, "pk", product)), 0)

    def items(self):
        """The cart's lines with their (active) products, in the order they were added."""
        if self._items is None:
            pks = [int(pk) for pk in self.data if pk.isdigit()]
            products = Product.objects.filter(pk__in=pks, is_active=True).select_related("category")
            by_pk = {p.pk: p for p in products}
            self._items = [CartItem(by_pk[pk], self.data[str(pk)]) for pk in pks if pk in by_pk]
        return self._items

    def __iter__(self):
        return iter(self.items())

    @property
    def total(self):
        return sum((item.subtotal for item in self.items()), Decimal("0.00"))

    def drop_unavailable(self):
        """Forget products that are no longer sold; returns how many lines were dropped."""
        available = {str(item.product.pk) for item in self.items()}
        gone = [pk for pk in self.data if pk not in available]
        for pk in gone:
            del self.data[pk]
        if gone:
            self.save()
        return len(gone)

    # Changing -----------------------------------------------------------------

    def add(self, product, quantity=1):
        """Add ``quantity`` (capped at MAX_QUANTITY in all); returns the quantity added."""
        key = str(product.pk)
        before = self.data.get(key, 0)
        after = min(before + quantity, MAX_QUANTITY)
        self.data[key] = after
        self.save()
        return after - before

    def set(self, product, quantity):
        """Set the quantity (0 removes); returns the change (positive or negative)."""
        key = str(getattr(product, "pk", product))
        before = self.data.get(key, 0)
        quantity = max(0, min(quantity, MAX_QUANTITY))
        if quantity:
            self.data[key] = quantity
        else:
            self.data.pop(key, None)
        self.save()
        return quantity - before

    def remove(self, product):
        """Remove a product; returns the quantity removed."""
        removed = self.data.pop(str(getattr(product, "pk", product)), 0)
        self.save()
        return removed

    def clear(self):
        self.data = {}
        self.session.pop(SESSION_KEY, None)
        self._items = None

    def save(self):
        self.session[SESSION_KEY] = self.data
        self.session.modified = True
        self._items = None
