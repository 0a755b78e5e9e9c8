"""The web console: pipeline health, the retrain queue, series and their forecasts, thresholds.

Served by a process the service (``shelfcast run``) starts, on
``SHELFCAST_CONSOLE_HOST``:``SHELFCAST_CONSOLE_PORT``, with its JSON API under ``/api``.
"""

from shelfcast.console.app import create_app
from shelfcast.console.server import ConsoleServer, console_url

__all__ = ["ConsoleServer", "console_url", "create_app"]
