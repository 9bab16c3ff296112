"""A minimal site that is not the demo: its own product model (``catalog.Gadget``), the
app's defaults wherever possible, SQLite in memory and a local-memory cache.

Run: ``python -m pytest tests/standalone --ds tests.standalone.settings`` (``./run tests``
does).
"""

SECRET_KEY = "standalone-tests"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "tests.standalone.catalog",
    "recommender",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.standalone.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STATIC_URL = "/static/"
MEDIA_ROOT = "/tmp/recommender-standalone-media"
CELERY_TASK_ALWAYS_EAGER = True

RECOMMENDER = {
    "ITEM_MODEL": "catalog.Gadget",
    "ITEM_FIELDS": {"title": "name", "text": ["blurb"], "category": "kind", "price": "cost",
                    "available": "on_sale", "external_id": "sku"},
}
