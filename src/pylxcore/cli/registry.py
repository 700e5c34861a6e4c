"""The commands on registries: pull, push, login, logout."""

from __future__ import annotations

import argparse
import getpass
import sys

from pylxcore.cli.output import EXIT_OK
from pylxcore.engine import Engine
from pylxcore.errors import SpecError


def _shows_progress(args: argparse.Namespace) -> bool:
    """The live display, on stderr, only for a person at a terminal (and no ``--quiet``)."""
    return not args.quiet and sys.stderr.isatty()


def cmd_pull(args: argparse.Namespace) -> int:
    """``pull REF``: pull an image and tag it in the store."""
    engine = Engine(root=args.root)
    image = engine.images.pull(
        args.ref,
        platform=args.platform,
        ca_file=args.ca_file,
        insecure=args.insecure,
        progress=_shows_progress(args),
    )
    if args.quiet:
        print(image.id)
    else:
        print(f"Pulled {args.ref}: {image.name} ({image.id})")
    return EXIT_OK


def cmd_push(args: argparse.Namespace) -> int:
    """``push IMAGE [DEST]``: push a local image; print the manifest's digest."""
    engine = Engine(root=args.root)
    digest = engine.images.push(
        args.image, args.dest, ca_file=args.ca_file, insecure=args.insecure, progress=_shows_progress(args)
    )
    print(digest if args.quiet else f"Pushed {args.dest or args.image}: digest {digest}")
    return EXIT_OK


def cmd_login(args: argparse.Namespace) -> int:
    """``login [-u USER] [--password-stdin] [REGISTRY]``: check the credentials, keep them."""
    username = args.username
    if args.password_stdin:
        if not username:
            raise SpecError("--password-stdin needs --username", key="username")
        password = sys.stdin.read().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise SpecError("no terminal to ask the password on: use --password-stdin", key="password")
        username = username or input("Username: ")
        password = getpass.getpass("Password: ")
    engine = Engine(root=args.root)
    path = engine.login(args.registry, username, password, ca_file=args.ca_file, insecure=args.insecure)
    print(f"Login Succeeded (credentials kept in {path})")
    return EXIT_OK


def cmd_logout(args: argparse.Namespace) -> int:
    """``logout [REGISTRY]``: forget the registry's credentials."""
    engine = Engine(root=args.root)
    if engine.logout(args.registry):
        print(f"Removed the credentials for {args.registry}")
    else:
        print(f"Not logged in to {args.registry}")
    return EXIT_OK
