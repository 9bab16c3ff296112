"""URLs of the recommender API (included under the app's namespace)."""

from django.urls import path

from recommender.api import views

urlpatterns = [
    path("events/", views.EventsView.as_view(), name="events"),
]
