"""A per-process copy of Redis values, kept right by Redis' own invalidation messages.

The request path reads the same few Redis keys again and again: a user's stored API
response and the tokens that validate it, their auth record, their session (with the
``cache`` and ``cached_db`` session engines), the lists behind a block. Each read is a
network round trip, and on loopback a round trip costs about as much as Django's whole
handling of a bare view (docs/serving.md). A :class:`NearCache` keeps those values in
the process and answers repeated reads without Redis.

It stays right through Redis' server-assisted client-side caching
(https://redis.io/docs/latest/develop/reference/client-side-caching/): the near cache
holds one extra connection per process, in RESP3, with ``CLIENT TRACKING ON BCAST``
for the key prefixes it keeps. Whenever any client changes, deletes or expires a key
under those prefixes, or flushes the database, Redis pushes an ``invalidate`` message
on that connection. Before every read the near cache drains the messages waiting on
the socket (one non-blocking ``recv``) and drops what they name, so a read sees
another process's write as soon as Redis' message has arrived (on loopback, microseconds
after the write: Redis sends it in the same event-loop turn as the writer's reply).

The details that keep it correct:

- A value read from Redis is kept only if no invalidation arrived while it was being
  read (a generation counter), so a write that races the read is never lost.
- Values are kept with their Redis TTL (read with ``PTTL`` along with the value): an
  entry expires locally when it expires in Redis, even if Redis has not yet reclaimed it.
- Absent keys are kept as absent: creating the key is an invalidation like any other.
- If the tracking connection breaks, the near cache empties itself and reads go to
  Redis until it has reconnected (attempts 1, 2, 4, then every 8 seconds; the handshake
  gives up after 0.25 s, so a Redis that does not answer holds a request that long at most).
- Writes through this process (the cache API, :mod:`recommender.serving.published`,
  :mod:`recommender.fastpath.identity`) also drop their keys here at once.
- After a fork (gunicorn workers) the child builds its own connection.
- A daemon thread drains the messages as they arrive too, so that an idle process does
  not leave Redis buffering them.
- ``max_entries`` bounds memory; the least recently used entries go first.

Requirements: Redis 6 or newer (RESP3 and tracking) over TCP or a unix socket; redis-py
and its ``hiredis`` parser. Without them the near cache stays off and every read goes to
Redis, as before. Enable it with ``recommender.fastpath.redis_cache.RedisCache`` (see its docstring).
"""

import logging
import os
import select
import ssl
import threading
import time
from collections import OrderedDict

__all__ = ["NearCache"]

logger = logging.getLogger(__name__)

_ABSENT = object()
#: Seconds between reconnection attempts after the tracking connection broke, doubled
#: after each failed attempt up to MAX_RETRY_SECONDS.
RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 8.0
#: Connect and reply timeout (seconds) of the tracking connection's handshake, so that a
#: Redis that does not answer (paused, unreachable) holds a request for at most this long.
HANDSHAKE_TIMEOUT = 0.25


