"""Admin of the online metrics: experiments (with their variants and results page), the daily
block statistics and the dashboard a merchandiser reads (``admin/recommender/dailyblockstats/dashboard/``).

Charts are inline SVG drawn here, with no scripts. The dashboard needs the view permission on
``DailyBlockStats``; its experiments section and the results pages need the view permission
on ``Experiment``.
"""

import datetime as dt
import math

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q, Sum
from django.forms.models import BaseInlineFormSet
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format, number_format
from django.utils.html import escape, format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from recommender.analytics import experiments, results
from recommender.models import DailyBlockStats, Experiment, TrainingRun, Variant

COLOURS = ["#1b6b5f", "#d1495b", "#edae49", "#00798c", "#6a4c93", "#8d6a9f", "#3d405b", "#81b29a"]
PRESETS = [("7", _("Last 7 days")), ("30", _("Last 30 days")), ("90", _("Last 90 days")), ("custom", _("Custom"))]
#: The daily series of the dashboard: key, label, shown as a percentage.
SERIES = [("impressions", _("Impressions"), False), ("ctr", _("CTR"), True),
          ("conversion", _("Conversion (purchases per click)"), True), ("revenue", _("Attributed revenue"), False)]
#: Metrics of an experiment shown on the dashboard (all four are on its results page).
DASHBOARD_METRICS = ("conversion", "revenue")
MAX_EXPERIMENTS = 10


# Formatting -------------------------------------------------------------------------


