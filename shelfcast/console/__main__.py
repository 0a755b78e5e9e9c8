"""The console's own process (``ConsoleProcess``): the settings come on stdin, one JSON line;
stdout says ``{"url": ...}`` once it serves, or ``{"error": ...}``; it serves until stdin
closes."""

import json
import logging
import os
import signal
import sys

from shelfcast.console.server import ConsoleServer
from shelfcast.errors import ShelfcastError
from shelfcast.settings import settings_from_json


def main() -> int:
    # Ctrl-C reaches the whole process group: the service stops, then closes the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    line = sys.stdin.readline()
    if not line:
        return 0  # the service went before it said anything
    try:
        server = ConsoleServer(settings_from_json(line))
        url = server.start()
    except (ShelfcastError, ValueError) as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 1
    print(json.dumps({"url": url}), flush=True)
    # Nothing reads stdout from here on: whatever a library prints goes to stderr, the log,
    # rather than filling a pipe until the console blocks.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdin.read()  # until the service closes the pipe, or dies
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
