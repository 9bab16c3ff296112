"""Admin for interactions, built for tables of millions of rows."""

import json

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Q
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from recommender.conf import rec_settings
from recommender.models import Interaction

HISTORY_ROWS = 10
#: Events the history views leave out unless asked: a block render records one per item shown.
HIDDEN_EVENTS = ["impression"]


class ImpressionsFilter(admin.SimpleListFilter):
    """Impressions are hidden unless this filter, or the event filter, asks for them."""

    title = _("impressions")
    parameter_name = "impressions"

    def lookups(self, request, model_admin):
        return [("show", _("shown")), ("only", _("only impressions"))]

    def choices(self, changelist):
        yield {"selected": self.value() is None, "display": _("hidden"),
               "query_string": changelist.get_query_string(remove=[self.parameter_name])}
        for lookup, title in self.lookup_choices:
            yield {"selected": self.value() == lookup,
                   "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                   "display": title}

    def queryset(self, request, queryset):
        if self.value() == "only":
            return queryset.filter(event__in=HIDDEN_EVENTS)
        if self.value() == "show" or any(k in request.GET for k in ("event", "event__exact", "event__in")):
            return queryset
        return queryset.exclude(event__in=HIDDEN_EVENTS)


class EstimatedCountPaginator(Paginator):
    """Uses PostgreSQL's row estimate for the unfiltered table instead of COUNT(*)."""

    @cached_property
    def count(self):
        qs = self.object_list
        if connections[qs.db].vendor == "postgresql":
            if not qs.query.where:
                with connections[qs.db].cursor() as cursor:
                    cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                                   [qs.model._meta.db_table])
                    row = cursor.fetchone()
                estimate = row[0] if row else 0
            elif qs.query.where == qs.model._default_manager.exclude(event__in=HIDDEN_EVENTS).query.where:
                # the default list (impressions hidden): the planner's estimate, not COUNT(*)
                estimate = json.loads(qs.order_by().explain(format="json"))[0]["Plan"]["Plan Rows"]
            else:
                estimate = 0
            if estimate > 100_000:
                return estimate
        return super().count


@admin.register(Interaction)
class InteractionAdmin(admin.ModelAdmin):
    list_display = ["timestamp", "user", "visitor_session", "item", "event", "value", "context"]
    list_filter = ["event", ImpressionsFilter, ("timestamp", admin.DateFieldListFilter)]
    raw_id_fields = ["user", "item"]
    list_select_related = ["user", "item"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    ordering = ["-timestamp", "-id"]
    readonly_fields = ["dedup_key"]

    search_fields = ["session_key"]  # shows the search box; the search itself is below
    search_help_text = _("A username, e-mail, user or item id, session key, or words of an item title.")

    def get_search_results(self, request, queryset, search_term):
        """Resolve the term to a few users and items first, then use the indexes on user and item."""
        term = search_term.strip()
        if not term:
            return queryset, False
        user_model = get_user_model()
        user_q = Q(**{f"{user_model.USERNAME_FIELD}__iexact": term})
        email = getattr(user_model, "EMAIL_FIELD", "email")  # a custom user model may have none
        if any(field.name == email for field in user_model._meta.get_fields()):
            user_q |= Q(**{f"{email}__iexact": term})
        users = user_model._default_manager.filter(user_q)
        item_model = rec_settings.item_model()
        item_q = Q()
        title = rec_settings.item_field("title")
        if title:
            item_q |= Q(**{f"{title}__icontains": term})
        external = rec_settings.item_field("external_id")
        if external:
            item_q |= Q(**{external: term})
        item_ids = list(item_model._default_manager.filter(item_q).values_list("pk", flat=True)[:1000]) \
            if item_q else []
        query = (Q(session_key=term) | Q(user_id__in=list(users.values_list("pk", flat=True)[:100]))
                 | Q(item_id__in=item_ids))
        for column, model in (("user_id", get_user_model()), ("item_id", item_model)):
            try:
                query |= Q(**{column: model._meta.pk.to_python(term)})
            except ValidationError:
                pass
        return queryset.filter(query), False

    @admin.display(description=_("session"))
    def visitor_session(self, obj):
        return obj.session_key[:8] if obj.session_key else ""


class InteractionHistoryMixin:
    """Adds a "Recommendation history" panel to a ModelAdmin of users or items.

    Shows the latest interactions and links to the full, filtered list::

        class ProductAdmin(InteractionHistoryMixin, admin.ModelAdmin): ...
    """

    history_lookup = None  # "user" or "item"; guessed from the model when None

    def _history_lookup(self):
        if self.history_lookup:
            return self.history_lookup
        return "user" if self.model is get_user_model() else "item"

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "recommender_history"]

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None:
            fieldsets.append((_("Recommendation history"), {"fields": ["recommender_history"]}))
        return fieldsets

    def get_fields(self, request, obj=None):
        fields = [f for f in super().get_fields(request, obj) if f != "recommender_history"]
        return fields

    @admin.display(description=_("Latest interactions"))
    def recommender_history(self, obj):
        if obj is None or obj.pk is None:
            return ""
        lookup = self._history_lookup()
        rows = (Interaction.objects.filter(**{lookup: obj}).exclude(event__in=HIDDEN_EVENTS)
                .select_related("user", "item")
                .order_by("-timestamp", "-id")[:HISTORY_ROWS])
        url = reverse("admin:recommender_interaction_changelist") + f"?{lookup}__id__exact={obj.pk}"
        other = "item" if lookup == "user" else "user"
        body = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((r.timestamp.strftime("%Y-%m-%d %H:%M"), r.get_event_display(),
              r.value if r.value is not None else "",
              getattr(r, other) or r.session_key[:8]) for r in rows),
        )
        if not body:
            return _("No interactions yet.")
        return format_html(
            '<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead>'
            '<tbody>{}</tbody></table><p><a href="{}">{}</a></p>',
            _("time"), _("event"), _("value"), _("item") if other == "item" else _("user"), body, url,
            _("All interactions »"),
        )


def _add_history_to_user_admin(site=admin.site):
    """Give the registered user admin the history panel, keeping its own behaviour."""
    user_model = get_user_model()
    current = site._registry.get(user_model)
    if current is None or isinstance(current, InteractionHistoryMixin):
        return
    cls = type(current)
    site.unregister(user_model)
    site.register(user_model, type(cls.__name__, (InteractionHistoryMixin, cls), {}))


_add_history_to_user_admin()