def fmt(value, percent=False, decimals=None):
    """A number for a table: ``None`` as a dash, a rate as a percentage, grouping on."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if percent:
        return f"{number_format(value * 100, 2 if decimals is None else decimals)}%"
    if decimals is None:
        decimals = 0 if float(value).is_integer() and abs(value) >= 1 else 2
    return number_format(value, decimals, force_grouping=True)


def fmt_lift(value):
    return "–" if value is None else f"{'+' if value > 0 else ''}{number_format(value * 100, 1)}%"


def fmt_p(value):
    if value is None:
        return "–"
    return "< 0.001" if value < 0.001 else number_format(value, 3)


def _ratio(num, den):
    return num / den if den else None


# SVG ----------------------------------------------------------------------------------


def _nice_max(high):
    if high <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(high))
    return next(m * magnitude for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * magnitude >= high)


def line_chart(days, series, markers, title, percent=False, width=600, height=230):
    """Daily values as lines (one per ``series`` entry ``(label, colour, values)``, ``None``: no
    value that day) and vertical dashed ``markers`` ``(day, label, title)`` on the time axis."""
    left, right, top, bottom = 58, width - 12, 26, height - 30
    values = [v for _label, _colour, vals in series for v in vals if v is not None]
    y_max = _nice_max(max(values, default=0))
    n = max(len(days) - 1, 1)

    def x_of(i):
        return left + i / n * (right - left)

    def y_of(v):
        return bottom - v / y_max * (bottom - top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="rec-chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" font-family="sans-serif">',
             f'<title>{escape(title)}</title>',
             f'<text x="{left}" y="15" font-size="13" font-weight="bold">{escape(title)}</text>']
    for k in range(5):
        v = y_max * k / 4
        y = y_of(v)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#e4e4e4"/>'
                     f'<text x="{left - 5}" y="{y + 4:.1f}" font-size="10" text-anchor="end" fill="#555">'
                     f'{escape(fmt(v, percent, 1 if percent else (0 if y_max >= 10 else 2)))}</text>')
    step = max(1, math.ceil(len(days) / 8))
    for i in range(0, len(days), step):
        parts.append(f'<text x="{x_of(i):.1f}" y="{bottom + 16}" font-size="10" text-anchor="middle" fill="#555">'
                     f'{escape(date_format(days[i], "MONTH_DAY_FORMAT"))}</text>')
    parts.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#999"/>')
    index = {day: i for i, day in enumerate(days)}
    for day, label, tip in markers:
        if day in index:
            x = x_of(index[day])
            parts.append(f'<g class="rec-marker"><title>{escape(tip)}</title><line x1="{x:.1f}" y1="{top - 4}" '
                         f'x2="{x:.1f}" y2="{bottom}" stroke="#888" stroke-dasharray="4 3"/>'
                         f'<text x="{x + 3:.1f}" y="{top + 6}" font-size="10" fill="#555">{escape(label)}</text></g>')
    for label, colour, vals in series:
        segment = []
        for i, v in enumerate([*vals, None]):  # None ends a segment: days without a value leave a gap
            if v is not None:
                segment.append((x_of(i), y_of(v)))
            elif len(segment) == 1:
                parts.append(f'<circle cx="{segment[0][0]:.1f}" cy="{segment[0][1]:.1f}" r="2.5" fill="{colour}">'
                             f'<title>{escape(label)}</title></circle>')
            elif segment:
                points = " ".join(f"{x:.1f},{y:.1f}" for x, y in segment)
                parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}">'
                             f'<title>{escape(label)}</title></polyline>')
            if v is None:
                segment = []
    parts.append("</svg>")
    return "".join(parts)


def interval_chart(rows, percent=False, zero_line=False, width=520, first_colour=0):
    """Estimates with their 95% intervals as horizontal bars: ``rows`` of ``(label, estimate,
    low, high, emphasis)``; a dashed reference line at the first row's estimate, or at 0."""
    plotted = [r for r in rows if r[1] is not None]
    if not plotted:
        return ""
    row_h, left, right = 26, 110, width - 70
    height = row_h * len(rows) + 24
    points = [v for r in plotted for v in r[1:4] if v is not None] + ([0.0] if zero_line else [])
    lo, hi = min(points), max(points)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 0.01
    lo, hi = lo - pad, hi + pad

    def x_of(v):
        return left + (v - lo) / (hi - lo) * (right - left)

    def text(v):
        return fmt_lift(v) if zero_line else fmt(v, percent, 2)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="rec-chart rec-intervals" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" font-family="sans-serif">']
    reference = 0.0 if zero_line else plotted[0][1]
    x = x_of(reference)
    parts.append(f'<line x1="{x:.1f}" y1="4" x2="{x:.1f}" y2="{height - 18}" stroke="#999" stroke-dasharray="4 3"/>'
                 f'<text x="{x:.1f}" y="{height - 6}" font-size="10" text-anchor="middle" fill="#555">'
                 f'{escape(text(reference))}</text>')
    for k, (label, estimate, low, high, emphasis) in enumerate(rows):
        y = 6 + row_h * k + row_h / 2
        weight = ' font-weight="bold"' if emphasis else ""
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" font-size="12" text-anchor="end"{weight}>'
                     f'{escape(label)}</text>')
        if estimate is None:
            continue
        colour = COLOURS[(k + first_colour) % len(COLOURS)]
        tip = f"{label}: {text(estimate)}"
        if low is not None and high is not None:
            tip += f" [{text(low)}, {text(high)}]"
            parts.append(f'<line x1="{x_of(low):.1f}" y1="{y:.1f}" x2="{x_of(high):.1f}" y2="{y:.1f}" '
                         f'stroke="{colour}" stroke-width="3"/>'
                         f'<line x1="{x_of(low):.1f}" y1="{y - 6:.1f}" x2="{x_of(low):.1f}" y2="{y + 6:.1f}" '
                         f'stroke="{colour}" stroke-width="2"/>'
                         f'<line x1="{x_of(high):.1f}" y1="{y - 6:.1f}" x2="{x_of(high):.1f}" y2="{y + 6:.1f}" '
                         f'stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<circle cx="{x_of(estimate):.1f}" cy="{y:.1f}" r="5" fill="{colour}"><title>{escape(tip)}'
                     f'</title></circle><text x="{right + 8}" y="{y + 4:.1f}" font-size="11">'
                     f'{escape(text(estimate))}</text>')
    parts.append("</svg>")
    return "".join(parts)


