"""Dockerfiles FROM a debootstrapped Debian, built by pylxcore and by podman: the same image.

The base is pylxcore's ``debian:bookworm`` (debootstrap from the host's
configured mirror), debootstrapped once for the module, exported by pylxcore
and loaded into podman as ``debian:bookworm``. The Dockerfile installs
packages with ``apt-get`` from that mirror (the mirror debootstrap wrote into
the image's sources.list), over the host's network for both builders. The
root filesystems and configs are compared as in
tests/test_dockerfile_differential.py, but for the files apt and dpkg write
that record when they ran (``APT_NOISE``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.test_dockerfile_differential import Peer

pytestmark = pytest.mark.slow

# What differs between two runs of the same apt-get on the same base, and
# nothing else (every other path, bytes included, matches): the logs of apt
# and dpkg, which stamp each line with the time of the run. (apt's binary
# caches, /var/cache/apt/*.bin, embed times too, but "apt-get clean" removes
# them here, as it does in most Dockerfiles.)
APT_NOISE = re.compile(r"var/log/(apt/(history|term)\.log|dpkg\.log)")
# podman's own blind spot, not a build difference: its vfs driver finds a
# layer's changes by size and mtime, and useradd's backup /etc/group- (the
# old /etc/group, "x" passwords) has both the size and the mtime of the
# base's /etc/group- ("*" passwords, 434 bytes, the time 0 of the exported
# base): podman's image keeps the base's bytes, ours has the new ones.
PODMAN_BLIND = "etc/group-"


def apt_noise(path: str) -> bool:
    return path == PODMAN_BLIND or APT_NOISE.fullmatch(path) is not None


@pytest.fixture(scope="module")
def debian(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    p = Peer(tmp_path_factory.mktemp("dfdeb"))
    try:
        p.load_base("debian:bookworm", "debian:bookworm")
        yield p
    finally:
        p.close()


# One Dockerfile, for CI's sake (each costs a build by both and two trees of
# 7000 files): apt-get from the mirror twice (one keeping its lists, one
# cleaning up as Dockerfiles do), a user, a build arg, a copy and the config.
DOCKERFILE = """\
FROM debian:bookworm
ARG EXTRA=tree
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends hello
RUN apt-get install -y --no-install-recommends $EXTRA \\
 && apt-get clean && rm -rf /var/lib/apt/lists/*
WORKDIR /srv/site
COPY site/ ./
RUN useradd --system --uid 999 --home-dir /srv web && chown -R web: /srv \\
 && tree -a /etc/apt > /srv/apt-tree
USER web
EXPOSE 8080
CMD ["hello", "-g", "hi"]
"""


def test_debian_dockerfile_matches_podman(debian: Peer) -> None:
    # --layers=false: podman's vfs driver copies the whole root for every
    # layer it commits; the image it builds is the same.
    debian.build_both(
        "apt",
        DOCKERFILE,
        {"site/index.html": b"<p>hello</p>\n", "site/img/x.svg": b"<svg/>\n"},
        network="host",
        podman_args=("--layers=false",),
        noise=apt_noise,
    )
