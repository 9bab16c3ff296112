"""Test settings: the demo site's, with fast hashing and isolated state."""

import os
import tempfile

os.environ.setdefault("SHOPDEMO_VAR_DIR", tempfile.mkdtemp(prefix="shopdemo-test-"))

from shopdemo.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
SESSION_ENGINE = "django.contrib.sessions.backends.db"
DEBUG = False

# A Celery worker started by the tests gets its RECOMMENDER overrides through the
# environment (JSON), so that it runs with the same settings as the test itself.
if os.environ.get("RECOMMENDER_TEST_OVERRIDES"):
    import json

    RECOMMENDER = {**RECOMMENDER, **json.loads(os.environ["RECOMMENDER_TEST_OVERRIDES"])}  # noqa: F405

# Close connections at the end of each request: the live server's request threads must
# not keep sessions open on the test database (it is dropped at the end of the run).
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
