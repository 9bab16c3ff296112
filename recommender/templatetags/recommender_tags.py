"""Template tags of the recommender app: ``{% load recommender_tags %}``."""

from collections import Counter

from django import template
from django.template.backends.utils import csrf_input
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _

from recommender import serving
from recommender.conf import rec_settings
from recommender.fastpath import blocks
from recommender.serving.candidates import category_subject, title_key
from recommender.tracking.events import visitor_of

register = template.Library()


@register.simple_tag(takes_context=True)
def recommender_script(context):
    """The tracking script: records ``data-rec-view`` elements on load and ``data-rec-click`` links.

    Put it once, before ``</body>``. It posts to the events endpoint with the
    page's CSRF token, which the endpoint requires from every visitor.

    With ``TRACK_ANONYMOUS`` on, it starts a new anonymous visitor's session on this page
    (``visitor_of``): the script posts the page's views and impressions at once, and the
    events endpoint does not create sessions, so they must all find the session ready.
    """
    request = context.get("request")
    if request is not None:
        visitor_of(request)
    token = context.get("csrf_token", "")
    return format_html(
        '<script src="{}" data-endpoint="{}" data-csrf="{}" defer></script>',
        static("recommender/track.js"),
        reverse("recommender:events"),
        str(token) if token else "",
    )


@register.simple_tag
def recommender_view(item, context=""):
    """Attributes that record a view of ``item`` when the page loads.

    ``<div {% recommender_view product "product" %}>``
    """
    return format_html('data-rec-view="{}" data-rec-context="{}"', getattr(item, "pk", item), context)


@register.simple_tag
def recommender_click(item, context=""):
    """Attributes that record a click on a link to ``item``.

    ``<a href=... {% recommender_click product "catalog" %}>``
    """
    return format_html('data-rec-click="{}" data-rec-context="{}"', getattr(item, "pk", item), context)


# Recommendation blocks ------------------------------------------------------------
#
# Each block reads precomputed lists (recommender.serving): no model is loaded and the
# items come from one query. A block renders nothing when there is nothing to show.
# Rendered blocks are reused while their lists, items and options are unchanged
# (recommender.fastpath.blocks; cache=False turns that off for one tag).
# Items shown by one block are not repeated by the next blocks of the same page, nor are
# other items with their titles (another colour or size; pass dedupe=False to allow both).

BLOCK_TEMPLATE = "recommender/block.html"
#: Kinds of recommendation made for the visitor (the others are the same for everyone).
PERSONAL_KINDS = frozenset({"for_user", "history"})
#: Placeholders of request data in a block's HTML (``slots.csrf``, ``slots.next`` in the
#: template): a stored block is shared, so they are filled in for each request.
CSRF_SLOT = "<!--recommender:csrf-->"
NEXT_SLOT = "recommender:next-slot"


def _request(context):
    return context.get("request")


def _exclusions(request, exclude, dedupe):
    """Keys never to show: ``exclude`` (items, keys, or "1,2,3"), and with ``dedupe`` the
    items earlier blocks of the page showed."""
    if isinstance(exclude, str):
        exclude = [pk for pk in exclude.split(",") if pk.strip()]
    pks = {getattr(x, "pk", x) for x in serving.as_list(exclude)}
    if dedupe and request is not None:
        pks.update(getattr(request, "_recommender_shown", ()))
    return pks


def _user(request):
    user = getattr(request, "user", None) if request is not None else None
    return user if user is not None and user.is_authenticated else None


def _fill_slots(html, request):
    """The block's HTML with this request's CSRF input and path in place of the slots."""
    if CSRF_SLOT in html:
        html = html.replace(CSRF_SLOT, str(csrf_input(request)) if request is not None else "")
    if NEXT_SLOT in html:
        html = html.replace(NEXT_SLOT, escape(request.get_full_path()) if request is not None else "")
    return mark_safe(html)  # noqa: S308  (HTML rendered by the block template)


def _answered(request):
    """The questions blocks of this page answered so far: ``("trending", category subject)``."""
    if request is None:
        return set()
    answered = getattr(request, "_recommender_answered", None)
    if answered is None:
        answered = request._recommender_answered = set()
    return answered


def _page_state(request):
    """This block's position on the page, and the items and title keys the page showed so far."""
    if request is None:
        return 1, set(), set()
    count = request._recommender_blocks = getattr(request, "_recommender_blocks", 0) + 1
    shown = getattr(request, "_recommender_shown", None)
    if shown is None:
        shown = request._recommender_shown = set()
    titles = getattr(request, "_recommender_shown_titles", None)
    if titles is None:
        titles = request._recommender_shown_titles = set()
    return count, shown, titles


