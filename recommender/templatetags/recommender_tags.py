"""Template tags of the recommender app: ``{% load recommender_tags %}``."""

from collections import Counter

from django import template
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _

from recommender import serving

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


# Recommendation blocks ------------------------------------------------------------
#
# Each block reads precomputed lists (recommender.serving): no model is loaded and the
# items come from one query. A block renders nothing when there is nothing to show.
# Items shown by one block are not repeated by the next blocks of the same page
# (pass dedupe=False to allow it).

BLOCK_TEMPLATE = "recommender/block.html"


def _request(context):
    return context.get("request")


def _exclusions(request, exclude, dedupe):
    pks = set()
    if exclude:
        if isinstance(exclude, str):
            exclude = [pk for pk in exclude.split(",") if pk.strip()]
        elif hasattr(exclude, "pk") or not hasattr(exclude, "__iter__"):
            exclude = [exclude]
        pks.update(getattr(x, "pk", x) for x in exclude)
    if dedupe and request is not None:
        pks.update(getattr(request, "_recommender_shown", ()))
    return pks


def _render_block(context, block, title, recommendations, template=None, currency="", dedupe=True):
    request = _request(context)
    if request is not None:
        shown = getattr(request, "_recommender_shown", None)
        if shown is None:
            shown = request._recommender_shown = set()
        if dedupe:
            shown.update(rec.item.pk for rec in recommendations)
        count = getattr(request, "_recommender_blocks", 0) + 1
        request._recommender_blocks = count
    else:
        count = 1
    algorithms = Counter(rec.algorithm for rec in recommendations)
    values = {
        "block": block,
        "block_id": f"rec-{block.replace('_', '-')}-{count}",
        "title": title,
        "recommendations": recommendations,
        # the block's main algorithm; each link carries its own
        "algorithm": algorithms.most_common(1)[0][0] if algorithms else "",
        "impression": ",".join(str(rec.item.pk) for rec in recommendations),
        "currency": currency,
        "request": request,
    }
    names = [template, BLOCK_TEMPLATE] if template else [BLOCK_TEMPLATE]
    return context.template.engine.select_template(names).render(context.new(values))


@register.simple_tag(takes_context=True)
def recommended_for_you(context, n=8, algorithm=None, category=None, exclude=None, title=None,
                        template=None, currency="", dedupe=True):
    """``{% recommended_for_you n=8 algorithm="als" category=cat exclude=cart_pks %}``.

    The visitor's own list, or (anonymous and new visitors) items similar to what they
    viewed, then trending and popular items.
    """
    request = _request(context)
    recs = serving.recommend_for(request, n=n, algorithm=algorithm, category=category,
                                 exclude=_exclusions(request, exclude, dedupe))
    return _render_block(context, "recommended_for_you", title or _("Recommended for you"), recs,
                         template, currency, dedupe)


@register.simple_tag(takes_context=True)
def similar_items(context, item, n=6, algorithm=None, category=None, exclude=None, title=None,
                  template=None, currency="", dedupe=True):
    """``{% similar_items product n=6 %}``: items like ``item`` (never ``item`` itself)."""
    request = _request(context)
    recs = serving.similar_items(item, n=n, algorithm=algorithm, request=request, category=category,
                                 exclude=_exclusions(request, exclude, dedupe))
    return _render_block(context, "similar_items", title or _("Similar items"), recs,
                         template, currency, dedupe)


@register.simple_tag(takes_context=True)
def bought_together(context, items, n=6, algorithm=None, category=None, exclude=None, title=None,
                    template=None, currency="", dedupe=True):
    """``{% bought_together product n=6 %}`` or ``{% bought_together cart_products %}``."""
    request = _request(context)
    recs = serving.bought_together(items, n=n, algorithm=algorithm, request=request, category=category,
                                   exclude=_exclusions(request, exclude, dedupe))
    return _render_block(context, "bought_together", title or _("Customers also bought"), recs,
                         template, currency, dedupe)


@register.simple_tag(takes_context=True)
def trending(context, n=8, category=None, algorithm=None, exclude=None, title=None,
             template=None, currency="", dedupe=True):
    """``{% trending n=8 category=category %}``: trending items, then popular ones."""
    request = _request(context)
    recs = serving.trending(n=n, category=category, request=request, algorithm=algorithm,
                            exclude=_exclusions(request, exclude, dedupe))
    if title is None:
        named = category is not None and hasattr(category, "pk")
        title = _("Trending in %(category)s") % {"category": category} if named else _("Trending now")
    return _render_block(context, "trending", title, recs, template, currency, dedupe)


@register.simple_tag
def recommender_css():
    """The stylesheet of the recommendation blocks: ``{% recommender_css %}`` in ``<head>``."""
    return format_html('<link rel="stylesheet" href="{}">', static("recommender/blocks.css"))