# Experiment results for templates -----------------------------------------------------------


def metric_context(metric, variants):
    """One metric of a report as rows a template prints, with its two SVG charts."""
    percent = metric.percent
    comparisons = {c.variant: c for c in metric.result.comparisons}
    algorithm = {v["name"]: v["algorithm"] for v in variants}
    rows = []
    for v in metric.result.variants:
        c = comparisons.get(v.name)
        rows.append({
            "name": v.name, "algorithm": "" if algorithm.get(v.name) == v.name else algorithm.get(v.name, ""),
            "visitors": fmt(v.visitors),
            "control": v.name == metric.result.control,
            "estimate": fmt(v.estimate, percent), "interval": _interval(v.low, v.high, percent),
            "lift": fmt_lift(c.lift) if c else "", "lift_interval": _lift_interval(c) if c else "",
            "p_value": fmt_p(c.p_value) if c else "", "significant": bool(c and c.significant),
            "warnings": list(dict.fromkeys(v.warnings + (c.warnings if c else []))),
        })
    estimates = [(v.name, v.estimate, v.low, v.high, v.name == metric.result.control)
                 for v in metric.result.variants]
    lifts = [(c.variant, c.lift, c.lift_low, c.lift_high, False) for c in metric.result.comparisons]
    return {"key": metric.key, "label": metric.label, "rows": rows,
            "estimate_svg": interval_chart(estimates, percent),
            "lift_svg": interval_chart(lifts, zero_line=True, first_colour=1)
            if any(c.lift is not None for c in comparisons.values()) else ""}


def _interval(low, high, percent=False):
    return "" if low is None or high is None else f"{fmt(low, percent)} – {fmt(high, percent)}"


def _lift_interval(c):
    return "" if c.lift_low is None or c.lift_high is None else f"{fmt_lift(c.lift_low)} – {fmt_lift(c.lift_high)}"


def report_context(experiment, keys=None):
    report = results.experiment_results(experiment)
    metrics = [m for m in report.metrics if keys is None or m.key in keys]
    return {"experiment": experiment, "report": report,
            "variants": [{**v, **{k: fmt(v[k]) for k in ("visitors", "impressions", "clicks", "converting",
                                                          "purchases")},
                          "revenue": fmt(v["revenue"], decimals=2), "share": fmt(v["share"], True, 0)}
                         for v in report.variants],
            "metrics": [metric_context(m, report.variants) for m in metrics],
            "srm_p_value": fmt_p(report.srm_p_value),
            "results_url": reverse("admin:recommender_experiment_results", args=[experiment.pk])}


# Experiments --------------------------------------------------------------------------------


class VariantFormSet(BaseInlineFormSet):
    """Validates the experiment with the variants as submitted (``validate_experiment``)."""

    def clean(self):
        super().clean()
        if any(self.errors):
            return
        variants = [form.instance for form in self.forms
                    if form.cleaned_data and not form.cleaned_data.get("DELETE")]
        try:
            experiments.validate_experiment(self.instance, variants)
        except ValidationError as exc:
            raise ValidationError([m for messages_ in exc.message_dict.values() for m in messages_]) from exc


class VariantInline(admin.TabularInline):
    model = Variant
    formset = VariantFormSet
    extra = 0
    min_num = 2
    fields = ["name", "algorithm", "share"]


