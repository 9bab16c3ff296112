"""Test settings: the demo site's, with fast hashing and isolated state."""

import os
import tempfile

os.environ.setdefault("SHOPDEMO_VAR_DIR", tempfile.mkdtemp(prefix="shopdemo-test-"))
# The demo settings refuse DEBUG off (their default) with their public key, and turn on HTTPS.
os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-key-not-used-anywhere-else")
os.environ.setdefault("DJANGO_HTTPS", "0")

from shopdemo.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The serving tests publish their lists under these algorithm names (the engines behind
# the shelves are tested in tests/engine/test_shelf_engines.py).
RECOMMENDER = {**RECOMMENDER, "SIMILAR_ALGORITHM": "itemknn", "BOUGHT_TOGETHER_ALGORITHM": "cooccurrence",  # noqa: F405
               "TRAIN_ALGORITHMS": ["popular", "trending", "itemknn", "cooccurrence", "hybrid"]}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
SESSION_ENGINE = "django.contrib.sessions.backends.db"
DEBUG = False

# A Celery worker started by the tests gets its RECOMMENDER overrides through the
# environment (JSON), so that it runs with the same settings as the test itself.
if os.environ.get("RECOMMENDER_TEST_OVERRIDES"):
    import json

    RECOMMENDER = {**RECOMMENDER, **json.loads(os.environ["RECOMMENDER_TEST_OVERRIDES"])}  # noqa: F405
# ... and the test's cache (JSON), when the test serves from Redis (tests/test_follow.py).
if os.environ.get("RECOMMENDER_TEST_CACHES"):
    import json

    CACHES = json.loads(os.environ["RECOMMENDER_TEST_CACHES"])

# Close connections at the end of each request: the live server's request threads must
# not keep sessions open on the test database (it is dropped at the end of the run).
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
