"""``synthora ui``: a local web viewer over the event log (the optional extra ``ui``).

::

    from synthora.storage import EventLog
    from synthora.ui import create_app, serving

    with EventLog() as log, serving(create_app(log)) as url:
        print(url)  # http://127.0.0.1:<port>/ lists the runs; /runs/<run_id> shows one

The viewer only reads the log. See `synthora.ui.app` for the pages.
"""

from synthora.ui.app import LOOPBACK_NAMES, create_app
from synthora.ui.server import PortUnavailableError, bind, serve, serving

__all__ = ["LOOPBACK_NAMES", "PortUnavailableError", "bind", "create_app", "serve", "serving"]
