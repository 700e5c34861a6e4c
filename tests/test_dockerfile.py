"""Dockerfiles: Docker's word rules, .dockerignore, refused Dockerfiles, heredocs, the cache, the CLI.

What podman also builds is compared with it in tests/test_dockerfile_differential.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pylxcore import Engine, Image
from pylxcore.build.progress import BuildEvent
from pylxcore.errors import BuildError, SpecError
from pylxcore.spec.dockerignore import IgnoreRules
from pylxcore.spec.dockerwords import WordError, process_word, process_words
from tests.buildcli import Build, cli_build

ENV = {"X": "x", "EMPTY": "", "SP": "a b"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$X", "x"),
        ("${X}y", "xy"),
        ("$Xy", ""),  # the name is "Xy"
        ("${UNSET}", ""),
        ("${X:-d}", "x"),
        ("${UNSET:-d}", "d"),
        ("${EMPTY:-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${UNSET-d}", "d"),
        ("${X:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        ("${UNSET:-$X$X}", "xx"),
        ("${UNSET:-${X:-no}}", "x"),
        ("\\$X", "$X"),
        ('"\\$X"', "$X"),
        ("'$X'", "$X"),
        ('"$SP"', "a b"),
        ('"a\\"b"', 'a"b'),
        ('"a\\b"', "a\\b"),  # in double quotes only \" \$ \\ are escapes
        ("a\\ b", "a b"),
        ("'it'\"'\"'s'", "it's"),
        ("$", "$"),
        ("a$", "a$"),
        ("$1", ""),
        ("", ""),
        ('""', ""),
    ],
)
def test_process_word(text: str, expected: str) -> None:
    assert process_word(text, ENV) == expected


def test_process_word_escape_directive_and_words() -> None:
    assert process_word("a`$X", ENV, escape="`") == "a$X"
    assert process_word("a\\b", ENV, escape="`") == "a\\b"
    assert process_words("a  'b c' \"\" $SP", ENV) == ["a", "b c", "", "a b"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${UNSET:?must be set}", "UNSET: must be set"),
        ("${EMPTY:?}", "EMPTY: is not allowed to be unset"),
        ("'open", "unclosed single quote"),
        ('"open', "unclosed double quote"),
        ("${X", "missing '}'"),
        ("${X/a/b}", "unsupported modifier"),
        ("${}", "expected a variable name"),
    ],
)
def test_process_word_refuses(text: str, message: str) -> None:
    with pytest.raises(WordError, match=message):
        process_word(text, ENV)


def test_dockerignore_rules() -> None:
    rules = IgnoreRules(
        ("*.log", "!keep.log", "secret", "**/*.tmp", "docs/*/draft", "/abs", "a?c", "[xy].md")
    )
    ignored = [
        "x.log",
        "secret",
        "secret/deep/file",
        "d/e/f.tmp",
        "f.tmp",
        "docs/a/draft",
        "abs",
        "abc",
        "x.md",
    ]
    kept = ["keep.log", "sub/x.log", "secrets", "docs/a/b/draft", "a/bc", "z.md", "abs2", "."]
    assert [p for p in ignored if not rules.ignored(p)] == []
    assert [p for p in kept if rules.ignored(p)] == []
    assert rules.may_keep_under("secret") is False


# -- refused Dockerfiles: (Dockerfile, line, instruction, message) ------------------

BAD: list[tuple[str, int | None, str, str]] = [
    ("RUN echo\n", 1, "RUN", "only ARG may come before the first FROM"),
    ("# just a comment\n", None, "", "file with no instructions"),
    ("ARG A=1\n", None, "", "has no FROM instruction"),
    ("FROM busybox\nMAINTAINER me\n", 2, "MAINTAINER", "MAINTAINER is not supported"),
    ("FROM busybox\nONBUILD ONBUILD RUN x\n", 2, "ONBUILD", "chaining ONBUILD via 'ONBUILD ONBUILD'"),
    ("FROM busybox\nONBUILD FROM busybox\n", 2, "ONBUILD", "FROM is not allowed as an ONBUILD trigger"),
    ("FROM busybox\nonbuild maintainer me\n", 2, "ONBUILD", "MAINTAINER is not allowed as an ONBUILD"),
    ("FROM busybox\nONBUILD\n", 2, "ONBUILD", "ONBUILD needs an instruction"),
    ("FROM busybox\nONBUILD FETCH x\n", 2, "ONBUILD", "ONBUILD FETCH: FETCH is not supported"),
    ("FROM busybox\nONBUILD RUN <<EOF\nx\nEOF\n", 2, "ONBUILD", "ONBUILD of an instruction with a heredoc"),
    (
        "FROM busybox AS a\nONBUILD COPY missing.txt /x\nFROM a\n",
        3,
        "FROM",
        "the base image's ONBUILD trigger 'COPY missing.txt /x': 'missing.txt' does not exist",
    ),
    (
        "FROM busybox AS a\nONBUILD RUN --mount=x true\nFROM a\n",
        3,
        "FROM",
        "ONBUILD trigger 'RUN --mount=x true': flag --mount is not supported",
    ),
    ("FROM busybox\nCOPY missing.txt /\n", 2, "COPY", "'missing.txt' does not exist in the build context"),
    ("FROM busybox\nCOPY ../x /\n", 2, "COPY", "outside the build context"),
    ("FROM busybox\nCOPY a.txt b.txt /dir\n", 2, "COPY", "must be a folder ending in '/'"),
    ("FROM busybox\nCOPY http://example.com/x /\n", 2, "COPY", "only ADD fetches URLs"),
    ("FROM busybox\nADD git@github.com:a/b.git /src/\n", 2, "ADD", "only http:// and https:// URLs"),
    ("FROM busybox\nADD ftp://example.com/x /\n", 2, "ADD", "only http:// and https:// URLs"),
    ("FROM busybox\nADD http://example.com/ /dir/\n", 2, "ADD", "cannot tell the file name from the URL"),
    ("FROM busybox\nADD http:///x /x\n", 2, "ADD", "expected an http:// or https:// URL with a host"),
    ("FROM busybox\nADD http://example.com/a http://example.com/b /x\n", 2, "ADD", "must be a folder"),
    ("FROM busybox\nRUN --mount=type=cache,target=/x true\n", 2, "RUN", "flag --mount is not supported"),
    ("FROM busybox\nENV A=${B:?required}\n", 2, "ENV", "B: required"),
    ('FROM busybox\nENV A="open\n', 2, "ENV", "unclosed double quote"),
    ("FROM busybox\nSHELL /bin/bash -c\n", 2, "SHELL", "needs the JSON form"),
    ("FROM busybox\nEXPOSE 99999\n", 2, "EXPOSE", "expected a port from 1 to 65535"),
    ("FROM busybox\nSTOPSIGNAL 'a b'\n", 2, "STOPSIGNAL", "expected a signal name"),
    ("FROM busybox\nHEALTHCHECK --interval=abc CMD true\n", 2, "HEALTHCHECK", "abc"),
    ("FROM busybox\nHEALTHCHECK --foo=1 CMD true\n", 2, "HEALTHCHECK", "flag --foo is not supported"),
    ("FROM busybox\nHEALTHCHECK\n", 2, "HEALTHCHECK", "HEALTHCHECK [OPTIONS] CMD"),
    ("FROM busybox AS 1bad\n", 1, "FROM", "invalid stage name '1bad'"),
    ("FROM busybox AS a\nFROM busybox AS a\n", 2, "FROM", "duplicate stage name 'a'"),
    ("FROM busybox\nCOPY --chmod=999 a.txt /\n", 2, "COPY", "expected octal permission bits"),
    ("FROM busybox\nENV A\\ B=x\n", 2, "ENV", "invalid variable name 'A B'"),
    ("FROM busybox\nUSER 'bad user'\n", 2, "USER", "expected a user name or uid"),
    ("FROM --platform=linux/s390x busybox\n", 1, "FROM", "is not this host's platform"),
    ("FROM busybox\nVOLUME relative\n", 2, "VOLUME", "relative"),
    ("FROM busybox\nENV A=${X/a/b}\n", 2, "ENV", "unsupported modifier"),
    ("FROM busybox\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n", 2, "RUN", "'#!' is not supported"),
    ("FROM busybox\nCOPY <<EOF /x\nhi\nEOF\n", 2, "COPY", "heredoc is not supported"),
    ("FROM busybox\nCOPY *.none /x/\n", 2, "COPY", "no file in the build context matches '*.none'"),
    ("FROM busybox\nCOPY ignored.txt /\n", 2, "COPY", "excluded by .dockerignore"),
    ("FROM busybox\nRUN --network=bridge true\n", 2, "RUN", "--network=bridge is not supported"),
    ("ARG B\nFROM ${B}\n", 2, "FROM", "names no image"),
    (
        "FROM busybox AS first\nCOPY --from=later /x /y\nFROM busybox AS later\nFROM first\n",
        2,
        "COPY",
        "--from=later names no earlier stage",
    ),
    ("FROM busybox AS a\nFROM busybox\nCOPY --from=a /x* /y/\n", 3, "COPY", "wildcards in COPY --from"),
    ("FROM busybox AS a\nRUN --mount=x true\nFROM busybox\nCOPY --from=a /x /y\n", 2, "RUN", "--mount"),
    ("FROM busybox\nADD --checksum=sha256:0 a.txt /\n", 2, "ADD", "flag --checksum is not supported"),
    ("FROM busybox\nFROM Not/Valid:Ref!\n", 2, "FROM", "invalid image"),
]


@pytest.mark.parametrize(
    ("text", "line", "instruction", "message"), BAD, ids=[f"bad{i}" for i in range(len(BAD))]
)
def test_bad_dockerfile(tmp_path: Path, text: str, line: int | None, instruction: str, message: str) -> None:
    (tmp_path / "Dockerfile").write_text(text)
    (tmp_path / "a.txt").write_text("a\n")
    (tmp_path / "b.txt").write_text("b\n")
    (tmp_path / "ignored.txt").write_text("i\n")
    (tmp_path / ".dockerignore").write_text("ignored.txt\n")
    with pytest.raises(SpecError) as info:
        Image.from_dockerfile(tmp_path / "Dockerfile")
    err = info.value
    assert message in err.reason, err
    assert err.path == str(tmp_path / "Dockerfile")
    assert err.line == line
    assert err.key == instruction
    if line is not None:
        assert str(err).startswith(f"{tmp_path / 'Dockerfile'}:{line}: {instruction}: ")


def test_bad_target_and_unreadable(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox AS one\n")
    with pytest.raises(SpecError, match="target stage 'two' not found \\(stages: one\\)"):
        Image.from_dockerfile(tmp_path / "Dockerfile", target="two")
    with pytest.raises(SpecError, match="cannot read the Dockerfile"):
        Image.from_dockerfile(tmp_path / "nope")


def test_translation(tmp_path: Path) -> None:
    """What a Dockerfile becomes, where no peer shows it: SHELL for CMD, stages not needed unread."""
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox AS unused\nRUN exit 1\nMAINTAINER not read: this stage is not needed\n"
        'FROM --platform=$BUILDPLATFORM busybox\nSHELL ["/bin/sh", "-x", "-c"]\nCMD echo hi\n'
        "ENTRYPOINT exec sleep 1\nARG V=1\nRUN echo $V\nARG TARGETOS\nENV OS=$TARGETOS\n"
    )
    image = Image.from_dockerfile(tmp_path / "Dockerfile", name="t:1")
    # Docker: the shell forms of CMD and ENTRYPOINT run in SHELL (podman 4.3 ignores it).
    assert image.cmd == ("/bin/sh", "-x", "-c", "echo hi")
    assert image.entrypoint == ("/bin/sh", "-x", "-c", "exec sleep 1")
    assert [layer.instruction() for layer in image.layers][:1] == ["Dockerfile:9 RUN echo $V"]
    assert image.layers[1].env_pairs == (("OS", "linux"),)
    assert image.layers[0].script == "export V=1\nexec /bin/sh -x -c 'echo $V'"


def test_onbuild_translation(tmp_path: Path) -> None:
    """ONBUILD is kept, not run; a stage FROM it runs it first, shown at its FROM line (podman: see
    tests/test_dockerfile_onbuild_url.py)."""
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox AS base\nONBUILD ARG V=1\nONBUILD RUN echo $V\nLABEL x=1\n"
        "FROM base AS child\nONBUILD COPY a.txt /\nRUN echo own\n"
    )
    base = Image.from_dockerfile(tmp_path / "Dockerfile", target="base")
    assert (base.onbuild, base.layers) == (("ARG V=1", "RUN echo $V"), ())
    child = Image.from_dockerfile(tmp_path / "Dockerfile")
    shown = [layer.instruction() for layer in child.layers]
    assert shown == ["Dockerfile:5 [ONBUILD] RUN echo $V", "Dockerfile:7 RUN echo own"]
    assert child.layers[0].script == "export V=1\nexec /bin/sh -c 'echo $V'"
    assert (child.onbuild, child.labels) == (("COPY a.txt /",), {"x": "1"})


# -- the command line: ``pylxcore build`` as a real process ----------------------

def replayed_build(root: Path, *args: str, name: str) -> Build:
    """Build until the record answers (what a build read must settle first); the replay."""
    import time

    for _ in range(10):
        b = cli_build(root, *args, name=name, check=False)
        assert b.code == 0, b.err
        if b.path == "replay":
            return b
        time.sleep(0.2)
    raise AssertionError(f"no replay after ten builds of {args}")


# -- builds ----------------------------------------------------------------------


def events(engine: Engine, image: Image) -> tuple[list[bool], list[str]]:
    """Per layer step whether it was cached, and every output line."""
    cached: list[bool] = []
    output: list[str] = []

    def progress(ev: BuildEvent) -> None:
        if ev.kind == "step" and ev.index > 0:
            cached.append(bool(ev.cached))
        elif ev.kind == "output":
            output.append(ev.line)

    engine.images.build(image, progress=progress)
    return cached, output


def test_heredocs_and_user(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nARG WHO=world\n"
        'RUN <<EOF\nset -e\necho "hello $WHO" > /greeting\necho second >> /greeting\nEOF\n'
        "RUN cat <<EOF > /quoted && cat <<-'END' > /tabs\n$WHO\nEOF\n\tliteral $WHO\n\tEND\n"
        "RUN echo app:x:1234:1234::/tmp:/bin/sh >> /etc/passwd && echo app:x:1234: >> /etc/group\n"
        "USER app\nRUN id -u > /tmp/uid\n"
    )
    image = Image.from_dockerfile(tmp_path / "Dockerfile", name="here:1")
    engine.images.build(image)
    out = engine.containers.run(
        "here:1", ["sh", "-c", "cat /greeting /quoted /tabs /tmp/uid; stat -c %u /tmp/uid"], remove=True
    )
    assert out.stdout == b"hello world\nsecond\nworld\nliteral $WHO\n1234\n1234\n"


def test_build_error_names_the_dockerfile_line(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nENV A=1\nRUN echo before \\\n && echo oops >&2 && exit 3\n"
    )
    with pytest.raises(BuildError) as info:
        engine.images.build(Image.from_dockerfile(tmp_path / "Dockerfile", name="fail:1"))
    err = info.value
    assert err.instruction == "Dockerfile:3 RUN echo before  && echo oops >&2 && exit 3"
    assert err.exit_code == 3
    assert err.output_tail[-2:] == ["before", "oops"]
    assert "Dockerfile:3 RUN echo before  && echo oops" in str(err)


def test_cache(engine: Engine, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    for name in ("a", "b", "ignored"):
        (ctx / name).write_text(f"{name}\n")
    (ctx / ".dockerignore").write_text(".dockerignore\nignored\n")
    lines = [
        "FROM busybox",
        "ENV E=1",
        "COPY a /a",
        "RUN cat /a > /ra",
        "ARG V=1",
        "COPY b /b",
        "RUN echo $V > /v",
        "COPY . /all/",
    ]

    def build(**build_args: str) -> list[bool]:
        (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
        image = Image.from_dockerfile(ctx / "Dockerfile", name="cache:1", build_args=build_args)
        cached, _ = events(engine, image)
        return cached

    # ENV, COPY a, RUN, COPY b, RUN, COPY . (ARG is no step)
    assert build() == [True, False, False, False, False, False]
    assert build() == [True] * 6  # a second build starts no container
    lines[3] = "RUN cat /a > /ra2"  # editing step k rebuilds k and after
    assert build() == [True, True, False, False, False, False]
    (ctx / "b").write_text("b2\n")  # a copied file: its COPY and after
    assert build() == [True, True, True, False, False, False]
    (ctx / "ignored").write_text("changed\n")  # a file .dockerignore leaves out: nothing
    assert build() == [True] * 6
    (ctx / ".dockerignore").write_text(".dockerignore\nignored\nnothing-*\n")  # the same files copied
    assert build() == [True] * 6
    (ctx / ".dockerignore").write_text(".dockerignore\nignored\nb\n")  # COPY b: no such file now
    with pytest.raises(SpecError, match="'b' is excluded by .dockerignore"):
        build()
    (ctx / ".dockerignore").write_text(".dockerignore\nignored\n")
    assert build(V="2") == [True, True, True, True, False, False]  # a build arg: the steps that see it
    assert build(V="2") == [True] * 6
    out = engine.containers.run("cache:1", ["sh", "-c", "cat /v; ls /all"], remove=True)
    assert out.stdout == b"2\nDockerfile\na\nb\n"


def test_cli(engine: Engine, tmp_path: Path) -> None:
    """Docker's form of build, its record replay, and what invalidates the replay."""
    ctx = tmp_path / "app"
    ctx.mkdir()
    (ctx / "site.txt").write_text("site\n")
    (ctx / "Dockerfile.custom").write_text(
        "FROM busybox AS base\nARG MSG=default\nCOPY . /app/\nRUN echo $MSG > /msg\n"
        'FROM base AS final\nCMD ["cat", "/msg"]\n'
    )
    root = engine.root
    args = ["-t", "cli/app:1", "-f", str(ctx / "Dockerfile.custom"), "--build-arg", "MSG=hi", str(ctx)]
    first = cli_build(root, *args, name="cli/app:1", check=False)
    assert first.path == "real" and "Successfully tagged cli/app:1" in first.out
    # An unchanged build is answered from its record (once what it read is settled).
    replay = replayed_build(root, *args, name="cli/app:1")
    assert replay.image_id == first.image_id
    assert engine.containers.run("cli/app:1", remove=True).stdout == b"hi\n"
    # A new .dockerignore changes what COPY . copies: no replay may answer.
    (ctx / ".dockerignore").write_text("site.txt\n")
    changed = cli_build(root, *args, name="cli/app:1", check=False)
    assert changed.path == "real" and changed.image_id != first.image_id
    listing = engine.containers.run("cli/app:1", ["ls", "/app"], remove=True).stdout
    assert listing == b"Dockerfile.custom\n"
    # BuildKit's rule: DOCKERFILE.dockerignore beside the Dockerfile comes first.
    (ctx / "Dockerfile.custom.dockerignore").write_text("Dockerfile.custom\n*.dockerignore\n")
    cli_build(root, *args, name="cli/app:1", check=False)
    listing = engine.containers.run("cli/app:1", ["ls", "-a", "/app"], remove=True).stdout
    assert listing == b".\n..\nsite.txt\n"  # "*.dockerignore" matches ".dockerignore" too
    # --target, and a folder holding a Dockerfile as the argument.
    (ctx / "Dockerfile").write_text("FROM busybox AS one\nRUN echo one > /one\nFROM one\nRUN exit 9\n")
    target = cli_build(root, "-t", "cli/one:1", "--target", "one", str(ctx), name="cli/one:1", check=False)
    assert target.code == 0
    # The Dockerfile itself as the argument: its folder is the context.
    by_file = cli_build(root, "-t", "cli/one:2", "--target", "one", str(ctx / "Dockerfile"), name="cli/one:2",
                        check=False)
    assert by_file.code == 0 and by_file.image_id == target.image_id
    failed = cli_build(root, "-t", "cli/two:1", str(ctx), name="cli/two:1", check=False)
    assert failed.code != 0 and "Dockerfile:4 RUN exit 9" in failed.err


