"""Admin of training runs: list with live progress, train now, activate / roll back, metrics chart."""

import datetime as dt
import math
import re
from datetime import UTC, datetime

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models.functions import Coalesce
from django.http import JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.templatetags.static import static
from django.urls import path, reverse
from django.utils.formats import date_format, number_format
from django.utils.html import escape, format_html, format_html_join
from django.utils.text import capfirst
from django.utils.timezone import localtime
from django.utils.translation import gettext, ngettext, pgettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from recommender.conf import rec_settings
from recommender.models import ServedList, TrainingRun

CHART_METRICS = ["ndcg", "precision", "recall", "map", "hit_rate", "coverage", "train_seconds"]
COLOURS = ["#1b6b5f", "#d1495b", "#edae49", "#00798c", "#6a4c93", "#8d6a9f", "#3d405b", "#81b29a"]

#: The progress messages written by recommender.training.services, translated when shown.
PROGRESS_MESSAGES = {
    "starting": _("starting"),
    "loading interactions": _("loading interactions"),
    "evaluating on held-out interactions": _("evaluating on held-out interactions"),
    "training on all interactions": _("training on all interactions"),
    "scoring the active version on the same held-out interactions":
        _("scoring the active version on the same held-out interactions"),
    "saving": _("saving"),
    "done": _("done"),
    "failed": _("failed"),
}
EPOCH_MESSAGE = re.compile(r"epoch (\d+)/(\d+)")
SKIPPED_MESSAGE = re.compile(
    r"evaluating on held-out interactions \((\d+) rows skipped: non-finite or absurd weights\)")

#: The keys of a run's metrics (written by recommender.training.services and
#: recommender.engine.evaluation.evaluate_engine), in the order and with the labels of the
#: run page's table. Keys not listed follow under their own names.
METRIC_LABELS = {
    "ndcg": _("NDCG@10"),
    "precision": _("Precision@10"),
    "recall": _("Recall@10"),
    "f1": _("F1@10"),
    "map": _("MAP@10"),
    "hit_rate": _("Hit rate@10"),
    "coverage": _("Catalog coverage"),
    "novelty": _("Novelty"),
    "users": _("Users evaluated"),
    "recommend_seconds": _("Time to recommend for them all"),
    "train_seconds": _("Training time"),
    "skipped_rows": _("Interaction rows skipped"),
    "gate_ndcg": _("Gate: NDCG@10 of this version"),
    "gate_active_ndcg": _("Gate: NDCG@10 of the active version"),
    "gate_active_run": _("Gate: active run compared with"),
    "gate_users": _("Gate: users compared"),
    "gate_interactions": _("Gate: held-out interactions"),
}
SECONDS_METRICS = {"train_seconds", "recommend_seconds"}
PENDING = ("queued", "running")


