"""Settings of the demo shop.

With no environment set it runs on SQLite with no servers (Celery over kombu's
filesystem transport) and no cache. Set DATABASE_URL (PostgreSQL), REDIS_URL (cache) and
CELERY_BROKER_URL (Redis) to run on the real services.

DEBUG is off unless DJANGO_DEBUG=1 (``./run demo`` sets it); with DEBUG off the site
needs DJANGO_SECRET_KEY and serves HTTPS only (DJANGO_HTTPS=0 for plain HTTP behind
nothing, e.g. a benchmark on the loopback). ``manage.py check --deploy`` with DEBUG off,
DJANGO_SECRET_KEY and REDIS_URL set reports one warning, explained at SECURE_HSTS_SECONDS
below (docs/checks.md).
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("SHOPDEMO_VAR_DIR", BASE_DIR / "var"))

# Debug pages show settings and source: only when asked for (./run demo exports DJANGO_DEBUG=1).
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
#: The key in this public repository: anyone can sign sessions and password-reset links with it.
PUBLIC_SECRET_KEY = "shopdemo-insecure-key-for-local-use-only"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", PUBLIC_SECRET_KEY)
if not DEBUG and SECRET_KEY == PUBLIC_SECRET_KEY:
    raise ImproperlyConfigured(
        "DEBUG is off and DJANGO_SECRET_KEY is not set: the demo refuses to run with the public key of "
        "shopdemo/settings.py. Set DJANGO_SECRET_KEY to a long random string (python -c \"import secrets; "
        "print(secrets.token_urlsafe(50))\"), or DJANGO_DEBUG=1 to run it locally as ./run demo does."
    )
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

# HTTPS only when DEBUG is off (DJANGO_HTTPS=0 serves plain HTTP; =1 forces it on with DEBUG).
HTTPS = os.environ.get("DJANGO_HTTPS", "0" if DEBUG else "1") == "1"
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
if os.environ.get("DJANGO_TLS_PROXY") == "1":
    # Behind a proxy that ends TLS and sets X-Forwarded-Proto (only then: a client could send it).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# security.W004 (check --deploy) stays until DJANGO_HSTS_SECONDS is set: HSTS makes browsers
# refuse plain HTTP to this host for that long, a promise only the domain's owner can make,
# and with it Django also warns about SECURE_HSTS_INCLUDE_SUBDOMAINS and SECURE_HSTS_PRELOAD,
# which commit every subdomain. Start with 3600 and raise it once HTTPS works everywhere.
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "0"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc served from our static files, no CDN
    "shopdemo.shop",
    "recommender",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # After the session and before CommonMiddleware: picks the language from the
    # language cookie (set by the storefront's switcher), then Accept-Language.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# bench/bench_serving.py serves the site plus two bare baseline views (shopdemo/bench_urls.py).
ROOT_URLCONF = os.environ.get("SHOPDEMO_URLCONF", "shopdemo.urls")
WSGI_APPLICATION = "shopdemo.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "shopdemo" / "templates"],  # the admin's favicon (admin/base_site.html)
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "shopdemo.shop.context_processors.shop",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'shopdemo.sqlite3'}",
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while the worker writes.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }

REDIS_URL = os.environ.get("REDIS_URL")
if REDIS_URL:
    # Django's RedisCache, keeping one redis-py client per process (recommender/fastpath/redis_cache.py).
    # Its near cache (recommender/fastpath/near_cache.py) keeps the recommender's keys in the
    # process, and the sessions too with a cache session engine (SHOPDEMO_SESSION_ENGINE);
    # SHOPDEMO_NEAR_CACHE=0 turns it off (bench/bench_serving.py --near-cache off).
    NEAR_CACHE = {"PREFIXES": ["recommender:", "django.contrib.sessions."]}
    if os.environ.get("SHOPDEMO_NEAR_CACHE", "1") == "0":
        NEAR_CACHE = None
    CACHES = {"default": {"BACKEND": "recommender.fastpath.redis_cache.RedisCache", "LOCATION": REDIS_URL,
                          "OPTIONS": {"NEAR_CACHE": NEAR_CACHE}}}
else:
    # No cache: the web server and the Celery worker are separate processes, and a
    # local-memory cache in each would keep serving the lists the web process cached for
    # up to a day after the worker published new ones (recommender.W050). Without a cache
    # every block reads its lists from the database, which the worker updates. check --deploy
    # says so (recommender.W051): set REDIS_URL in production.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}

# Sessions in the database: they survive a cache outage. "cached_db" does not: with Redis
# down, Django 5.2's cached_db raises on creating, loading (it re-caches what it read from
# the database), saving and deleting a session (tests/shop/test_deploy_settings.py), so
# every visitor with a session gets an error page. "signed_cookies" would change the session
# key whenever the session changes, and anonymous history is kept by that key. The cost of
# "db" is one primary-key query per request with a session.
# SHOPDEMO_SESSION_ENGINE lets bench/bench_serving.py compare session engines.
SESSION_ENGINE = os.environ.get("SHOPDEMO_SESSION_ENGINE", "django.contrib.sessions.backends.db")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en"
# The languages of the app and the demo (docs/i18n.md). The catalogs are in the apps'
# locale/ folders (recommender/locale, shopdemo/shop/locale), found without LOCALE_PATHS.
LANGUAGES = [
    ("en", "English"),
    ("zh-hans", "简体中文"),
]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = VAR_DIR / "media"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "shop:home"
LOGOUT_REDIRECT_URL = "shop:home"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Gift Parade recommender API",
    "DESCRIPTION": "Recommendations, events and training runs of django-shop-recommender.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

RECOMMENDER = {
    "ITEM_MODEL": "shop.Product",
    "ITEM_FIELDS": {
        "title": "title",
        "text": ["description"],
        "category": "category",
        "price": "price",
        "available": "is_active",
        "image": "image",
        "external_id": "stock_code",
    },
    "ARTIFACT_DIR": str(VAR_DIR / "artifacts"),
    "ADD_TO_CART_URL": "shop:cart_add",
}

# Celery: Redis when CELERY_BROKER_URL is set, else a broker that needs no server.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    _queue_dir = VAR_DIR / "celery-broker"
    for _folder in (_queue_dir, VAR_DIR / "celery-control"):
        _folder.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "control_folder": str(VAR_DIR / "celery-control"),
    }
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged when it finished, and given back if its worker is lost.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = TIME_ZONE
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"recommender": {"handlers": ["console"], "level": "INFO"}},
}
