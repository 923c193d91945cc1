"""Serving the viewer with uvicorn: in the foreground for ``synthora ui``, or in a thread.

The socket is bound here rather than by uvicorn, so a port already taken is one clear error
before anything starts (uvicorn would log it and exit the process).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from synthora.errors import SynthoraError
from synthora.ui.app import LiveStreams

__all__ = ["PortUnavailableError", "bind", "serve", "serving", "url_of"]

_SHUTDOWN_GRACE_S = 1
"""Live pages hold a stream open; on exit they get this long before it is cut."""


class PortUnavailableError(SynthoraError):
    """The viewer cannot listen where it was asked to."""


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host`:`port` (0: any free port)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
    except OSError as error:
        raise PortUnavailableError(f"cannot open a socket for {host}: {error}") from error
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(128)
    except OSError as error:
        listener.close()
        reason = "is already in use" if error.errno == 98 else f"cannot be used ({error.strerror})"
        raise PortUnavailableError(
            f"port {port} on {host} {reason}; give another with --port"
        ) from error
    return listener


def url_of(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


class _Server(uvicorn.Server):
    """uvicorn's server, which first tells the viewer's live streams to end when it stops:
    otherwise an open page would hold the shutdown until it is cut with an error."""

    def __init__(self, app: Starlette) -> None:
        config = uvicorn.Config(
            app, log_level="warning", timeout_graceful_shutdown=_SHUTDOWN_GRACE_S, lifespan="off"
        )
        super().__init__(config)
        self.live: LiveStreams = app.state.live

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.live.closing.set()
        super().handle_exit(sig, frame)

    def serve_on(self, listener: socket.socket) -> None:
        """Serve until told to stop; returns once no live stream reads the log any more."""
        try:
            self.run(sockets=[listener])
        finally:
            self.live.close()

    def stop(self) -> None:
        self.live.closing.set()
        self.should_exit = True


def serve(app: Starlette, listener: socket.socket) -> None:
    """Serve `app` (from `synthora.ui.create_app`) until interrupted (Ctrl-C)."""
    _Server(app).serve_on(listener)


@contextmanager
def serving(app: Starlette, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve in a background thread while the block runs; yields the base URL.

    For tests, benchmarks and notebooks: the block starts once the server accepts requests.
    """
    listener = bind(host, port)
    server = _Server(app)
    thread = threading.Thread(
        target=server.serve_on, args=(listener,), name="synthora-ui", daemon=True
    )
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise PortUnavailableError(f"the viewer at {url_of(listener)} did not start")
            thread.join(0.01)
        yield url_of(listener)
    finally:
        server.stop()
        thread.join()
        listener.close()
