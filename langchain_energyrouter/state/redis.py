"""A :class:`~langchain_energyrouter.state.base.StateStore` on a Redis server, shared by router replicas on many hosts.

Why Redis rather than PostgreSQL: the learned state is a handful of small JSON
documents per kind plus append-only logs, and every operation the protocol needs
is one atomic server-side step in Redis:

* **Compare-and-swap on a version.** Each kind is one hash (``key -> "version:json"``);
  :meth:`RedisStateStore.put` is a Lua script that checks the version and writes in one
  step (Redis runs a script with nothing interleaved), one round trip, no lock held
  while the caller computes.
* **An append-only log with increasing ids that never loses an acknowledged append.**
  :meth:`RedisStateStore.append` is a script that takes the next id from one counter
  (``INCR``) and adds the event to the log's stream under that id (``XADD n-0``). As
  scripts run one at a time, ids become visible in id order, so a reader paging with
  ``after_id`` never skips an event. (A PostgreSQL ``bigserial`` does not give that: a
  later id can commit before an earlier one, and a reader that saw the later one skips
  the earlier.) With ``appendonly yes`` and ``appendfsync always`` the server writes and
  fsyncs the append-only file before it replies, so an acknowledged append survives a
  crash of the server as well as of the client; the store warns when the server is
  configured otherwise. The counter is never reset, so ids are never reused.
* **Listing a kind** is one ``HGETALL`` of that kind's hash: a consistent snapshot.

Every key of a store starts with ``{prefix}`` in braces (a Redis Cluster hash tag),
so all of a store's keys live in one slot and the scripts stay atomic on a cluster too.
Several stores may share one server under different prefixes. LiteLLM shares its
router state across instances through Redis as well, so operators already run one.

Writes are not retried automatically on a dropped connection (a retried
compare-and-swap or append could apply twice): the call raises
:class:`~langchain_energyrouter.errors.StateError` and the learners skip that update.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from langchain_energyrouter.errors import StateError, missing_extra
from langchain_energyrouter.state.base import Document, Event, check_name, decode, encode

logger = logging.getLogger(__name__)

STORE_FORMAT = 1
"""Version of the key layout, kept in the store's ``meta`` hash."""


# KEYS[1] = the kind's hash, KEYS[2] = the set of kinds; ARGV = key, payload, expected version (-1: any), kind.
_PUT = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
local version = 0
if current then version = tonumber(string.sub(current, 1, string.find(current, ':', 1, true) - 1)) end
local expected = tonumber(ARGV[3])
if expected >= 0 and version ~= expected then return false end
redis.call('HSET', KEYS[1], ARGV[1], (version + 1) .. ':' .. ARGV[2])
redis.call('SADD', KEYS[2], ARGV[4])
return version + 1
"""

# KEYS[1] = id counter, KEYS[2] = the log's stream, KEYS[3] = the set of logs; ARGV = payload, log.
_APPEND = """
local id = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], string.format('%d-0', id), 'p', ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
return id
"""

# KEYS[1] = the set of kinds, KEYS[2] = the set of logs; ARGV = base, mode, kind, key.
_DELETE = """
local base, mode, kind, key = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local removed = 0
if mode == 'one' then
  removed = redis.call('HDEL', base .. ':doc:' .. kind, key)
  if redis.call('EXISTS', base .. ':doc:' .. kind) == 0 then redis.call('SREM', KEYS[1], kind) end
elseif mode == 'kind' then
  removed = redis.call('HLEN', base .. ':doc:' .. kind)
  redis.call('DEL', base .. ':doc:' .. kind)
  redis.call('SREM', KEYS[1], kind)
elseif mode == 'key' then
  for _, k in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    removed = removed + redis.call('HDEL', base .. ':doc:' .. k, key)
    if redis.call('EXISTS', base .. ':doc:' .. k) == 0 then redis.call('SREM', KEYS[1], k) end
  end
else
  for _, k in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    removed = removed + redis.call('HLEN', base .. ':doc:' .. k)
    redis.call('DEL', base .. ':doc:' .. k)
  end
  for _, log in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    removed = removed + redis.call('XLEN', base .. ':log:' .. log)
    redis.call('DEL', base .. ':log:' .. log)
  end
  redis.call('DEL', KEYS[1], KEYS[2])
