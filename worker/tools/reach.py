"""Failing fast, in one line, when a tool cannot reach Kafka or Redis.

A newcomer who points a tool at the wrong address must learn so within seconds, not watch a
silent client retry: kafka-python waits 30 s to bootstrap and 60 s for metadata by default,
and a tool's first output only comes after its own work (a cohort simulated, a data set
converted). So each tool checks the addresses it will use before any of that work, bounded by
REACH_TIMEOUT_S, and stops with one line that names the address and the setting that chose it
— the two things the reader has to change. worker.cli prints an Unavailable as
``vitalwatch <command>: <message>`` on stderr and exits with UNAVAILABLE_EXIT.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

#: The longest a tool waits for Kafka or Redis to answer before it gives up (every check, the
#: kafka-python clients' bootstrap and blocking sends, and the embedded servers' start-up).
REACH_TIMEOUT_S = 10.0
#: Exit code of a tool stopped by an Unavailable: the environment failed, not the arguments
#: (bad arguments and settings exit 2, as argparse and ConfigError do).
UNAVAILABLE_EXIT = 1


class Unavailable(RuntimeError):
    """A service a tool needs cannot be used; ``str()`` is the one line the user sees."""


def chosen_by(variable: str, flag: str | None = None) -> str:
    """What set an address, for the message: the command-line ``flag`` when it was given, else
    the environment ``variable`` when it is set, else that variable's default."""
    if flag:
        return flag
    # pydantic-settings reads VITALWATCH_* names case-insensitively; so must the message.
    if any(name.upper() == variable.upper() for name in os.environ):
        return variable
    return f"{variable}'s default"


def cannot_reach(service: str, address: str, setting: str, timeout_s: float = REACH_TIMEOUT_S) -> Unavailable:
    """The one line for a service that did not answer within ``timeout_s``."""
    return Unavailable(f"cannot reach {service} at {address} (set by {setting}) within {timeout_s:g} s")


def masked(url: str) -> str:
    """A URL fit to print: the password in its user part or its query string becomes ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if colon else f"***@{host}"
    query = "&".join(
        f"{key}=***" if key.lower() == "password" else f"{key}{sep}{value}"
        for key, sep, value in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def check_redis(url: str, setting: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Raise Unavailable unless the Redis at ``url`` (set by ``setting``) answers PING within
    ``timeout_s``, or ConfigError when ``url`` is not a Redis URL at all."""
    import redis

    from worker.operations.config import ConfigError

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    except ValueError as exc:
        raise ConfigError(f"{setting} is not a Redis URL ({masked(url)}): {exc}") from exc
    try:
        client.ping()
    except (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError) as exc:
        raise _refused(url, setting, exc) from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise cannot_reach("Redis", masked(url), setting, timeout_s) from exc
    except redis.RedisError as exc:  # something answered, but not as a Redis would
        raise _refused(url, setting, exc) from exc
    finally:
        client.close()


def _refused(url: str, setting: str, exc: Exception) -> Unavailable:
    """The one line for a server that answered but would not serve us (a wrong password, not Redis)."""
    return Unavailable(f"Redis at {masked(url)} (set by {setting}) refused the connection: {exc}")
