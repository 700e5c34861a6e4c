"""What a supervisor keeps besides the one run: ``policy.spec`` (the restart
policy, the healthcheck, where events go), Docker's rules for when to
restart, and its back-off.

Restarts follow Docker's restart manager: a main process that ended (not
stopped or killed by the user: STOP_MARK) is started again after 100 ms,
then 200 ms, 400 ms… (at most a minute), the delay back to 100 ms once a
run lasted 10 s. ``on-failure[:N]`` restarts only after a non-zero exit
code, at most N times; ``always`` and ``unless-stopped`` after any end.
"""

from __future__ import annotations

from pylxcore.supervisor.runspec import read_fields, write_fields

POLICY_SPEC = "policy.spec"
# Made by the library before it stops or kills a container (removed when it
# starts it): an end the user asked for is no failure to restart from. On
# disk, so that after a reboot an ``unless-stopped`` container stopped by
# its user stays stopped (see ContainerCollection.start_restartable).
STOP_MARK = "stopped-by-user"

BACKOFF_FIRST = 0.1
BACKOFF_MAX = 60.0
BACKOFF_RESET = 10.0  # a run this long starts the back-off over


class PolicySpec:
    """``policy.spec``: NUL-separated fields ``restart`` (as
    pylxcore.spec.validate.restart_policy writes it), the events log's path
    (or ""), the container's id, image and name (for its events; a rename
    rewrites the name, see pylxcore.runtime.rename), the healthcheck's
    interval, timeout and start period in seconds and its retries, the
    number N of ``KEY=VALUE`` entries that follow (the environment to run
    the check's command line with), then that command line, which runs the
    check in the container (none: no healthcheck)."""

    __slots__ = (
        "ctr_id", "events", "health_argv", "health_env", "image", "interval", "name",
        "restart", "retries", "start_period", "timeout",
    )  # fmt: skip

    def __init__(
        self,
        restart: str = "no",
        *,
        events: str = "",
        ctr_id: str = "",
        image: str = "",
        name: str = "",
        health_argv: list[str] | None = None,
        health_env: dict[str, str] | None = None,
        interval: float = 30.0,
        timeout: float = 30.0,
        start_period: float = 0.0,
        retries: int = 3,
    ) -> None:
        self.restart = restart
        self.events = events
        self.ctr_id = ctr_id
        self.image = image
        self.name = name
        self.health_argv = health_argv or []
        self.health_env = health_env or {}
        self.interval = interval
        self.timeout = timeout
        self.start_period = start_period
        self.retries = retries

    @classmethod
    def read(cls, ctrdir: str) -> PolicySpec:
        """The spec in ``ctrdir``; the defaults (no restart, no healthcheck,
        no events) when it has none. Raises OSError, ValueError when it is
        not one."""
        try:
            fields = read_fields(ctrdir, POLICY_SPEC)
        except FileNotFoundError:
            return cls()
        if len(fields) < 10:
            raise ValueError(f"{POLICY_SPEC} in {ctrdir} has too few fields")
        n = int(fields[9])
        return cls(
            fields[0],
            events=fields[1],
            ctr_id=fields[2],
            image=fields[3],
            name=fields[4],
            interval=float(fields[5]),
            timeout=float(fields[6]),
            start_period=float(fields[7]),
            retries=int(fields[8]),
            health_env=dict(item.split("=", 1) for item in fields[10 : 10 + n]),
            health_argv=fields[10 + n :],
        )

    def write(self, ctrdir: str) -> None:
        """Write it into ``ctrdir``, atomically (temp + rename), mode 0600 (the
        check's command line holds the container's env). Raises OSError."""
        fields = [
            self.restart, self.events, self.ctr_id, self.image, self.name,
            repr(self.interval), repr(self.timeout), repr(self.start_period), str(self.retries),
            str(len(self.health_env)), *(f"{k}={v}" for k, v in self.health_env.items()),
            *self.health_argv,
        ]  # fmt: skip
        write_fields(ctrdir, POLICY_SPEC, fields)


def should_restart(policy: str, exit_code: int, restarts: int, stopped_by_user: bool) -> bool:
    """Whether a container whose main process ended with ``exit_code``,
    after ``restarts`` restarts, starts again under ``policy`` (see the
    module's docstring). Raises nothing."""
    if stopped_by_user or policy == "no":
        return False
    if policy in ("always", "unless-stopped"):
        return True
    if not policy.startswith("on-failure"):
        return False
    limit = int(policy.partition(":")[2] or 0)
    return exit_code != 0 and (limit == 0 or restarts < limit)


class Backoff:
    """Docker's delay before each restart (see the module's docstring)."""

    __slots__ = ("delay",)

    def __init__(self) -> None:
        self.delay = 0.0

    def next(self, ran_for: float) -> float:
        """The delay before the next start, after a run of ``ran_for`` seconds. Raises nothing."""
        if ran_for >= BACKOFF_RESET:
            self.delay = 0.0
        self.delay = min(BACKOFF_MAX, self.delay * 2 if self.delay else BACKOFF_FIRST)
        return self.delay