end
return removed
"""


def _text(value: bytes | str | None) -> str:
    if value is None:
        return "?"
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def redact(url: str) -> str:
    """The URL with its password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class RedisStateStore:
    """Learned state on a Redis server (``redis://host:port/db``; ``rediss://`` for TLS).

    Args:
        url: the server, as redis-py's ``Redis.from_url`` reads it (password, database,
            ``?ssl_cert_reqs=...`` and the like go in the URL).
        prefix: namespace of this store's keys; stores with different prefixes share a
            server without seeing each other's state.
        timeout_s: how long to wait to connect and for each reply.

    Raises:
        MissingExtraError: the ``redis`` package is not installed.
        StateError: the server cannot be reached, or holds a store of a newer format.
    """

    def __init__(self, url: str, *, prefix: str = "energyrouter", timeout_s: float = 5.0) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as err:
            raise missing_extra("redis", "redis", "The Redis state store") from err
        check_name(prefix, "prefix")
        self.url = url
        self.prefix = prefix
        self._shown = redact(url)
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        self._connection_errors: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
        self._base = "{" + prefix + "}"
        self._kinds = f"{self._base}:kinds"
        self._logs = f"{self._base}:logs"
        self._seq = f"{self._base}:seq"
        self._closed = False
        self._lock = threading.Lock()
        try:
            self._client = redis.Redis.from_url(
                url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=30,
            )
        except ValueError as err:
            raise StateError(
                f"State store URL {self._shown!r} is not a Redis URL ({err}); use redis://host:port/db."
            ) from err
        self._put = self._client.register_script(_PUT)
        self._append = self._client.register_script(_APPEND)
        self._delete = self._client.register_script(_DELETE)
        meta = f"{self._base}:meta"
        self._call(lambda: self._client.hsetnx(meta, "format", str(STORE_FORMAT)))
        found = int(self._call(lambda: self._client.hget(meta, "format")) or STORE_FORMAT)
        if found > STORE_FORMAT:
            self._client.close()
            raise StateError(
                f"State store {self._shown} (prefix {prefix!r}) has format {found}, newer than this package reads "
                f"({STORE_FORMAT}); upgrade langchain-energyrouter or use another prefix."
            )
        self._warn_unless_durable()

    def _call(self, action: Any) -> Any:
        if self._closed:
            raise StateError(f"State store {self._shown} is closed; open a new RedisStateStore.")
        try:
            return action()
        except self._connection_errors as err:
            raise StateError(
                f"Cannot reach the Redis state store at {self._shown}: {err}. Start the server "
                "(`redis-server --appendonly yes --appendfsync always`), check the host, port and password "
                "in the URL, or use the path of an SQLite file when every router runs on one host."
            ) from err
        except self._errors as err:
            raise StateError(f"Redis state store {self._shown}: {err}") from err

    def _warn_unless_durable(self) -> None:
        try:
            config = self._client.config_get("append*")
        except self._errors:  # CONFIG is often disabled on managed servers: nothing to check
            return
        found = {_text(k): _text(v) for k, v in config.items()}  # bytes or str, depending on the client version
        appendonly, fsync = found.get("appendonly", "?"), found.get("appendfsync", "?")
        if appendonly != "yes" or fsync != "always":
            logger.warning(
                "Redis state store %s runs with appendonly=%s appendfsync=%s: acknowledged feedback can be lost "
                "if the server crashes. Set `appendonly yes` and `appendfsync always` in redis.conf.",
                self._shown,
                appendonly,
                fsync,
            )

    def _doc(self, kind: str) -> str:
        return f"{self._base}:doc:{kind}"

    def _parse(self, raw: bytes, where: str) -> Document:
        text = raw.decode("utf-8", "replace")
        version, sep, payload = text.partition(":")
        if not sep or not version.isdigit():
            raise StateError(f"Stored state {where} has no version; `energyrouter state reset` clears it.")
        return Document(decode(payload, where), int(version))

    def get(self, kind: str, key: str) -> Document | None:
        raw = self._call(lambda: self._client.hget(self._doc(kind), key))
        return None if raw is None else self._parse(raw, f"{self._shown}:{kind}/{key}")

    def put(self, kind: str, key: str, payload: Mapping[str, Any], *, expected_version: int | None) -> int | None:
        text = encode(payload)
        check_name(kind, "kind")
        check_name(key, "key")
        expected = -1 if expected_version is None else int(expected_version)
        version = self._call(lambda: self._put(keys=[self._doc(kind), self._kinds], args=[key, text, expected, kind]))
        return None if version is None else int(version)

    def items(self, kind: str) -> dict[str, Document]:
        rows = self._call(lambda: self._client.hgetall(self._doc(kind)))
        found = {}
        for raw_key, raw in sorted(rows.items()):
            key = raw_key.decode()
            found[key] = self._parse(raw, f"{self._shown}:{kind}/{key}")
        return found

    def kinds(self) -> list[str]:
        """Every document kind present (for ``energyrouter state show``)."""
        return sorted(k.decode() for k in self._call(lambda: self._client.smembers(self._kinds)))

    def logs(self) -> dict[str, int]:
        """Event log name -> number of events."""
        names = sorted(k.decode() for k in self._call(lambda: self._client.smembers(self._logs)))
        return {name: int(self._call(lambda n=name: self._client.xlen(f"{self._base}:log:{n}"))) for name in names}

    def delete(self, kind: str | None = None, key: str | None = None) -> int:
        if kind is None and key is None:
            mode = "all"
        elif key is None:
            mode = "kind"
        elif kind is None:
            mode = "key"
        else:
            mode = "one"
        args = [self._base, mode, kind or "", key or ""]
        return int(self._call(lambda: self._delete(keys=[self._kinds, self._logs], args=args)))

    def append(self, log: str, payload: Mapping[str, Any]) -> int:
        text = encode(payload)
        check_name(log, "log")
        stream = f"{self._base}:log:{log}"
        return int(self._call(lambda: self._append(keys=[self._seq, stream, self._logs], args=[text, log])))

    def events(self, log: str, after_id: int = 0, limit: int | None = None) -> list[Event]:
        stream = f"{self._base}:log:{log}"
        rows = self._call(lambda: self._client.xrange(stream, min=str(int(after_id) + 1), count=limit))
        found = []
        for raw_id, fields in rows:
            event_id = int(raw_id.split(b"-", 1)[0])
            found.append(Event(event_id, decode(fields[b"p"].decode(), f"{self._shown}:{log}#{event_id}")))
        return found

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._client.close()

    def __enter__(self) -> RedisStateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisStateStore({self._shown!r}, prefix={self.prefix!r})"


__all__ = ["STORE_FORMAT", "RedisStateStore", "redact"]
