"""Training API: list and inspect training runs, start a training.

Django model permissions decide, as in the admin: ``recommender.view_trainingrun`` to
list and read runs, ``recommender.add_trainingrun`` to start a training (superusers have
both; ``is_staff`` alone gives neither).
"""

from rest_framework import status
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import DjangoModelPermissions
from rest_framework.response import Response

from recommender.api.schema import RUN_ID, OpenApiParameter, errors, extend_schema, extend_schema_view
from recommender.api.serializers import StartTrainingSerializer, TrainingRunSerializer
from recommender.api.views import APIDefaultsMixin
from recommender.models import TrainingRun

#: The runs a POST queued, as a plain array: a raw schema, because drf-spectacular pages a
#: list serializer (and adds limit/offset) on a view with a paginator, POST included.
_STARTED_RUNS = {"type": "array", "items": {"$ref": "#/components/schemas/TrainingRun"}}


class TrainingRunPagination(LimitOffsetPagination):
    default_limit = 20
    max_limit = 100


class TrainingRunPermissions(DjangoModelPermissions):
    """Reading runs needs the view permission (DRF's default needs none); starting one, add."""

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }


@extend_schema_view(get=extend_schema(
    parameters=[OpenApiParameter("algorithm", str, description="Only the runs of this algorithm."),
                OpenApiParameter("status", str, enum=TrainingRun.Status.values,
                                 description="Only runs in this state.")],
    responses={200: TrainingRunSerializer(many=True), **errors(403, 503)}))
class TrainingRunsView(APIDefaultsMixin, ListAPIView):
    """GET: training runs, newest first (`?algorithm=`, `?status=` filter). POST: start a training.

    POST `{"algorithms": ["als", "itemknn"]}` queues one run per algorithm
    (`recommender.training.services.enqueue_training`) and answers HTTP 202 with the runs.
    """

    permission_classes = [TrainingRunPermissions]
    serializer_class = TrainingRunSerializer
    pagination_class = TrainingRunPagination

    def get_queryset(self):
        runs = TrainingRun.objects.all()
        for field in ("algorithm", "status"):
            value = self.request.query_params.get(field)
            if value:
                runs = runs.filter(**{field: value})
        return runs

    @extend_schema(request=StartTrainingSerializer, responses={202: _STARTED_RUNS, **errors(400, 403, 413, 503)})
    def post(self, request):
        serializer = StartTrainingSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        from recommender.training import services  # the training side: not imported on reads

        runs = services.enqueue_training(serializer.validated_data["algorithms"],
                                         requested_by=request.user.get_username())
        return Response(TrainingRunSerializer(runs, many=True).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(get=extend_schema(parameters=[RUN_ID],
                                      responses={200: TrainingRunSerializer, **errors(403, 404, 503)}))
class TrainingRunView(APIDefaultsMixin, RetrieveAPIView):
    """One training run: status, progress, data snapshot, metrics, gate decision, error."""

    permission_classes = [TrainingRunPermissions]
    serializer_class = TrainingRunSerializer
    queryset = TrainingRun.objects.all()

