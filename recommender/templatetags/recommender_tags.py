"""Template tags of the recommender app: ``{% load recommender_tags %}``."""

from django import template
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import format_html

register = template.Library()


@register.simple_tag(takes_context=True)
def recommender_script(context):
    """The tracking script: records ``data-rec-view`` elements on load and ``data-rec-click`` links.

    Put it once, before ``</body>``. It posts to the events endpoint with the
    page's CSRF token, as DRF's session authentication requires.
    """
    token = context.get("csrf_token", "")
    return format_html(
        '<script src="{}" data-endpoint="{}" data-csrf="{}" defer></script>',
        static("recommender/track.js"),
        reverse("recommender:events"),
        str(token) if token else "",
    )


@register.simple_tag
def recommender_view(item, context=""):
    """Attributes that record a view of ``item`` when the page loads: ``<div {% recommender_view product "product" %}>``."""
    return format_html('data-rec-view="{}" data-rec-context="{}"', getattr(item, "pk", item), context)


@register.simple_tag
def recommender_click(item, context=""):
    """Attributes that record a click on a link to ``item``: ``<a href=... {% recommender_click product "catalog" %}>``."""
    return format_html('data-rec-click="{}" data-rec-context="{}"', getattr(item, "pk", item), context)
