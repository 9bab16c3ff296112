"""Settings of the site bench/bench_serving.py serves: the demo's, behind one trusted proxy.

wrk plays the load balancer: each anonymous request carries one X-Forwarded-For address
out of 10,000, and the anonymous throttles count clients by it (``TRUSTED_PROXY_COUNT=1``),
as on a site behind a proxy. With the demo's own setting (0) every request would count
against loopback's one address and be throttled (HTTP 429).
"""

from shopdemo.settings import *  # noqa: F403
from shopdemo.settings import RECOMMENDER

RECOMMENDER = {**RECOMMENDER, "TRUSTED_PROXY_COUNT": 1}