def test_example_web_dockerfile(engine: Engine, tmp_path: Path) -> None:
    """examples/web/Dockerfile: the seed's story (base OS, web server, the site), built and served;
    the same files as examples/web/image.yaml gives."""
    import socket
    import time
    import urllib.request

    from tests.test_dockerfile_differential import tree

    web = Path(__file__).parent.parent / "examples" / "web"
    image = Image.from_dockerfile(web / "Dockerfile", name="example/web:df")
    built = engine.images.build(image)
    assert all(step.cached for step in engine.images.build(image).layers)
    assert built.config.exposed_ports == ("8080/tcp",) and built.config.healthcheck is not None
    engine.images.build(Image.load(web / "image.yaml"))
    ours = tree(engine.images.export("example/web:df", tmp_path / "df.tar", format="rootfs"))
    yaml = tree(engine.images.export("example/web:1.0", tmp_path / "yaml.tar", format="rootfs"))
    assert ours == yaml

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    c = engine.containers.run("example/web:df", detach=True, network="host", env={"PORT": str(port)})
    try:
        page = ""
        for _ in range(100):  # the server needs a moment to listen (loopback only)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    page = resp.read().decode()
                break
            except OSError:
                time.sleep(0.05)
        assert page == (web / "site" / "index.html").read_text()
    finally:
        c.stop(timeout=5)
        c.remove()


