"""The exceptions of the regulator client, one per thing a caller can act on differently.

Every one is a :class:`RegulatorError`; each also derives from the built-in exception a
Python caller would already catch (``ValueError``, ``ConnectionError``, ``TimeoutError``,
``PermissionError``). ``kind`` is the stable label the Rust client uses in metrics and logs.
"""

from __future__ import annotations


class RegulatorError(Exception):
    """Base of every error the client raises."""

    kind = "error"


class InvalidArgument(RegulatorError, ValueError):
    """Refused before anything was sent: a bad token count, knob value, name or URL."""

    kind = "invalid_argument"


class Unavailable(RegulatorError):
    """Redis could not be used at all: the case ``consume_or``'s fail mode is for."""


class Unreachable(Unavailable, ConnectionError):
    """Connection refused or reset, DNS or TLS failure."""

    kind = "unreachable"


class Timeout(Unavailable, TimeoutError):
    """Redis did not answer within the call timeout."""

    kind = "timeout"


class AuthError(RegulatorError, PermissionError):
    """Redis refused the credentials, or the user's ACL denies the command or key."""

    kind = "auth"


class ScriptError(RegulatorError):
    """A Lua script failed on the server, or returned a reply it should not."""

    kind = "script"


class NotClusterMode(RegulatorError):
    """The server is a Redis Cluster node: connect with ``cluster=True``."""

    kind = "not_cluster_mode"


class RedisError(RegulatorError):
    """Any other error Redis returned (out of memory, read-only replica, cluster down...)."""

    kind = "redis"


class MaxWaitExceeded(RegulatorError):
    """A wait would have lasted longer than ``max_wait``; nothing is held."""

    kind = "max_wait_exceeded"

    def __init__(self, message: str, waited: float, retry_after: float) -> None:
        super().__init__(message)
        #: Seconds the call waited before giving up.
        self.waited = waited
        #: The limiter's hint, in seconds, for when a retry could succeed.
        self.retry_after = retry_after


class PermitExpired(RegulatorError):
    """A semaphore permit's hold ran out before it was renewed or released."""

    kind = "permit_expired"

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        #: The semaphore's name.
        self.name = name


_BY_KIND: dict[str, type[RegulatorError]] = {
    cls.kind: cls
    for cls in (
        InvalidArgument,
        Unreachable,
        Timeout,
        AuthError,
        ScriptError,
        NotClusterMode,
        RedisError,
    )
}


def _from_kind(kind: str, message: str, *extra: object) -> RegulatorError:
    """The exception for an error of the Rust client (called by the native module)."""
    if kind == MaxWaitExceeded.kind:
        waited, retry_after = extra
        return MaxWaitExceeded(message, float(waited), float(retry_after))  # type: ignore[arg-type]
    if kind == PermitExpired.kind:
        (name,) = extra
        return PermitExpired(message, str(name))
    return _BY_KIND.get(kind, RegulatorError)(message)


__all__ = [
    "AuthError",
    "InvalidArgument",
    "MaxWaitExceeded",
    "NotClusterMode",
    "PermitExpired",
    "RedisError",
    "RegulatorError",
    "ScriptError",
    "Timeout",
    "Unavailable",
    "Unreachable",
]