def significant(value, digits=4):
    """``value`` with ``digits`` significant digits in the active language's number format,
    without exponents (0.08123, 12.35, 1,235); integers as they are (1,234)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return number_format(value, force_grouping=True)
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    decimals = max(digits - 1 - math.floor(math.log10(abs(value))), 0)
    return number_format(round(value, decimals), decimals, force_grouping=True)


def megabytes(size):
    """A size in bytes as megabytes (10^6 bytes) with 3 significant digits."""
    if size is None:
        return ""
    return gettext("%(size)s MB") % {"size": significant(size / 1e6, 3)}


def progress_text(message):
    """A run's progress message in the request's language (other messages as they are)."""
    known = PROGRESS_MESSAGES.get(message)
    if known is not None:
        return str(known)
    epoch = EPOCH_MESSAGE.fullmatch(message or "")
    if epoch:
        return gettext("epoch %(epoch)s/%(epochs)s") % {"epoch": epoch[1], "epochs": epoch[2]}
    skipped = SKIPPED_MESSAGE.fullmatch(message or "")
    if skipped:
        return gettext("evaluating on held-out interactions (%(rows)s rows skipped: non-finite or absurd "
                       "weights)") % {"rows": skipped[1]}
    return message


def status_html(run):
    """The status badge, found and updated by the live-progress script (admin_runs.js)."""
    return format_html('<span class="rec-status rec-{}" data-run-status="{}">{}</span>',
                       run.status, run.pk, run.get_status_display())


def progress_html(run):
    """A progress bar with the progress message, updated live while the run is queued or running."""
    return format_html('<span class="rec-progress" data-run="{}"><progress max="100" value="{}"></progress> '
                       '<small>{}</small></span>', run.pk, round(run.progress * 100),
                       progress_text(run.progress_message))


def ndcg_text(metrics):
    value = (metrics or {}).get("ndcg")
    return "" if value is None else f"{value:.4f}"


def duration_text(run):
    if run.duration is None:
        return ""
    return gettext("%(seconds).1f s") % {"seconds": run.duration.total_seconds()}


class TrainForm(forms.Form):
    algorithms = forms.MultipleChoiceField(label=_("Algorithms"), widget=forms.CheckboxSelectMultiple)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["algorithms"].choices = [(name, name) for name in rec_settings.ALGORITHMS]
        self.fields["algorithms"].initial = list(rec_settings.TRAIN_ALGORITHMS)


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    # Who queued a run is on its page; the list stays within a laptop screen beside the
    # admin's navigation and filter sidebars.
    list_display = ["run_label", "status_badge", "active_badge", "ndcg", "duration_display", "queued_at"]
    list_filter = ["algorithm", "status", "is_active"]
    ordering = ["-created", "-id"]
    actions = ["train_again", "activate_runs"]
    list_per_page = 50
    fieldsets = [
        (None, {"fields": ["algorithm", "status_display", "is_active", "gate", "progress_display",
                           "requested_by", "task_id"]}),
        (_("Data snapshot"), {"fields": ["n_users", "n_items", "n_interactions", "data_cutoff"]}),
        (_("Timing"), {"fields": ["created", "started", "finished", "heartbeat"]}),
        (_("Results"), {"fields": ["metrics_table", "params", "artifact_path", "artifact_size_display"]}),
        (_("Error"), {"fields": ["error", "traceback"], "classes": ["collapse"]}),
    ]

    @admin.display(description=_("training run"), ordering="-id")
    def run_label(self, obj):
        return f"{obj.algorithm} #{obj.pk}"  # the status has its own column

    @admin.display(description=_("queued at"), ordering="created")
    def queued_at(self, obj):
        return date_format(localtime(obj.created), "SHORT_DATETIME_FORMAT") if obj.created else ""

    def get_fieldsets(self, request, obj=None):
        """The fieldsets; "Error" only on a run that has one."""
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and not (obj.error or obj.traceback):
            fieldsets = [fs for fs in fieldsets if fs[1]["fields"] != ["error", "traceback"]]
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in TrainingRun._meta.fields] + [
            "status_display", "progress_display", "progress_message_display", "metrics_table",
            "artifact_size_display"]

    def has_change_permission(self, request, obj=None):
        """A run is a record nobody edits: its page is read-only (no Save buttons). The
        permission without an object still gates the actions and "Train now"."""
        if obj is not None:
            return False
        return super().has_change_permission(request)

    def has_add_permission(self, request):
        return False  # runs are made by "Train now", the schedule or the API

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and not (obj and obj.is_active)

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj):
        """The status; under it, while queued or running, a live progress bar (a finished
        run needs no bar, and one column fewer keeps the list within a laptop screen)."""
        if obj.status not in PENDING:
            return status_html(obj)
        return format_html("{}{}", status_html(obj), progress_html(obj))

    @admin.display(description=pgettext_lazy("training run", "active"), ordering="is_active")
    def active_badge(self, obj):
        """Django's yes/no icon; under the "no" of a succeeded run the gate refused, the
        words saying so (the gate's line in full on hover and on the run's page)."""
        yes = bool(obj.is_active)
        icon = format_html('<img src="{}" alt="{}">', static(f"admin/img/icon-{'yes' if yes else 'no'}.svg"), yes)
        if yes or not obj.refused_by_gate:
            return icon
        return format_html('{}<small class="rec-gate" title="{}">{}</small>', icon, obj.gate,
                           gettext("refused by the gate"))

    @admin.display(description=_("status"))
    def status_display(self, obj):
        return status_html(obj)

    @admin.display(description=_("progress"))
    def progress_display(self, obj):
        """While queued or running: a live progress bar; then the last message ("done", "failed")."""
        if obj.status in PENDING:
            return progress_html(obj)
        return progress_text(obj.progress_message)

    @admin.display(description=_("progress message"))
    def progress_message_display(self, obj):
        return progress_text(obj.progress_message)

    @admin.display(description=_("held-out metrics"))
    def metrics_table(self, obj):
        """The metrics as a table of labelled values with 4 significant digits (not JSON)."""
        metrics = obj.metrics or {}
        if not metrics:
            return "-"
        keys = [k for k in METRIC_LABELS if k in metrics] + sorted(k for k in metrics if k not in METRIC_LABELS)
        rows = []
        for key in keys:
            value = metrics[key]
            text = significant(value)
            if key in SECONDS_METRICS and isinstance(value, int | float):
                text = gettext("%(seconds)s s") % {"seconds": text}
            elif key == "gate_active_run" and isinstance(value, int):
                text = f"#{value}"
            rows.append((METRIC_LABELS.get(key, key), key, text))
        return format_html('<table class="rec-metrics"><tbody>{}</tbody></table>', format_html_join(
            "", '<tr><th scope="row">{}</th><td class="rec-metric-{}">{}</td></tr>', rows))

    @admin.display(description=_("artifact size"))
    def artifact_size_display(self, obj):
        return megabytes(obj.artifact_size)

    @admin.display(description=_("NDCG@10"))
    def ndcg(self, obj):
        return ndcg_text(obj.metrics)

    @admin.display(description=_("duration"))
    def duration_display(self, obj):
        return duration_text(obj)

    # actions -------------------------------------------------------------------------

    # Both actions change what is trained or served: they need the change permission on
    # training runs (Django hides them from, and refuses them to, view-only staff).
    @admin.action(description=_("Train the selected runs' algorithms again now"), permissions=["change"])
    def train_again(self, request, queryset):
        names = sorted(set(queryset.values_list("algorithm", flat=True)))
        self._enqueue(request, names)

    @admin.action(description=_("Activate the selected versions (roll back)"), permissions=["change"])
    def activate_runs(self, request, queryset):
        from recommender.training import services  # lazily: keeps the engine out of web start-up

        done = []
        for run in queryset.order_by("algorithm", "-finished"):
            if run.algorithm in {r.algorithm for r in done}:
                self.message_user(request, _("Select one version per algorithm; skipped run #%(pk)s.")
                                  % {"pk": run.pk}, messages.WARNING)
                continue
            try:
                done.append(services.activate(run))
            except services.TrainingError as exc:
                self.message_user(request, str(exc), messages.ERROR)
        if done:
            self.message_user(request, ngettext(
                "Activated %(runs)s; its served lists are being refreshed.",
                "Activated %(runs)s; their served lists are being refreshed.", len(done))
                % {"runs": ", ".join(str(r) for r in done)}, messages.SUCCESS)

    def _enqueue(self, request, names):
        from recommender.training import services  # lazily: keeps the engine out of web start-up

        try:
            runs = services.enqueue_training(names, requested_by=request.user.get_username())
        except services.TrainingError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, _("Queued: %(runs)s.") % {"runs": ", ".join(str(r) for r in runs)},
                          messages.SUCCESS)

    # extra pages ---------------------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("train/", view(self.train_view), name="recommender_trainingrun_train"),
            path("progress/", view(self.progress_view), name="recommender_trainingrun_progress"),
            path("chart/", view(self.chart_view), name="recommender_trainingrun_chart"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        # The title is the model's name, not "Select training run to change": runs are not edited.
        extra_context = {"can_train": self.has_change_permission(request),
                         "title": capfirst(self.model._meta.verbose_name_plural), **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    def train_view(self, request):
        if not self.has_change_permission(request):
            raise PermissionDenied
        form = TrainForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            self._enqueue(request, form.cleaned_data["algorithms"])
            return redirect("admin:recommender_trainingrun_changelist")
        context = {**self.admin_site.each_context(request), "title": _("Train algorithms now"),
                   "form": form, "opts": self.model._meta}
        return TemplateResponse(request, "admin/recommender/trainingrun/train.html", context)

    def progress_view(self, request):
        """Live progress of the queued and running runs (polled by the change list)."""
        if not self.has_view_permission(request):
            return JsonResponse({}, status=403)
        ids = [int(i) for i in request.GET.get("ids", "").split(",") if i.isdigit()][:200]
        runs = TrainingRun.objects.filter(pk__in=ids).only(
            "pk", "status", "progress", "progress_message", "metrics", "started", "finished")
        return JsonResponse({"runs": [
            {"pk": run.pk, "status": run.status, "status_display": str(run.get_status_display()),
             "progress": round(run.progress * 100), "progress_message": progress_text(run.progress_message),
             "ndcg": ndcg_text(run.metrics), "duration": duration_text(run)}
            for run in runs.order_by("pk")]})

    def chart_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        metric = request.GET.get("metric", "ndcg")
        if metric not in CHART_METRICS:
            metric = "ndcg"
        runs = TrainingRun.objects.filter(status=TrainingRun.Status.SUCCEEDED).annotate(
            at=Coalesce("finished", "created"))  # a succeeded run has finished; hand-made rows may not
        series = {}
        for run in runs.order_by("at", "pk").values("pk", "algorithm", "metrics", "is_active", "at"):
            value = (run["metrics"] or {}).get(metric)
            if isinstance(value, int | float) and math.isfinite(value):
                series.setdefault(run["algorithm"], []).append((run["pk"], float(value), run["is_active"], run["at"]))
        label = METRIC_LABELS.get(metric, metric)
        if metric in SECONDS_METRICS:
            label = gettext("%(metric)s (s)") % {"metric": label}
        context = {**self.admin_site.each_context(request), "title": _("Offline metrics across versions"),
                   "opts": self.model._meta, "metric": metric,
                   "metrics": [(m, METRIC_LABELS.get(m, m)) for m in CHART_METRICS],
                   "svg": _svg_chart(series, str(label)),
                   "series": sorted((a, [p[:3] for p in points]) for a, points in series.items()),
                   "changelist": reverse("admin:recommender_trainingrun_changelist")}
        return TemplateResponse(request, "admin/recommender/trainingrun/chart.html", context)


def _nice_step(span, ticks=4):
    """A round tick step (1, 2, 2.5 or 5 times a power of ten) giving about ``ticks`` ticks."""
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


#: Steps of the time axis's ticks, in seconds: the smallest that gives at most 6 ticks is used.
TIME_STEPS = [60 * m for m in (1, 5, 10, 15, 30)] + [3600 * h for h in (1, 2, 3, 6, 12)] + [
    86400 * d for d in (1, 2, 7, 14, 28, 91, 182, 364)]


def _time_ticks(t_min, t_max):
    """``[(timestamp, label)]``: round times between two timestamps (whole hours, local
    midnights...), labelled as precisely as their step needs."""
    span = t_max - t_min
    step = next((s for s in TIME_STEPS if span / s <= 6), TIME_STEPS[-1])
    start = localtime(datetime.fromtimestamp(t_min, tz=UTC))
    if step >= 86400:
        start = start.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        minutes = step // 60
        start = start.replace(minute=start.minute // minutes * minutes if minutes < 60 else 0,
                              second=0, microsecond=0)
        if minutes > 60:
            start = start.replace(hour=start.hour // (minutes // 60) * (minutes // 60))
    ticks, moment = [], start
    while moment.timestamp() <= t_max:
        if moment.timestamp() >= t_min:
            if span < 86400:
                label = date_format(moment, "H:i")
            elif step < 86400:
                label = f'{date_format(moment, "MONTH_DAY_FORMAT")} {date_format(moment, "H:i")}'
            elif span < 300 * 86400:
                label = date_format(moment, "MONTH_DAY_FORMAT")
            else:
                label = date_format(moment, "SHORT_DATE_FORMAT")
            ticks.append((moment.timestamp(), label))
        moment = localtime(moment + dt.timedelta(seconds=step))
    return ticks


def _svg_chart(series, y_label, width=860, height=340):
    """The metric of every succeeded version over time: x = when it finished, y = the metric
    (from 0), a line and a colour per algorithm, a legend; inline SVG, no scripts.

    ``series`` maps an algorithm to its ``(pk, value, is_active, finished)``, oldest first.
    """
    if not series:
        return ""
    left, right, top, bottom = 72, width - 190, 16, height - 56  # the plot area
    values = [v for points in series.values() for _pk, v, _a, _f in points]
    times = [f.timestamp() for points in series.values() for _pk, _v, _a, f in points]
    high = max(values)
    step = _nice_step(high) if high > 0 else 1.0
    y_max = step * math.ceil(high / step) if high > 0 else 1.0
    exponent = math.floor(math.log10(step))
    decimals = max(0, -exponent + (1 if round(step / 10 ** exponent, 6) == 2.5 else 0))  # 0.025: 3
    t_min, t_max = min(times), max(times)
    if t_max - t_min < 60:  # one moment: centre it in an hour
        t_min, t_max = t_min - 1800, t_max + 1800
    span = t_max - t_min
    t_min, t_max = t_min - span * 0.03, t_max + span * 0.03  # keep the end points off the axes

    def x_of(t):
        return left + (t - t_min) / (t_max - t_min) * (right - left)

    def y_of(v):
        return bottom - v / y_max * (bottom - top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="rec-chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" font-family="sans-serif">',
             f'<title>{escape(y_label)}</title>']
    n_ticks = round(y_max / step)
    for i in range(n_ticks + 1):
        tick = i * step
        y = y_of(tick)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#555">'
                     f'{escape(number_format(tick, decimals))}</text>')
    for t, label in _time_ticks(t_min, t_max):
        x = x_of(t)
        parts.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 5}" stroke="#999"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 18}" font-size="11" text-anchor="middle" fill="#555">'
                     f'{escape(label)}</text>')
    # (gettext outside the f-strings: xgettext does not see calls inside them)
    x_label, active_version = capfirst(gettext("finished at")), gettext("active version")
    parts += [f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#999"/>',
              f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#999"/>',
              f'<text class="rec-x-label" x="{(left + right) / 2:.1f}" y="{height - 12}" font-size="12" '
              f'text-anchor="middle">{escape(x_label)}</text>',
              f'<text class="rec-y-label" x="0" y="0" font-size="12" text-anchor="middle" '
              f'transform="translate(16 {(top + bottom) / 2:.1f}) rotate(-90)">{escape(y_label)}</text>']
    active_label = pgettext("training run", "active")
    legend_x = right + 24
    for n, (algorithm, points) in enumerate(sorted(series.items())):
        colour = COLOURS[n % len(COLOURS)]
        xy = [(x_of(f.timestamp()), y_of(v)) for _pk, v, _a, f in points]
        if len(xy) > 1:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                         + " ".join(f"{x:.1f},{y:.1f}" for x, y in xy) + '"/>')
        for (x, y), (pk, v, active, finished) in zip(xy, points, strict=True):
            when = date_format(localtime(finished), "SHORT_DATETIME_FORMAT")
            note = f" ({active_label})" if active else ""
            ring = ' stroke="#000" stroke-width="1.5"' if active else ""
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{6 if active else 3.5}" fill="{colour}"{ring}>'
                         f'<title>{escape(algorithm)} #{pk}: {v:.4f}{escape(note)}, {escape(when)}</title></circle>')
        y = top + 8 + 20 * n
        parts.append(f'<g class="rec-legend"><line x1="{legend_x}" y1="{y}" x2="{legend_x + 22}" y2="{y}" '
                     f'stroke="{colour}" stroke-width="2"/><circle cx="{legend_x + 11}" cy="{y}" r="3.5" '
                     f'fill="{colour}"/><text x="{legend_x + 30}" y="{y + 4}" font-size="12">'
                     f'{escape(algorithm)}</text></g>')
    y = top + 8 + 20 * len(series) + 8
    parts.append(f'<g class="rec-legend"><circle cx="{legend_x + 11}" cy="{y}" r="6" fill="#fff" stroke="#000" '
                 f'stroke-width="1.5"/><text x="{legend_x + 30}" y="{y + 4}" font-size="12">'
                 f'{escape(active_version)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


@admin.register(ServedList)
class ServedListAdmin(admin.ModelAdmin):
    list_display = ["kind", "algorithm", "subject", "length", "updated", "run"]
    list_filter = ["kind", "algorithm"]
    search_fields = ["=subject"]
    raw_id_fields = ["run"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in ServedList._meta.fields]

    def has_add_permission(self, request):
        return False

    @admin.display(description=_("items"))
    def length(self, obj):
        return len(obj.items or [])
