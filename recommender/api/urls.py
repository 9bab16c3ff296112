"""URLs of the recommender API (included under the app's namespace)."""

from django.urls import path

from recommender.api import training, views
from recommender.fastpath import views as recommendations

urlpatterns = [
    path("events/", views.EventsView.as_view(), name="events"),
    path("recommendations/", recommendations.recommendations_view, name="recommendations"),
    path("items/<str:pk>/similar/", recommendations.similar_items_view, name="similar-items"),
    path("items/<str:pk>/bought-together/", recommendations.bought_together_view, name="bought-together"),
    path("trending/", recommendations.trending_view, name="trending"),
    path("training-runs/", training.TrainingRunsView.as_view(), name="training-runs"),
    path("training-runs/<int:pk>/", training.TrainingRunView.as_view(), name="training-run"),
]