def test_multistage_builds_only_what_the_target_needs(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox AS broken\nRUN exit 1\n"
        "FROM busybox AS build\nARG N=1\nRUN echo built-$N > /out\n"
        "FROM busybox\nCOPY --from=build /out /app/out\nRUN cat /app/out > /app/copy\n"
    )

    def build(**build_args: str) -> list[bool]:
        image = Image.from_dockerfile(tmp_path / "Dockerfile", name="multi:1", build_args=build_args)
        return events(engine, image)[0]

    assert build() == [False, False]  # the broken stage is never built
    assert build() == [True, True]
    assert build(N="2") == [False, False]  # the stage changed: what it copies too
    out = engine.containers.run("multi:1", ["cat", "/app/copy"], remove=True)
    assert out.stdout == b"built-2\n"
    with pytest.raises(BuildError, match="the stage it copies from failed") as info:
        (tmp_path / "Dockerfile").write_text(
            "FROM busybox AS a\nRUN exit 4\nFROM busybox\nCOPY --from=a / /x\n"
        )
        engine.images.build(Image.from_dockerfile(tmp_path / "Dockerfile", name="multi:2"))
    assert info.value.instruction == "Dockerfile:4 COPY --from=a / /x"
    assert info.value.exit_code == 4


def test_from_a_local_image_takes_its_config(engine: Engine, tmp_path: Path) -> None:
    engine.images.build(
        Image(
            "parent:1",
            base="busybox",
            env={"P": "parent", "PATH": "/opt:/bin"},
            workdir="/srv",
            user="1000",
            cmd=["sleep", "1"],
            labels={"from": "parent"},
            exposed_ports=[80],
            layers=["mkdir -p /srv"],
        )
    )
    (tmp_path / "Dockerfile").write_text("FROM parent:1\nENV C=$P-child X=$PATH\nRUN echo $P $C > /tmp/out\n")
    image = Image.from_dockerfile(tmp_path / "Dockerfile", name="child:1", engine=engine)
    config = engine.images.build(image).config
    assert config.env == {"P": "parent", "PATH": "/opt:/bin", "C": "parent-child", "X": "/opt:/bin"}
    assert (config.workdir, config.user, config.cmd) == ("/srv", "1000", ("sleep", "1"))
    assert (config.labels, config.exposed_ports) == ({"from": "parent"}, ("80/tcp",))
    out = engine.containers.run("child:1", ["cat", "/tmp/out"], remove=True)
    assert out.stdout == b"parent parent-child\n"
    # Without an engine, only the files: the config is the Dockerfile's own.
    assert Image.from_dockerfile(tmp_path / "Dockerfile", name="child:1").env == {}
    with pytest.raises(SpecError, match="no image 'nope:1' in the store to build FROM"):
        (tmp_path / "Dockerfile").write_text("FROM nope:1\n")
        Image.from_dockerfile(tmp_path / "Dockerfile", engine=engine)