class ExperimentForm(forms.ModelForm):
    class Meta:
        model = Experiment
        fields = "__all__"

    def _post_clean(self):
        # Experiment.clean() validates the saved variants; the inline formset validates the
        # submitted ones (VariantFormSet), so the model's check is skipped here.
        self.instance.clean = lambda: None
        try:
            super()._post_clean()
        finally:
            del self.instance.clean


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    form = ExperimentForm
    inlines = [VariantInline]
    list_display = ["name", "status", "blocks_display", "variants_display", "start", "stop", "results_link"]
    list_filter = ["status"]
    search_fields = ["name"]
    actions = ["start_experiments", "stop_experiments"]
    change_form_template = "admin/recommender/experiment/change_form.html"

    @admin.display(description=_("blocks"))
    def blocks_display(self, obj):
        return ", ".join(obj.blocks or [])

    @admin.display(description=_("variants"))
    def variants_display(self, obj):
        return ", ".join(f"{v.name} ({v.algorithm or '–'}, {fmt(v.share, True, 0)})" for v in obj.variants.all())

    @admin.display(description=_("results"))
    def results_link(self, obj):
        return format_html('<a href="{}">{}</a>', reverse("admin:recommender_experiment_results", args=[obj.pk]),
                           gettext("Results"))

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("variants")

    @admin.action(description=_("Start the selected experiments"), permissions=["change"])
    def start_experiments(self, request, queryset):
        for experiment in queryset:
            try:
                experiments.start(experiment)
            except ValidationError as exc:
                self.message_user(request, f"{experiment}: {' '.join(exc.messages)}", messages.ERROR)
            else:
                self.message_user(request, gettext("Started: %(name)s.") % {"name": experiment}, messages.SUCCESS)

    @admin.action(description=_("Stop the selected experiments"), permissions=["change"])
    def stop_experiments(self, request, queryset):
        for experiment in queryset:
            experiments.stop(experiment)
        self.message_user(request, gettext("Stopped: %(count)s.") % {"count": queryset.count()}, messages.SUCCESS)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [path("<int:pk>/results/", view(self.results_view), name="recommender_experiment_results"),
                *super().get_urls()]

    def results_view(self, request, pk):
        if not self.has_view_permission(request):
            raise PermissionDenied
        experiment = get_object_or_404(Experiment, pk=pk)
        context = {**self.admin_site.each_context(request), **report_context(experiment),
                   "title": gettext("Results of %(name)s") % {"name": experiment.name}, "opts": self.model._meta}
        return TemplateResponse(request, "admin/recommender/experiment/results.html", context)


# Daily statistics and the dashboard ---------------------------------------------------------