def _block(context, block, title, lists, compute, *, personal, n, category, exclude, template,
           currency, dedupe, cache, fallback_title=None):
    """Render a block from ``compute(request, excluded, excluded_titles)``'s recommendations,
    or reuse its stored HTML.

    ``lists`` are the ``(kind, algorithm, subject)`` lists of the block's first source,
    or None when it cannot be stored. A ``personal`` block (the visitor's own list), or
    one rendered by a site's template, is stored per user; the others are shared by all
    visitors and reused for one only if none of its items is excluded for them (see
    :mod:`recommender.fastpath.blocks`).

    A ``personal`` block that found nothing personal (all its items are trending or
    popular) is titled ``fallback_title`` and answers the page's trending question: a
    later ``{% trending %}`` of the same category on the page renders nothing.
    """
    request = _request(context)
    excluded = _exclusions(request, exclude, dedupe)
    count, shown, shown_titles = _page_state(request)
    excluded_titles = set(shown_titles) if dedupe else set()
    names = [template, BLOCK_TEMPLATE] if template else [BLOCK_TEMPLATE]
    selected = context.template.engine.select_template(names)
    spec = None
    if cache and lists and blocks.enabled():
        user = _user(request)
        to_pk = rec_settings.item_model()._meta.pk.to_python
        # what this visitor must not see, on top of what the block's own key covers
        dynamic = {to_pk(pk) for pk in excluded}
        if user is not None:
            dynamic |= serving.user_facts(user, request).excluded
        # A site's own template may show the visitor (request.user): stored per visitor.
        per_user = personal or not blocks.is_app_template(selected)
        spec = blocks.Spec(block, lists, user.pk if per_user and user is not None else None, [
            n, getattr(category, "pk", category), str(title), names, blocks.template_digest(selected),
            str(currency), count, rec_settings.ADD_TO_CART_URL], excluded=dynamic,
            excluded_titles=excluded_titles)
        if blocks.lookup(spec, to_pk):
            if dedupe:
                shown.update(spec.shown)
                shown_titles.update(spec.titles)
            return _fill_slots(spec.html, request)
    recommendations = compute(request, excluded, excluded_titles)
    titles = [key for rec in recommendations if (key := title_key(rec.item)) is not None]
    if dedupe:
        shown.update(rec.item.pk for rec in recommendations)
        shown_titles.update(titles)
    if personal and recommendations and not any(rec.kind in PERSONAL_KINDS for rec in recommendations):
        title = fallback_title or title
        _answered(request).add(("trending", category_subject(category)))
    algorithms = Counter(rec.algorithm for rec in recommendations)
    algorithm = algorithms.most_common(1)[0][0] if algorithms else ""
    runs = Counter(rec.run for rec in recommendations if rec.algorithm == algorithm and rec.run)
    values = {
        "block": block,
        "block_name": block,  # inside a {% block %} of the template, "block" is that template block
        "block_id": f"rec-{block.replace('_', '-')}-{count}",
        "title": title,
        "recommendations": recommendations,
        # the block's main algorithm and the training run of its lists; each link carries its own
        # (the context "<block>:<algorithm>@<run>" of recommender.analytics.attribution)
        "algorithm": algorithm,
        "run": runs.most_common(1)[0][0] if runs else None,
        "impression": ",".join(str(rec.item.pk) for rec in recommendations),
        "currency": currency,
        "request": request,
        "slots": {"csrf": mark_safe(CSRF_SLOT), "next": NEXT_SLOT},
    }
    html = selected.render(context.new(values))
    # stored only when made from its first source alone (the lists its digest covers)
    if spec is not None and recommendations and recommendations.sources_read == 1:
        blocks.store(spec, html, [rec.item.pk for rec in recommendations], titles,
                     exact=bool(recommendations.skipped_titles)
                     or not dynamic.isdisjoint(recommendations.skipped))
    return _fill_slots(html, request)


