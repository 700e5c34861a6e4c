"""Recording a build for the command line's replay: what it read, what the command printed.

The command line (``pylxcore.__main__``) runs every command inside a
:class:`Session`. The session copies what is written to stdout and stderr;
the builder asks it for a :class:`Reads` and records in it, while it builds,
every input it read to decide the cache, resolved as it resolved them; the
``build`` command names the YAML it loaded (:func:`note_spec`). When the
command succeeded, its one build was cached throughout and printed nothing on
stderr, the session writes a build record (the format is build/record.py's)
into the store. Without a session nothing is recorded and nothing costs.

The session is found through a context variable rather than passed down:
the command line's code then needs to know nothing about records but the
name of the YAML, and a record can only ever come from the real build path.
"""

from __future__ import annotations

import contextvars
import os
import stat
import sys
import time

from pylxcore.build import record

# Every command runs in a session, and most load neither attrs nor typing:
# this module imports only the standard library's cheapest, until a save.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path
    from typing import Any

    from pylxcore.build.progress import BuildEvent
    from pylxcore.build.record import Document, Fact
    from pylxcore.spec import Image
    from pylxcore.store import Store


class Reads:
    """What one build read to decide its cache, as the facts a replay checks."""

    def __init__(self, store: Store, *, no_cache: bool) -> None:
        self.store = store
        self.no_cache = no_cache
        self.facts: list[Fact] = []
        self.fully_cached = True  # every step was found in the cache
        self.refused: str | None = None  # why this build cannot be replayed, if it cannot
        self.image_id = ""

    def refuse(self, why: str) -> None:
        """This build read something a replay could not check again."""
        if self.refused is None:
            self.refused = why

    def saw(
        self,
        path: str,
        st: os.stat_result,
        *,
        follow: bool,
        sha256: str | None = None,
        names: Sequence[str] | None = None,
        target: str | None = None,
    ) -> None:
        """The build used ``path`` as it was when stat'ed as ``st`` (``follow``:
        with os.stat, else os.lstat): a file's bytes hashed as ``sha256``, a
        directory's sorted ``names``, a symlink's ``target``. The content is
        kept only when the stat cannot vouch for it (record.settled)."""
        if record.settled(st, time.time_ns()):
            sha256 = names = None
        elif stat.S_ISREG(st.st_mode) and sha256 is None:
            self.refuse(f"{path} changed too recently and its bytes were not hashed")
        elif stat.S_ISDIR(st.st_mode) and names is None:
            self.refuse(f"{path} changed too recently and its entries were not listed")
        self.facts.append(
            record.stat_fact(path, st, follow=follow, sha256=sha256, names=names, target=target)
        )

    def saw_json(self, path: str, st: os.stat_result, value: Any) -> None:
        """The build read the JSON file ``path`` (stat'ed as ``st`` before) as ``value``."""
        sha256 = None
        if not record.settled(st, time.time_ns()):
            # Hash what is there now, and vouch for it only if it says what was read.
            import hashlib  # (deferred: 3 ms of every import pylxcore)
            import json

            with open(path, "rb") as fh:
                data = fh.read()
            if json.loads(data) == value:
                sha256 = hashlib.sha256(data).hexdigest()
        self.saw(path, st, follow=False, sha256=sha256)

    def resolved(self, path: str, real: str) -> None:
        """The build resolved ``path`` (its symlinks followed) to ``real``."""
        self.facts.append(record.realpath_fact(path, real))

    def exists(self, path: str, exists: bool) -> None:
        """The build asked whether ``path`` exists and was told ``exists``."""
        self.facts.append(record.exists_fact(path, exists))

    def ref(self, name: str, image_id: str) -> None:
        """The build found ``name`` naming ``image_id`` in the store's refs."""
        self.facts.append(record.ref_fact(str(self.store.refs_path), name, image_id))

    def watching(self, emit: Callable[[BuildEvent], None]) -> Callable[[BuildEvent], None]:
        """``emit``, noting any step that is not cached."""

        def watched(ev: BuildEvent) -> None:
            if ev.kind == "step" and not ev.cached:
                self.fully_cached = False
            emit(ev)

        return watched


# A command that prints more than this is no build to replay (``stats`` may
# print for hours): the copy stops, and the session records nothing.
_COPY_LIMIT = 1 << 20


