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

from synthora.runs import note_attempt

__all__ = ["counting_anthropic_attempts", "counting_openai_attempts"]

logger = logging.getLogger("synthora")

Client = TypeVar("Client")


def counting_openai_attempts(client: Client) -> Client:
    """A copy of an openai client whose attempts are counted. A client that cannot be copied
    (a subclass with a constructor of its own) is used as it is: its runs count one attempt."""
    original: Any = client
    if not hasattr(original, "_send_request"):
        return client
    try:
        observed: Any = original.with_options()
    except Exception:
        logger.warning("synthora: cannot copy %r, so its runs' retries are not counted", client)
        return client
    send = observed._send_request
    count = _count_async if inspect.iscoroutinefunction(send) else _count
    # openai hands the transport's exception over as it is: the error is its own name
    observed._send_request = functools.partial(count, call_next=send, wrapped=False)
    counted: Client = observed
    return counted


def counting_anthropic_attempts(client: Client, *, is_async: bool) -> Client:
    """A copy of an anthropic client with a middleware counting its attempts; the client itself
    under an SDK release without middleware (its runs then count one attempt)."""
    with_middleware = getattr(client, "with_middleware", None)
    if with_middleware is None:
        return client
    # a middleware sees the transport's exception wrapped in the SDK's APIConnectionError
    counted: Client = with_middleware(
        functools.partial(_count_async if is_async else _count, wrapped=True)
    )
    return counted


def _count(request: Any, call_next: Callable[..., Any], *, wrapped: bool, **options: Any) -> Any:
    """One attempt, counted: `call_next` sends it (SDK options, if any, pass through)."""
    try:
        response = call_next(request, **options)
    except Exception as error:
        note_attempt(error_type=_transport_error(error, wrapped))
        raise
    _note_response(response.status_code)
    return response


async def _count_async(
    request: Any, call_next: Callable[..., Awaitable[Any]], *, wrapped: bool, **options: Any
) -> Any:
    try:
        response = await call_next(request, **options)
    except Exception as error:
        note_attempt(error_type=_transport_error(error, wrapped))
        raise
    _note_response(response.status_code)
    return response


def _transport_error(error: Exception, wrapped: bool) -> str:
    cause = (error.__cause__ or error) if wrapped else error
    return type(cause).__name__


def _note_response(status: int) -> None:
    if status >= 400:
        note_attempt(error_type=str(status), status_code=status)
    else:
        note_attempt()
