"""A site's own product model, unlike the demo's: other field names, a category as text,
a SKU as the external id, no description and no picture."""

from django.db import models


class Gadget(models.Model):
    name = models.CharField(max_length=120)
    blurb = models.TextField(blank=True)
    kind = models.CharField(max_length=40)
    cost = models.DecimalField(max_digits=8, decimal_places=2)
    on_sale = models.BooleanField(default=True)
    sku = models.CharField(max_length=20, unique=True)

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return f"/gadgets/{self.pk}/"
