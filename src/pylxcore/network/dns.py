"""Names: a dnsmasq for each user network, and each container's /etc/hosts
and /etc/resolv.conf.

A network's dnsmasq (Debian ``dnsmasq-base``) listens on its bridge's
address only, reads no config, hosts or DHCP of the host's, and answers
for the containers on that network from one small hosts file per
container in its ``--hostsdir``, which it watches (inotify): a container
added or removed is written or deleted there, and dnsmasq follows without
a signal. Names it does not know go to the host's resolvers, unless the
network is internal. It runs as a daemon, started and stopped by its pid
(with the process's start time, so a reused pid is never signalled).

Its files live in ``/run/pylxcore/dns/<bridge>``, not in the store: dnsmasq
drops to user nobody, who may not enter the store (SPEC.md section 7). They
hold only names and addresses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from pylxcore.errors import LXCError
from pylxcore.procs import process_start_time, read_stat
from pylxcore.store import rmtree

DNS_ROOT = Path("/run/pylxcore/dns")


def dns_dir(bridge: str) -> Path:
    return DNS_ROOT / bridge


def running(pid: int | None, start: int | None) -> bool:
    """Whether dnsmasq still runs as ``pid`` (started at ``start``)."""
    if not pid or process_start_time(pid) != start:
        return False
    stat = read_stat(pid)
    return stat is not None and stat[0] == b"dnsmasq"


def start(bridge: str, gateway: str, internal: bool) -> tuple[int, int]:
    """Start the dnsmasq of network bridge ``bridge``; its (pid, start time).
    Raises LXCError when it cannot start (dnsmasq missing, port 53 taken)."""
    d = dns_dir(bridge)
    os.makedirs(d / "hosts", mode=0o755, exist_ok=True)
    os.chmod(d, 0o755)  # (dnsmasq reads it as nobody)
    pidfile = d / "pid"
    argv = [
        "dnsmasq",
        "--conf-file=/dev/null",
        f"--pid-file={pidfile}",
        f"--listen-address={gateway}",
        "--bind-interfaces",
        "--no-hosts",
        f"--hostsdir={d / 'hosts'}",
        "--domain-needed",
        "--bogus-priv",
        "--log-facility=/dev/null",
    ]
    if internal:
        argv.append("--no-resolv")  # no way out: not even for names
    try:
        # dnsmasq forks into the background and its first process exits only
        # once the daemon is ready or has failed (its status says which).
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        raise LXCError(
            "cannot start the DNS server of a network: dnsmasq is missing (Debian package dnsmasq-base)",
            operation="network",
        ) from None
    if proc.returncode != 0:
        raise LXCError(
            f"cannot start the DNS server of network bridge {bridge} on {gateway}: {proc.stderr.strip()}",
            operation="network",
            detail=proc.stderr,
        )
    pid = int(pidfile.read_text().strip())
    started = process_start_time(pid)
    if started is None:
        raise LXCError(f"the DNS server of network bridge {bridge} exited as it started", operation="network")
    return pid, started


def stop(pid: int | None, start_time: int | None) -> None:
    """End the dnsmasq that runs as ``pid`` (if it still does). Raises nothing."""
    if not running(pid, start_time):
        return
    assert pid is not None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while process_start_time(pid) == start_time and time.monotonic() < deadline:
        time.sleep(0.02)
    if process_start_time(pid) == start_time:
        os.kill(pid, signal.SIGKILL)


def remove_files(bridge: str) -> None:
    rmtree(dns_dir(bridge))


def set_names(bridge: str, container: str, ip: str, names: Iterable[str]) -> None:
    """Have network ``bridge``'s dnsmasq answer ``names`` with ``ip``."""
    d = dns_dir(bridge) / "hosts"
    os.makedirs(d, mode=0o755, exist_ok=True)
    tmp = d / f".{container}.tmp"
    tmp.write_text(f"{ip}\t{' '.join(dict.fromkeys(names))}\n")
    os.chmod(tmp, 0o644)
    os.rename(tmp, d / container)  # whole or not at all: dnsmasq may read it any time


def drop_names(bridge: str, container: str) -> None:
    try:
        os.unlink(dns_dir(bridge) / "hosts" / container)
    except FileNotFoundError:
        pass


def named(bridge: str) -> list[str]:
    """The containers whose names network ``bridge``'s dnsmasq answers."""
    d = dns_dir(bridge) / "hosts"
    return sorted(p.name for p in d.iterdir() if not p.name.startswith(".")) if d.is_dir() else []


def hosts_file(hostname: str, entries: Iterable[tuple[str, Iterable[str]]]) -> str:
    """A container's /etc/hosts: localhost, and its addresses with its names."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    seen = False
    for ip, names in entries:
        lines.append(f"{ip}\t{' '.join(dict.fromkeys([hostname, *names]))}")
        seen = True
    if not seen:
        lines.append(f"127.0.1.1\t{hostname}")
    return "\n".join(lines) + "\n"


def resolv_conf(nameserver: str | None, settings: Mapping[str, Sequence[str]] | None = None) -> str:
    """A container's /etc/resolv.conf: its network's dnsmasq, or (the
    default bridge, which has none, as Docker's) the name servers of
    ``settings`` (``--dns``), else the host's resolvers but those on the
    host's loopback, which a container cannot reach; Google's if none is
    left (as Docker does). ``settings``' search domains and options
    (``--dns-search``, ``--dns-option``) replace the host's."""
    settings = settings or {}
    search, options = list(settings.get("search", ())), list(settings.get("options", ()))
    tail = [f"search {' '.join(search)}"] if search else []
    tail += [f"options {' '.join(options)}"] if options else []
    if nameserver is not None:
        lines = [f"nameserver {nameserver}", *tail]
        if not options:
            lines.append("options ndots:0")
        return "\n".join(lines) + "\n"
    kept: list[str] = [f"nameserver {ns}" for ns in settings.get("servers", ())]
    try:
        text = Path("/etc/resolv.conf").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        words = line.split()
        if words and words[0] == "nameserver" and len(words) > 1:
            if words[1].startswith("127.") or words[1] == "::1" or settings.get("servers"):
                continue
            kept.append(line.strip())
        elif words and words[0] in ("search", "options"):
            if not (search if words[0] == "search" else options):  # (those given replace the host's)
                kept.append(line.strip())
    if not any(k.startswith("nameserver") for k in kept):
        kept += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return "\n".join(kept + tail) + "\n"
