"""The demo shop's catalog and orders."""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.templatetags.static import static
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _


class Category(models.Model):
    name = models.CharField(_("name"), max_length=100, unique=True)
    slug = models.SlugField(_("slug"), max_length=100, unique=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("category")
        verbose_name_plural = _("categories")

    def __str__(self):
        return self.display_name

    @property
    def display_name(self):
        """The name in the active language (the demo's category names are in its catalog)."""
        return gettext(self.name)

    def get_absolute_url(self):
        return reverse("shop:category", args=[self.slug])


class Product(models.Model):
    stock_code = models.CharField(_("stock code"), max_length=20, unique=True)
    title = models.CharField(_("title"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    category = models.ForeignKey(
        Category, verbose_name=_("category"), on_delete=models.PROTECT, related_name="products"
    )
    price = models.DecimalField(_("price"), max_digits=10, decimal_places=2)
    is_active = models.BooleanField(_("available"), default=True)
    # A FileField, not an ImageField, so the demo needs no Pillow; a shop's ImageField
    # works the same for the recommender (ITEM_FIELDS["image"] reads its ``.url``).
    image = models.FileField(_("image"), upload_to="products/", blank=True)
    created = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["title"]
        verbose_name = _("product")
        verbose_name_plural = _("products")
        indexes = [models.Index(fields=["category", "title"], name="shop_product_cat_title")]

    def __str__(self):
        return self.title

    def get_absolute_url(self):
        return reverse("shop:product", args=[self.pk])

    @property
    def image_src(self):
        """The picture's URL, or the shop's placeholder when the product has none."""
        return self.image.url if self.image else static("shop/placeholder.svg")


class Order(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("customer"), on_delete=models.CASCADE,
        related_name="orders",
    )
    invoice_no = models.CharField(_("invoice"), max_length=20, unique=True)
    created = models.DateTimeField(_("created"))
    total = models.DecimalField(_("total"), max_digits=12, decimal_places=2, default=Decimal("0"))

    class Meta:
        ordering = ["-created"]
        verbose_name = _("order")
        verbose_name_plural = _("orders")

    def __str__(self):
        return self.invoice_no


class OrderLine(models.Model):
    order = models.ForeignKey(Order, verbose_name=_("order"), on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, verbose_name=_("product"), on_delete=models.PROTECT,
                                related_name="+")
    quantity = models.PositiveIntegerField(_("quantity"))
    price = models.DecimalField(_("unit price"), max_digits=10, decimal_places=2)

    class Meta:
        verbose_name = _("order line")
        verbose_name_plural = _("order lines")

    @property
    def subtotal(self):
        return self.price * self.quantity