@register.simple_tag(takes_context=True)
def recommended_for_you(context, n=8, algorithm=None, category=None, exclude=None, title=None,
                        template=None, currency="", dedupe=True, cache=True):
    """``{% recommended_for_you n=8 algorithm="als" category=cat exclude=cart_pks %}``.

    The visitor's own list, or (anonymous and new visitors) items similar to what they
    viewed, then trending and popular items. A visitor with nothing of their own (no
    list, no history) gets trending items under the trending block's title ("Trending
    now", "Trending in <category>"), and a ``{% trending %}`` of the same category later
    on the page is left out.
    """
    algorithm, show = _assigned(context, "recommended_for_you", algorithm)
    if not show:
        return ""
    user = _user(_request(context))
    # an anonymous visitor's block comes from their session's history: not stored
    lists = [("for_user", rec_settings.list_algorithm("for_user", algorithm), user.pk)] if user is not None else None
    return _block(
        context, "recommended_for_you", title or _("Recommended for you"), lists,
        lambda request, excluded, titles: serving.recommend_for(
            request, n=n, algorithm=algorithm, category=category, exclude=excluded, exclude_titles=titles),
        personal=True, n=n, category=category, exclude=exclude, template=template, currency=currency,
        dedupe=dedupe, cache=cache, fallback_title=_trending_title(category))


@register.simple_tag(takes_context=True)
def similar_items(context, item, n=6, algorithm=None, category=None, exclude=None, title=None,
                  template=None, currency="", dedupe=True, cache=True):
    """``{% similar_items product n=6 %}``: items like ``item`` (never ``item`` itself)."""
    algorithm, show = _assigned(context, "similar_items", algorithm)
    if not show:
        return ""
    return _block(
        context, "similar_items", title or _("Similar items"),
        [("similar", rec_settings.list_algorithm("similar", algorithm), item.pk)],
        lambda request, excluded, titles: serving.similar_items(
            item, n=n, algorithm=algorithm, request=request, category=category, exclude=excluded,
            exclude_titles=titles),
        personal=False, n=n, category=category, exclude=exclude, template=template, currency=currency,
        dedupe=dedupe, cache=cache)


@register.simple_tag(takes_context=True)
def bought_together(context, items, n=6, algorithm=None, category=None, exclude=None, title=None,
                    template=None, currency="", dedupe=True, cache=True):
    """``{% bought_together product n=6 %}`` or ``{% bought_together cart_products %}``."""
    algorithm, show = _assigned(context, "bought_together", algorithm)
    if not show:
        return ""
    items = serving.as_list(items)
    algorithm_name = rec_settings.list_algorithm("bought_together", algorithm)
    return _block(
        context, "bought_together", title or _("Customers also bought"),
        [("bought_together", algorithm_name, getattr(x, "pk", x)) for x in items],
        lambda request, excluded, titles: serving.bought_together(
            items, n=n, algorithm=algorithm, request=request, category=category, exclude=excluded,
            exclude_titles=titles),
        personal=False, n=n, category=category, exclude=exclude, template=template, currency=currency,
        dedupe=dedupe, cache=cache)


@register.simple_tag(takes_context=True)
def trending(context, n=8, category=None, algorithm=None, exclude=None, title=None,
             template=None, currency="", dedupe=True, cache=True):
    """``{% trending n=8 category=category %}``: trending items, then popular ones.

    With a ``category``, that category's own trending list (published for every
    category). Renders nothing when an earlier ``{% recommended_for_you %}`` of the page
    already showed trending items of the same category (a visitor with no history).
    """
    if ("trending", category_subject(category)) in _answered(_request(context)):
        return ""
    algorithm, show = _assigned(context, "trending", algorithm)
    if not show:
        return ""
    return _block(
        context, "trending", title or _trending_title(category),
        [("trending", rec_settings.list_algorithm("trending", algorithm), category_subject(category))],
        lambda request, excluded, titles: serving.trending(
            n=n, category=category, request=request, algorithm=algorithm, exclude=excluded,
            exclude_titles=titles),
        personal=False, n=n, category=category, exclude=exclude, template=template, currency=currency,
        dedupe=dedupe, cache=cache)


def _assigned(context, block, algorithm):
    """``(algorithm, show)`` for ``block``: the variant a running experiment assigns this
    visitor (recorded as an exposure), or ``algorithm`` as given.

    A template that names its ``algorithm`` is not experimented on. A visitor without a
    session yet is left out of experiments. ``show`` is False for a "no block" control.
    The running experiments are kept per process (:mod:`recommender.analytics.experiments`):
    no query once warm, and one INSERT per new exposure.
    """
    request = _request(context)
    if algorithm is not None or request is None:
        return algorithm, True
    from recommender.analytics import experiments

    return experiments.assigned(request, block)


def _trending_title(category):
    named = category is not None and hasattr(category, "pk")
    return _("Trending in %(category)s") % {"category": category} if named else _("Trending now")


@register.simple_tag
def recommender_css():
    """The stylesheet of the recommendation blocks: ``{% recommender_css %}`` in ``<head>``."""
    return format_html('<link rel="stylesheet" href="{}">', static("recommender/blocks.css"))
