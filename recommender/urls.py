"""URLs of the recommender app: ``path("recommender/", include("recommender.urls"))``."""

from django.urls import include, path

app_name = "recommender"

urlpatterns = [
    path("api/", include("recommender.api.urls")),
]