class NearCache:
    """Process-local copy of the Redis keys under ``prefixes`` (raw Redis key prefixes).

    ``pool`` is the redis-py connection pool of the cache; the near cache opens its own
    tracking connection with the pool's connection settings.
    """

    def __init__(self, pool, prefixes, max_entries=20_000):
        self.pool = pool
        self.prefixes = tuple(prefixes)
        self.max_entries = int(max_entries)
        self._data = OrderedDict()  # raw key -> (value or _ABSENT, monotonic deadline or None), LRU order
        self._lock = threading.RLock()
        self._conn = None
        self._sock = None
        self._reader = None
        self._pid = None
        self._generation = 0
        self._retry_at = 0.0
        self._retry_delay = RETRY_SECONDS
        self.client_id = None
        self._warned = False
        self._listener_pid = None
        self.hits = self.misses = self.invalidations = 0

    # -- the tracking connection ---------------------------------------------------------

    def _connect(self):
        import hiredis

        kwargs = dict(self.pool.connection_kwargs)
        kwargs["protocol"] = 3
        for name in ("socket_connect_timeout", "socket_timeout"):
            kwargs[name] = min(kwargs.get(name) or HANDSHAKE_TIMEOUT, HANDSHAKE_TIMEOUT)
        conn = self.pool.connection_class(**kwargs)
        try:
            conn.connect()
            conn.send_command("CLIENT", "ID")
            client_id = conn.read_response()
            args = ["CLIENT", "TRACKING", "ON", "BCAST"]
            for prefix in self.prefixes:
                args += ["PREFIX", prefix]
            conn.send_command(*args)
            reply = conn.read_response()
            if reply not in (b"OK", "OK"):
                raise ConnectionError(f"CLIENT TRACKING answered {reply!r}")
        except BaseException:
            conn.disconnect()
            raise
        sock = conn._sock
        sock.setblocking(False)
        self._conn, self._sock, self._reader = conn, sock, hiredis.Reader()
        self.client_id = client_id  # the tracking connection's id in Redis (CLIENT LIST)

    def _close(self):
        conn, self._conn, self._sock, self._reader = self._conn, None, None, None
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:  # noqa: BLE001 - closing a connection that already broke
                pass

    def _lost(self, reason):
        """The tracking connection broke (or could not be made): nothing kept can be trusted."""
        if self._sock is not None or not self._warned:  # once per outage, not once a second
            logger.warning("near cache off (%s); reading from Redis until tracking is back", reason)
            self._warned = True
        self.clear()  # before the socket goes: whoever sees no socket sees nothing kept
        self._close()
        self._retry_at = time.monotonic() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, MAX_RETRY_SECONDS)

    def _ready(self):
        """Whether the near cache may answer now; drains pending invalidations. Hold the lock."""
        if self._pid != os.getpid():  # first use, or a forked child: never share the parent's socket
            self._conn = self._sock = self._reader = None
            self.clear()
            self._pid = os.getpid()
            self._retry_at = 0.0
        if self._sock is None:
            if time.monotonic() < self._retry_at:
                return False
            try:
                self._connect()
            except Exception as exc:  # noqa: BLE001 - Redis too old, no hiredis, unreachable...
                self._lost(f"cannot enable tracking: {exc}")
                return False
            self.clear()
            self._retry_delay = RETRY_SECONDS
            if self._warned:
                logger.warning("near cache on again")
                self._warned = False
            if self._listener_pid != self._pid:
                self._listener_pid = self._pid
                threading.Thread(target=self._listen, name="recommender-near-cache", daemon=True).start()
            return True
        return self._drain()

    def _listen(self):
        """Drain invalidations as they arrive, also while no request reads.

        Requests drain before each read anyway; this keeps an idle process from leaving
        Redis to buffer its messages (a refresh that publishes a million lists sends a
        million of them).
        """
        pid = os.getpid()
        while os.getpid() == pid:
            sock = self._sock
            if sock is None:
                time.sleep(RETRY_SECONDS)
                continue
            try:
                readable = select.select([sock], [], [], 1.0)[0]
            except (OSError, ValueError):  # closed meanwhile: the next loop sees the new socket
                continue
            if readable:
                with self._lock:
                    if self._sock is sock:
                        self._drain()

    def _drain(self):
        sock, reader = self._sock, self._reader
        while True:
            try:
                chunk = sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                return True
            except OSError as exc:
                self._lost(exc)
                return False
            if not chunk:
                self._lost("closed by the server")
                return False
            reader.feed(chunk)
            while (message := reader.gets()) is not False:
                self._handle(message)

    def _handle(self, message):
        if not isinstance(message, list) or len(message) != 2 or message[0] != b"invalidate":
            return
        self.invalidations += 1
        keys = message[1]
        if keys is None:  # FLUSHDB / FLUSHALL
            self.clear()
        else:
            self.forget([key.decode("utf-8", "surrogateescape") for key in keys])

    # -- reads and writes ----------------------------------------------------------------

    def keeps(self, key):
        return key.startswith(self.prefixes)

    def mget(self, client, keys):
        """Values of raw ``keys`` (bytes or None), from here when kept, else in one round trip."""
        with self._lock:
            if not self._ready():
                return client.mget(keys)
            now = time.monotonic()
            values, missing = [], []
            data = self._data
            for index, key in enumerate(keys):
                entry = data.get(key)
                if entry is not None and (entry[1] is None or entry[1] > now):
                    values.append(None if entry[0] is _ABSENT else entry[0])
                    data.move_to_end(key)
                else:
                    values.append(None)
                    missing.append(index)
            generation = self._generation
        if not missing:
            self.hits += 1
            return values
        self.misses += 1
        wanted = [keys[index] for index in missing]
        kept = [key for key in wanted if key.startswith(self.prefixes)]
        if not kept:  # nothing to keep: no TTLs to read
            found = client.mget(wanted)
        else:
            pipe = client.pipeline(transaction=False)
            pipe.mget(wanted)
            for key in kept:
                pipe.pttl(key)
            found, *ttls = pipe.execute()
            self._keep(kept, [v for k, v in zip(wanted, found, strict=True) if k.startswith(self.prefixes)],
                       ttls, generation)
        for index, value in zip(missing, found, strict=True):
            values[index] = value
        return values

    def get(self, client, key):
        return self.mget(client, [key])[0]

    def _keep(self, keys, values, ttls, generation):
        """Keep ``keys`` (all under the prefixes) read at ``generation``, if still right."""
        with self._lock:
            # drain first: an invalidation that arrived while we read makes the values suspect
            if not self._ready() or self._generation != generation:
                return
            now = time.monotonic()
            data = self._data
            for key, value, ttl in zip(keys, values, ttls, strict=True):
                if value is None:
                    data[key] = (_ABSENT, None)
                elif ttl is None or ttl == -1:
                    data[key] = (value, None)
                elif ttl > 0:
                    data[key] = (value, now + ttl / 1000.0)
            while len(data) > self.max_entries:
                data.popitem(last=False)  # the least recently used

    def forget(self, keys):
        """Drop raw ``keys`` now (this process wrote them; Redis' message follows)."""
        with self._lock:
            self._generation += 1
            pop = self._data.pop
            for key in keys:
                pop(key, None)

    def clear(self):
        """Drop everything (and any value being read meanwhile)."""
        with self._lock:
            self._generation += 1
            self._data.clear()

    def __len__(self):
        with self._lock:
            return len(self._data)

    @property
    def active(self):
        with self._lock:
            return self._ready()
