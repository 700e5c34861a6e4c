"""``events``: what happens to containers, one line each, followed as it happens (like ``docker events``)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime

from pylxcore.cli.output import EXIT_OK, key_values, print_json_lines
from pylxcore.cli.timespec import parse_time
from pylxcore.engine import Engine
from pylxcore.runtime.events import FILTERS


def cmd_events(args: argparse.Namespace) -> int:
    """``events``: the events from ``--since`` (else from now); followed until
    ``--until`` (else for ever, until Ctrl-C)."""
    since = None if args.since is None else parse_time(args.since, key="since")
    until = None if args.until is None else parse_time(args.until, key="until")
    follow = until is None or until > time.time()
    if since is None and follow:
        since = time.time()  # as docker's: only what happens from now on
    filters = key_values(args.filter, FILTERS, "events")
    events = Engine(root=args.root).events(since=since, until=until, filters=filters, follow=follow)
    for event in events:
        if args.format == "json":
            print_json_lines([event.to_dict()])
            sys.stdout.flush()  # (each as it happens, into a pipe too)
        else:
            stamp = datetime.fromtimestamp(event.time).astimezone().isoformat(timespec="microseconds")
            attributes = {**event.attributes, "image": event.image, "name": event.name}
            text = ", ".join(f"{k}={v}" for k, v in sorted(attributes.items()))
            print(f"{stamp} {event.type} {event.action} {event.id} ({text})", flush=True)
    return EXIT_OK
