"""Attribution of clicks, add-to-carts, purchases and revenue to recommendation blocks.

The one definition of the context that impressions and clicks carry,
``"<block>:<algorithm>[@<run>]"`` (``{% recommender_click %}``, ``recommender/block.html``,
API clients), and of the attribution rule (docs/online-metrics.md):

- impressions and clicks count under their own context;
- an add-to-cart or purchase of an item is attributed to the same visitor's latest click on
  that item with a context, at most ``ATTRIBUTION_WINDOW_HOURS`` before it (last click,
  same item). The visitor is the user, or the anonymous session; history merged at login
  belongs to the user;
- revenue is the purchase's quantity (its value; None counts 1) times the item's
  ``ITEM_FIELDS["price"]`` as it is now.

All of it is set-based SQL through the ORM: one grouped query for the shows and one for
the conversions, whose attributed click is a correlated subquery on the visitor's index.
"""

from __future__ import annotations

from datetime import timedelta
from typing import NamedTuple

from django.db.models import (
    Case,
    CharField,
    Count,
    DateTimeField,
    ExpressionWrapper,
    F,
    FloatField,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, Concat, TruncDate

from recommender.conf import rec_settings
from recommender.models import Interaction
from recommender.tracking.csvformat import split_run

#: Events counted as shows of a block.
IMPRESSION = "impression"
CLICK = "click"


class BlockKey(NamedTuple):
    """What a context names: the block, the algorithm ("" when not given) and the run (0: not given)."""

    block: str
    algorithm: str
    run: int


def parse_context(context: str) -> BlockKey:
    """``"similar_items:itemknn@42"`` -> ``BlockKey("similar_items", "itemknn", 42)``.

    A context without ``:`` is a block with no algorithm (``"category-page"``). The run is
    read by :func:`recommender.tracking.csvformat.split_run`, the rule ``track()`` and the
    CSV import check impressions and clicks with; a run it refuses (a row stored without
    that check) is left in the algorithm's name.
    """
    block, _sep, algorithm = (context or "").partition(":")
    try:
        algorithm, run = split_run(algorithm)
    except ValueError:
        run = 0
    return BlockKey(block, algorithm, run)


def format_context(block: str, algorithm: str = "", run: int | None = None) -> str:
    """The context an impression or a click of ``block`` records (``parse_context`` reads it).

    ``recommender/block.html`` writes the same for each link: ``<block>:<algorithm>@<run>``,
    without ``@<run>`` when the list has no run.
    """
    text = f"{block}:{algorithm}" if algorithm or run else block
    return f"{text}@{int(run)}" if run else text


def visitor_key():
    """An expression for the visitor of a row: ``"u:<user id>"``, or ``"s:<session key>"``."""
    return Case(
        When(user__isnull=False, then=Concat(Value("u:"), Cast("user_id", CharField()))),
        default=Concat(Value("s:"), "session_key"),
        output_field=CharField(),
    )


def attributed_click(field: str = "context"):
    """An expression for ``field`` of the click a conversion row is attributed to (None: none).

    For a row of the ``Interaction`` table: the same visitor's latest click with a
    context on the same item, in the attribution window before the row.
    """
    window = timedelta(hours=float(rec_settings.ATTRIBUTION_WINDOW_HOURS))
    clicks = (Interaction.objects.filter(event=CLICK, item=OuterRef("item"), timestamp__lte=OuterRef("timestamp"),
                                         timestamp__gte=ExpressionWrapper(OuterRef("timestamp") - Value(window),
                                                                          output_field=DateTimeField()))
              .exclude(context=""))

    def latest(queryset):
        return Subquery(queryset.order_by("-timestamp", "-id").values(field)[:1])

    return Case(
        When(user__isnull=False, then=latest(clicks.filter(user=OuterRef("user")))),
        default=latest(clicks.filter(user__isnull=True, session_key=OuterRef("session_key"))),
    )


def cart_events():
    return list(rec_settings.ATTRIBUTION_CART_EVENTS)


def purchase_events():
    return list(rec_settings.ATTRIBUTION_PURCHASE_EVENTS)


def revenue_expression():
    """Quantity x the item's current price, as a float (0 without a price role)."""
    price = rec_settings.item_field("price")
    quantity = Coalesce(F("value"), Value(1.0), output_field=FloatField())
    if not price:
        return Value(0.0, output_field=FloatField())
    return ExpressionWrapper(Coalesce(Cast(f"item__{price}", FloatField()), Value(0.0)) * quantity,
                             output_field=FloatField())


def shows(queryset=None):
    """Impressions, clicks and visitors per day and context, for the rows of ``queryset``.

    Yields dicts ``{"day", "context", "impressions", "clicks", "visitors"}``.
    """
    queryset = Interaction.objects.all() if queryset is None else queryset
    return (queryset.filter(event__in=[IMPRESSION, CLICK]).exclude(context="").order_by()
            .annotate(day=TruncDate("timestamp")).values("day", "context")
            .annotate(impressions=Count("id", filter=Q(event=IMPRESSION)),
                      clicks=Count("id", filter=Q(event=CLICK)),
                      visitors=Count(visitor_key(), distinct=True))
            .values_list("day", "context", "impressions", "clicks", "visitors").iterator())


def conversions(queryset=None):
    """Attributed add-to-carts, purchases and revenue per day and context of the click.

    The day is the conversion's. Yields ``(day, context, add_to_carts, purchases, revenue)``;
    conversions with no attributed click are left out.
    """
    queryset = Interaction.objects.all() if queryset is None else queryset
    carts, purchases = cart_events(), purchase_events()
    rows = (queryset.filter(event__in=carts + purchases).order_by()
            .annotate(day=TruncDate("timestamp"), click_context=attributed_click()).values("day", "click_context")
            .annotate(add_to_carts=Count("id", filter=Q(event__in=carts)),
                      purchases=Count("id", filter=Q(event__in=purchases)),
                      revenue=Sum(revenue_expression(), filter=Q(event__in=purchases)))
            .values_list("day", "click_context", "add_to_carts", "purchases", "revenue"))
    for day, context, carts_n, purchases_n, revenue in rows.iterator():
        if context is not None:
            yield day, context, carts_n, purchases_n, revenue or 0.0


def report(queryset=None):
    """Live totals per block, algorithm and run from the raw rows of ``queryset`` (all days).

    Returns ``{BlockKey: {"impressions", "clicks", "add_to_carts", "purchases", "revenue"}}``;
    the daily table (:mod:`recommender.analytics.aggregates`) holds the same per day.
    """
    totals = {}

    def row(context):
        return totals.setdefault(parse_context(context), {
            "impressions": 0, "clicks": 0, "add_to_carts": 0, "purchases": 0, "revenue": 0.0})

    for _day, context, impressions, clicks, _visitors in shows(queryset):
        entry = row(context)
        entry["impressions"] += impressions
        entry["clicks"] += clicks
    for _day, context, carts_n, purchases_n, revenue in conversions(queryset):
        entry = row(context)
        entry["add_to_carts"] += carts_n
        entry["purchases"] += purchases_n
        entry["revenue"] += revenue
    return totals
