"""Admin of the demo shop."""

from django.contrib import admin
from django.db.models import Count
from django.utils.translation import gettext_lazy as _

from recommender.admin import InteractionHistoryMixin
from shopdemo.shop.models import Category, Order, OrderLine, Product


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "product_count"]
    search_fields = ["name"]
    prepopulated_fields = {"slug": ["name"]}

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(num_products=Count("products"))

    @admin.display(description=_("products"), ordering="num_products")
    def product_count(self, obj):
        return obj.num_products


@admin.register(Product)
class ProductAdmin(InteractionHistoryMixin, admin.ModelAdmin):
    list_display = ["title", "stock_code", "category", "price", "is_active"]
    list_filter = ["category", "is_active"]
    list_editable = ["is_active"]
    search_fields = ["title", "=stock_code"]
    list_select_related = ["category"]
    list_per_page = 50
    readonly_fields = ["created"]


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    raw_id_fields = ["product"]
    extra = 0
    fields = ["product", "quantity", "price"]


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["invoice_no", "user", "created", "total"]
    list_select_related = ["user"]
    search_fields = ["=invoice_no", "=user__username"]
    date_hierarchy = "created"
    raw_id_fields = ["user"]
    inlines = [OrderLineInline]
    show_full_result_count = False
