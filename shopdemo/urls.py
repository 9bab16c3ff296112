"""URLs of the demo shop."""

from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static as static_url
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # set_language: the storefront's language switcher posts here (no language prefix in URLs).
    path("i18n/", include("django.conf.urls.i18n")),
    path("recommender/", include("recommender.urls")),
    # OpenAPI schema of the recommender API, with Swagger UI and ReDoc (no CDN needed).
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema", template_name="shop/api/redoc.html"),
         name="redoc"),
    path("favicon.ico", RedirectView.as_view(url=static_url("shop/favicon.svg"), permanent=True)),
    path("", include("shopdemo.shop.urls")),
]
# Uploaded product images while DEBUG (static() adds nothing otherwise: serve MEDIA_ROOT
# from the web server in production).
urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