class _Tee:
    """A text stream that passes everything on and keeps a copy of the text."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.parts: list[str] = []
        self.copied = 0
        self.bypassed = False  # the copy may miss something: the bytes or the fd were used, or too much

    def write(self, text: str) -> int:
        written: int = self.stream.write(text)
        if not self.bypassed:
            self.copied += len(text)
            self.parts.append(text)
            if self.copied > _COPY_LIMIT:
                self.bypassed, self.parts = True, []
        return written

    def writelines(self, lines: Sequence[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        if name in ("buffer", "fileno", "detach", "reconfigure"):
            self.bypassed, self.parts = True, []
        return getattr(self.stream, name)


_SESSION: contextvars.ContextVar[Session | None] = contextvars.ContextVar("pylxcore_session", default=None)


class Session:
    """One command line's recording; ``with Session(argv): ...`` then :meth:`save`."""

    def __init__(
        self, argv: Sequence[str], *, environ: Mapping[str, str] | None = None, cwd: str | None = None
    ) -> None:
        environ = os.environ if environ is None else environ
        cwd = os.getcwd() if cwd is None else cwd
        self.invocation = record.invocation(argv, environ, cwd)
        self.hint = record.store_hint(argv, environ, cwd)
        self.reads: Reads | None = None
        self.builds = 0
        self.spec: tuple[str, Image, Callable[[], Image] | None, Sequence[str]] | None = None
        self._out: _Tee | None = None
        self._err: _Tee | None = None
        self._token: contextvars.Token[Session | None] | None = None

    def __enter__(self) -> Session:
        self._out, self._err = _Tee(sys.stdout), _Tee(sys.stderr)
        sys.stdout, sys.stderr = self._out, self._err
        self._token = _SESSION.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _SESSION.reset(self._token)
        # Put back only what is still ours: whoever replaced a stream since keeps it.
        if self._out is not None and sys.stdout is self._out:
            sys.stdout = self._out.stream
        if self._err is not None and sys.stderr is self._err:
            sys.stderr = self._err.stream

    def save(self, code: int) -> Path | None:
        """After the command: write its build record if a replay could answer it
        (see the module's doc). Returns the record's path. A record that cannot
        be written only costs the next command its speed: nothing is raised."""
        try:
            document = self._document(code)
            if document is None:
                return None
            from pathlib import Path

            from pylxcore.store import atomic_write, make_private_dir

            path = Path(record.record_file(self.hint, self.invocation))
            make_private_dir(path.parent)
            atomic_write(path, record.dumps(document))
            return path
        except Exception:  # noqa: BLE001  (a shortcut that failed is no error)
            return None

    def _document(self, code: int) -> Document | None:
        reads, out, err = self.reads, self._out, self._err
        if code != 0 or reads is None or self.builds != 1 or self.spec is None or out is None or err is None:
            return None
        if reads.refused or not reads.fully_cached or reads.no_cache or not reads.image_id:
            return None
        if out.bypassed or err.bypassed or err.copied:
            return None
        if os.path.realpath(self.hint) != os.path.realpath(reads.store.root):
            return None  # the replay would look elsewhere
        if not self._note_spec_file(reads, *self.spec):
            return None
        for name, module in list(sys.modules.items()):
            # The library's own code decides keys and output: an edit to it is a change.
            path = getattr(module, "__file__", None)
            if (name == "pylxcore" or name.startswith("pylxcore.")) and path:
                reads.saw(path, os.stat(path), follow=True)
        store = reads.store
        names = sorted(n for n, i in store.read_refs().items() if i == reads.image_id)
        if not names:
            return None
        for name in names:
            reads.ref(name, reads.image_id)
        reads.exists(str(store.image_path(reads.image_id)), True)
        if reads.refused:
            return None
        return record.document(
            invocation=self.invocation,
            root=str(store.root),
            image_id=reads.image_id,
            facts=reads.facts,
            stdout="".join(out.parts),
        )

    @staticmethod
    def _note_spec_file(
        reads: Reads, path: str, image: Image, reload: Callable[[], Image] | None, inputs: Sequence[str]
    ) -> bool:
        """The YAML (or the Dockerfile, which ``reload`` reads again, and the
        other ``inputs`` it read): vouched for only by bytes that say exactly
        the image built."""
        import hashlib  # (deferred: 3 ms of every import pylxcore)

        from pylxcore.errors import SpecError
        from pylxcore.spec import Image

        real = os.path.realpath(path)
        st = os.stat(path)
        with open(path, "rb") as fh:
            data = fh.read()
        facts: list[tuple[str, os.stat_result, bytes] | str] = []
        for extra in inputs:
            if extra.startswith("glob:"):
                return False  # a wildcard's matches are a listing no fact here keeps
            try:
                extra_st = os.stat(extra)
                with open(extra, "rb") as fh:
                    facts.append((extra, extra_st, fh.read()))
            except FileNotFoundError:
                facts.append(extra)
        try:
            again = reload() if reload is not None else Image.from_yaml(data.decode("utf-8"))
            if again != image:
                return False
        except (SpecError, UnicodeDecodeError):
            return False
        reads.resolved(path, real)
        reads.saw(path, st, follow=True, sha256=hashlib.sha256(data).hexdigest())
        for fact in facts:
            if isinstance(fact, str):
                reads.exists(fact, False)
            else:
                reads.saw(fact[0], fact[1], follow=True, sha256=hashlib.sha256(fact[2]).hexdigest())
        return True


def reads_for_build(store: Store, *, no_cache: bool) -> Reads | None:
    """For the builder: where to record this build's reads, or None (no session,
    or not the session's first build: a command with two builds is not recorded)."""
    session = _SESSION.get()
    if session is None:
        return None
    session.builds += 1
    if session.builds > 1:
        return None
    session.reads = Reads(store, no_cache=no_cache)
    return session.reads


def note_spec(
    path: str, image: Image, *, reload: Callable[[], Image] | None = None, inputs: Sequence[str] = ()
) -> None:
    """For the ``build`` command: the YAML file ``path`` it loaded as ``image``;
    for a Dockerfile, ``reload`` reads it again (as the command did) and
    ``inputs`` are the other files it read (a missing one counts too)."""
    session = _SESSION.get()
    if session is not None:
        session.spec = (path, image, reload, tuple(inputs))


__all__ = ["Reads", "Session", "reads_for_build", "note_spec"]
