"""Counting a run's HTTP attempts from inside the SDK's own retry loop.

The SDKs retry a failed request themselves (``max_retries``, with their backoff, ``Retry-After``
and their choice of which failures to retry), so from outside a retried run looks like one clean
call; ``retries_taken`` on a reply says how many retries there were, but not what failed, and
there is no reply when the last attempt fails too. So each wire sends through a copy of the
user's SDK client (the same options and connection pool; the user's own client, and their other
calls, stay as they were) whose per-attempt step reports each attempt to the run being sent
(`synthora.runs.note_attempt`). What the SDK sends and how it retries do not change, and nothing
happens per token.

* openai: ``_send_request``, which the client calls once per attempt with the built request, and
  which returns the response whatever its status, or raises the transport's error. It is private:
  ``tests/test_retries.py`` fails on an SDK release that stops calling it.
* anthropic: a client middleware, the SDK's public hook that runs "once per HTTP attempt, inside
  the SDK's retry loop".

A failed attempt is named as OpenTelemetry's HTTP conventions name ``error.type``: by its status
code when the server answered, else by the transport's exception (``ConnectError``).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import openai

from synthora.runs import note_attempt

__all__ = [
    "count_anthropic_attempts",
    "count_openai_attempts",
    "counting_anthropic_attempts",
    "counting_openai_attempts",
]

logger = logging.getLogger("synthora")

Client = TypeVar("Client")


def counting_openai_attempts(client: Client) -> Client:
    """A copy of an openai client whose attempts are counted. A client that cannot be copied
    (a subclass with a constructor of its own) is used as it is: its runs count one attempt."""
    original: Any = client
    if not hasattr(original, "_send_request"):
        return client
    try:
        copy: Any = original.with_options()
    except Exception:
        logger.warning("synthora: cannot copy %r, so its runs' retries are not counted", client)
        return client
    count_openai_attempts(copy)
    counted: Client = copy
    return counted


def count_openai_attempts(client: Any) -> None:
    """Count the attempts of `client` itself (an observed client, `synthora.observe`)."""
    send = getattr(client, "_send_request", None)
    if send is None:
        return
    count = _count_async if inspect.iscoroutinefunction(send) else _count
    client._send_request = functools.partial(count, call_next=send, failure=_raw_failure)


def counting_anthropic_attempts(
    client: Client, *, is_async: bool, connection_error: type[Exception]
) -> Client:
    """A copy of an anthropic client with a middleware counting its attempts; the client itself
    under an SDK release without middleware, or when it counts them already (an observed
    client: a second counter would count each attempt twice). `connection_error` is the SDK's
    ``APIConnectionError``, which wraps a transport's failure."""
    with_middleware = getattr(client, "with_middleware", None)
    if with_middleware is None or _counts_attempts(client):
        return client
    counted: Client = with_middleware(_anthropic_counter(is_async, connection_error))
    return counted


def count_anthropic_attempts(
    client: Any, *, is_async: bool, connection_error: type[Exception]
) -> None:
    """Count the attempts of `client` itself (an observed client): the counter joins its
    middleware in place, last, as ``with_middleware`` would put it on a copy. Its copies
    inherit it. Under a release whose middleware chain is not where this looks, the client's
    runs count one attempt each."""
    if not hasattr(client, "_build_middleware_chain") or _counts_attempts(client):
        return
    counter = _anthropic_counter(is_async, connection_error)
    client._middleware = (*client._middleware, counter)
    client._middleware_chain = client._build_middleware_chain()


def _anthropic_counter(is_async: bool, connection_error: type[Exception]) -> Any:
    def failure(error: Exception) -> str | None:
        # the chain also builds the request: an error doing that is no attempt at all
        if not isinstance(error, connection_error):
            return None
        return type(error.__cause__ or error).__name__

    counter: Any = functools.partial(_count_async if is_async else _count, failure=failure)
    counter.synthora_counts_attempts = True
    return counter


def _counts_attempts(client: Any) -> bool:
    middleware = getattr(client, "_middleware", ())
    return any(getattr(entry, "synthora_counts_attempts", False) for entry in middleware)


Failure = Callable[[Exception], str | None]
"""How an exception raised by one attempt is named as its ``error_type``; None if it was not
an attempt that failed."""


def _count(request: Any, call_next: Callable[..., Any], *, failure: Failure, **options: Any) -> Any:
    """One attempt, counted: `call_next` sends it (SDK options, if any, pass through)."""
    try:
        response = call_next(request, **options)
    except Exception as error:
        _note_failure(failure(error))
        raise
    _note_response(response.status_code)
    return response


async def _count_async(
    request: Any, call_next: Callable[..., Awaitable[Any]], *, failure: Failure, **options: Any
) -> Any:
    try:
        response = await call_next(request, **options)
    except Exception as error:
        _note_failure(failure(error))
        raise
    _note_response(response.status_code)
    return response


def _raw_failure(error: Exception) -> str | None:
    """openai's ``_send_request`` raises the transport's own exception; one of the SDK's own
    (a credential it could not get) is raised before anything is sent."""
    return None if isinstance(error, openai.OpenAIError) else type(error).__name__


def _note_failure(error_type: str | None) -> None:
    if error_type is not None:
        note_attempt(error_type=error_type)


def _note_response(status: int) -> None:
    if status >= 400:
        note_attempt(error_type=str(status), status_code=status)
    else:
        note_attempt()
