"""Where a redis-py client (sync or asyncio) connects: the adapters take the seeds' client
objects and connect regulator's client to the same server."""

from __future__ import annotations

from typing import Any, Optional, Tuple
from urllib.parse import quote


def is_cluster(redis_client: Any) -> bool:
    """Whether a redis-py client is a Redis Cluster client (sync or asyncio)."""
    return hasattr(redis_client, "nodes_manager")


def connection_of(redis_client: Any) -> Tuple[str, Optional[str], Optional[str]]:
    """The URL (of a seed node, for a cluster), user and password of a redis-py client."""
    if is_cluster(redis_client):
        node = next(iter(redis_client.nodes_manager.startup_nodes.values()))
        kwargs = getattr(redis_client.nodes_manager, "connection_kwargs", {}) or {}
        ssl = bool(kwargs.get("ssl"))
        url = "{}://{}:{}".format("rediss" if ssl else "redis", quote(str(node.host), safe=""), int(node.port))
        return url, kwargs.get("username"), kwargs.get("password")
    pool = redis_client.connection_pool
    kwargs = pool.connection_kwargs
    db = int(kwargs.get("db") or 0)
    if kwargs.get("path"):
        return "redis+unix://{}?db={}".format(kwargs["path"], db), kwargs.get("username"), kwargs.get("password")
    ssl = "SSL" in getattr(pool.connection_class, "__name__", "")
    host = kwargs.get("host") or "localhost"
    url = "{}://{}:{}/{}".format("rediss" if ssl else "redis", quote(str(host), safe=""), int(kwargs.get("port") or 6379), db)
    return url, kwargs.get("username"), kwargs.get("password")