class PeriodForm(forms.Form):
    period = forms.ChoiceField(label=_("Period"), choices=PRESETS, initial="30", required=False)
    start = forms.DateField(label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        if data.get("period") == "custom" and data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise ValidationError(_("The start must not be after the end."))
        return data

    def dates(self):
        """``(first day, last day)`` of the chosen period (the last 30 days when invalid)."""
        today = timezone.localdate()
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        if data.get("period") == "custom":
            end = data.get("end") or today
            return data.get("start") or end - dt.timedelta(days=29), end
        days = int(data.get("period") or 30)
        return today - dt.timedelta(days=days - 1), today


def training_markers(first, last):
    """Activated training versions that finished in ``[first, last]``: one marker per day."""
    runs = (TrainingRun.objects.filter(status=TrainingRun.Status.SUCCEEDED, finished__isnull=False)
            .filter(Q(is_active=True) | Q(gate__startswith="accepted")).order_by("finished", "pk"))
    by_day = {}
    for run in runs:
        day = timezone.localdate(run.finished)
        if first <= day <= last:
            by_day.setdefault(day, []).append(run)
    markers = []
    for day, day_runs in by_day.items():
        names = [f"{r.algorithm} #{r.pk}" for r in day_runs]
        label = names[0] if len(names) == 1 else f"{names[0]} +{len(names) - 1}"
        markers.append((day, label, ", ".join(names)))
    return markers, [r for day_runs in by_day.values() for r in day_runs]


def dashboard_data(first, last):
    """Daily series and totals per block and algorithm from ``DailyBlockStats`` in ``[first, last]``."""
    rows = (DailyBlockStats.objects.filter(day__gte=first, day__lte=last).order_by()
            .values("day", "block", "algorithm")
            .annotate(impressions=Sum("impressions"), clicks=Sum("clicks"), add_to_carts=Sum("add_to_carts"),
                      purchases=Sum("purchases"), revenue=Sum("revenue")))
    days = [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]
    keys, by_key = [], {}
    for row in rows:
        key = (row["block"], row["algorithm"])
        if key not in by_key:
            keys.append(key)
            by_key[key] = {}
        by_key[key][row["day"]] = row
    keys.sort()
    totals, series = [], {name: [] for name, _label, _p in SERIES}
    grand = dict.fromkeys(["impressions", "clicks", "add_to_carts", "purchases"], 0) | {"revenue": 0.0}
    for n, key in enumerate(keys):
        colour, label = COLOURS[n % len(COLOURS)], f"{key[0]} · {key[1] or '–'}"
        daily = [by_key[key].get(day) for day in days]
        series["impressions"].append((label, colour, [r["impressions"] if r else 0 for r in daily]))
        series["ctr"].append((label, colour, [_ratio(r["clicks"], r["impressions"]) if r else None for r in daily]))
        series["conversion"].append((label, colour, [_ratio(r["purchases"], r["clicks"]) if r else None
                                                     for r in daily]))
        series["revenue"].append((label, colour, [float(r["revenue"]) if r else 0.0 for r in daily]))
        sums = {f: sum(r[f] for r in by_key[key].values()) for f in grand}
        for f in grand:
            grand[f] += float(sums[f]) if f == "revenue" else sums[f]
        totals.append({"block": key[0], "algorithm": key[1], "colour": colour, **_total_row(sums)})
    return days, series, totals, _total_row(grand)


def _total_row(sums):
    return {"impressions": fmt(sums["impressions"]), "clicks": fmt(sums["clicks"]),
            "ctr": fmt(_ratio(sums["clicks"], sums["impressions"]), True),
            "add_to_carts": fmt(sums["add_to_carts"]), "purchases": fmt(sums["purchases"]),
            "conversion": fmt(_ratio(sums["purchases"], sums["clicks"]), True),
            "revenue": fmt(float(sums["revenue"]), decimals=2),
            "rpm": fmt(_ratio(float(sums["revenue"]) * 1000, sums["impressions"]), decimals=2)}


@admin.register(DailyBlockStats)
class DailyBlockStatsAdmin(admin.ModelAdmin):
    list_display = ["day", "block", "algorithm", "run", "impressions", "clicks", "visitors", "add_to_carts",
                    "purchases", "revenue"]
    list_filter = ["block", "algorithm"]
    date_hierarchy = "day"
    change_list_template = "admin/recommender/dashboard/change_list.html"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        return [path("dashboard/", self.admin_site.admin_view(self.dashboard_view), name="recommender_dashboard"),
                *super().get_urls()]

    def dashboard_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = PeriodForm(request.GET or None)
        first, last = form.dates()
        days, series, totals, grand = dashboard_data(first, last)
        markers, runs = training_markers(first, last)
        charts = [line_chart(days, series[key], markers, str(label), percent) for key, label, percent in SERIES]
        experiment_admin = self.admin_site._registry.get(Experiment)
        shown = []
        if experiment_admin and experiment_admin.has_view_permission(request):
            overlapping = (Experiment.objects.exclude(status=Experiment.Status.DRAFT)
                           .filter(Q(start__isnull=True) | Q(start__date__lte=last))
                           .filter(Q(stop__isnull=True) | Q(stop__date__gte=first)))
            shown = [report_context(e, DASHBOARD_METRICS) for e in overlapping[:MAX_EXPERIMENTS]]
        context = {**self.admin_site.each_context(request), "title": gettext("Recommendations dashboard"),
                   "opts": self.model._meta, "form": form, "first": first, "last": last,
                   "charts": charts, "legend": totals, "totals": totals, "grand": grand, "runs": runs,
                   "experiments": shown}
        return TemplateResponse(request, "admin/recommender/dashboard/dashboard.html", context)
