"""Admin of training runs: list with live progress, train now, activate / roll back, metrics chart."""

import re

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.formats import date_format
from django.utils.html import escape, format_html
from django.utils.timezone import localtime
from django.utils.translation import gettext, ngettext, pgettext
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
    "saving": _("saving"),
    "done": _("done"),
    "failed": _("failed"),
}
EPOCH_MESSAGE = re.compile(r"epoch (\d+)/(\d+)")


def progress_text(message):
    """A run's progress message in the request's language (other messages as they are)."""
    known = PROGRESS_MESSAGES.get(message)
    if known is not None:
        return str(known)
    epoch = EPOCH_MESSAGE.fullmatch(message or "")
    if epoch:
        return gettext("epoch %(epoch)s/%(epochs)s") % {"epoch": epoch[1], "epochs": epoch[2]}
    return message


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
    list_display = ["run_label", "status_badge", "is_active", "ndcg", "duration_display", "queued_at"]
    list_filter = ["algorithm", "status", "is_active"]
    ordering = ["-created", "-id"]
    actions = ["train_again", "activate_runs"]
    list_per_page = 50
    fieldsets = [
        (None, {"fields": ["algorithm", "status", "is_active", "gate", "progress",
                           "progress_message_display", "requested_by", "task_id"]}),
        (_("Data snapshot"), {"fields": ["n_users", "n_items", "n_interactions", "data_cutoff"]}),
        (_("Timing"), {"fields": ["created", "started", "finished", "heartbeat"]}),
        (_("Results"), {"fields": ["metrics", "params", "artifact_path", "artifact_size"]}),
        (_("Error"), {"fields": ["error", "traceback"], "classes": ["collapse"]}),
    ]

    @admin.display(description=_("training run"), ordering="-id")
    def run_label(self, obj):
        return f"{obj.algorithm} #{obj.pk}"  # the status has its own column

    @admin.display(description=_("queued at"), ordering="created")
    def queued_at(self, obj):
        return date_format(localtime(obj.created), "SHORT_DATETIME_FORMAT") if obj.created else ""

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in TrainingRun._meta.fields] + ["progress_message_display"]

    def has_add_permission(self, request):
        return False  # runs are made by "Train now", the schedule or the API

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and not (obj and obj.is_active)

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj):
        """The status; under it, while queued or running, a live progress bar (a finished
        run needs no bar, and one column fewer keeps the list within a laptop screen)."""
        badge = format_html('<span class="rec-status rec-{}">{}</span>', obj.status, obj.get_status_display())
        if obj.status not in (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING):
            return badge
        return format_html(
            '{}<span class="rec-progress" data-run="{}"><progress max="100" value="{}"></progress> '
            '<small>{}</small></span>', badge, obj.pk, round(obj.progress * 100),
            progress_text(obj.progress_message))

    @admin.display(description=_("progress message"))
    def progress_message_display(self, obj):
        return progress_text(obj.progress_message)

    @admin.display(description=_("NDCG@10"))
    def ndcg(self, obj):
        value = (obj.metrics or {}).get("ndcg")
        return "" if value is None else f"{value:.4f}"

    @admin.display(description=_("duration"))
    def duration_display(self, obj):
        if obj.duration is None:
            return ""
        return gettext("%(seconds).1f s") % {"seconds": obj.duration.total_seconds()}

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
        extra_context = {"can_train": self.has_change_permission(request), **(extra_context or {})}
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
        rows = TrainingRun.objects.filter(pk__in=ids).values("pk", "status", "progress", "progress_message")
        return JsonResponse({"runs": [{**r, "progress": round(r["progress"] * 100),
                                       "progress_message": progress_text(r["progress_message"])}
                                      for r in rows]})

    def chart_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        metric = request.GET.get("metric", "ndcg")
        if metric not in CHART_METRICS:
            metric = "ndcg"
        runs = TrainingRun.objects.filter(status=TrainingRun.Status.SUCCEEDED).order_by("finished", "pk")
        series = {}
        for run in runs.values("pk", "algorithm", "metrics", "is_active", "finished"):
            value = (run["metrics"] or {}).get(metric)
            if value is not None:
                series.setdefault(run["algorithm"], []).append((run["pk"], float(value), run["is_active"]))
        context = {**self.admin_site.each_context(request), "title": _("Offline metrics across versions"),
                   "opts": self.model._meta, "metric": metric, "metrics": CHART_METRICS,
                   "svg": _svg_chart(series), "series": sorted(series.items()),
                   "changelist": reverse("admin:recommender_trainingrun_changelist")}
        return TemplateResponse(request, "admin/recommender/trainingrun/chart.html", context)


def _svg_chart(series, width=760, height=300, pad=40):
    """A line per algorithm: its metric over its successive versions (inline SVG, no scripts)."""
    if not series:
        return ""
    active_label = f' ({escape(pgettext("training run", "active"))})'
    top = max(v for points in series.values() for _pk, v, _a in points) or 1.0
    longest = max(len(points) for points in series.values())
    step = (width - 2 * pad) / max(longest - 1, 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>',
             f'<line x1="{pad}" y1="{pad / 2}" x2="{pad}" y2="{height - pad}" stroke="#999"/>',
             f'<text x="4" y="{pad / 2 + 4}" font-size="11">{top:.3f}</text>',
             f'<text x="4" y="{height - pad}" font-size="11">0</text>']
    for n, (algorithm, points) in enumerate(sorted(series.items())):
        colour = COLOURS[n % len(COLOURS)]
        xy = [(pad + i * step, height - pad - (v / top) * (height - 1.5 * pad))
              for i, (_pk, v, _a) in enumerate(points)]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                     + " ".join(f"{x:.1f},{y:.1f}" for x, y in xy) + '"/>')
        for (x, y), (pk, v, active) in zip(xy, points, strict=True):
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{5 if active else 3}" fill="{colour}">'
                         f'<title>{escape(algorithm)} #{pk}: {v:.4f}{active_label if active else ""}</title>'
                         '</circle>')
        parts.append(f'<text x="{width - pad + 4 - 120}" y="{pad / 2 + 14 * (n + 1)}" font-size="12" '
                     f'fill="{colour}">{escape(algorithm)}</text>')
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
