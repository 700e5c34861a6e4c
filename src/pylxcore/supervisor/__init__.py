"""The supervisor: the small process per container that outlives the caller
(log capture, exit code, OOM), and the zygote that forks them.

    main.py      the program's entry (run as __main__.py; see there how)
    supervise.py the supervisor's life: run lxc-execute, pump its output, record its end
    lxcexec.py   lxc-execute started (on pipes or a terminal), its container seen from
                 outside: its pids, its end, a failed start
    logfile.py   the log's record format and its writer (rotation, reserved space)
    oom.py       the OOM kill counter, watched while the cgroup lives
    policy.py    policy.spec: the restart policy and its back-off, the healthcheck, the events' path
    health.py    the healthcheck, run in the container with Docker's rules
    attachsock.py  the attach socket: callers reach a terminal's or stdin's container through it
    events.py    the store's events log, appended to
    mounts.py    a user-namespaced container's idmapped root
    runspec.py   what the library tells a supervisor to run (run.spec, userns.spec)
    state.py     state.json, as the supervisor writes it (and its small JSON writer)
    protocol.py  the supervisor's answers, the zygote's address and requests
    zygote.py    the per-store process that forks supervisors

Standard library only (and pylxcore.procs), in small built-in modules: a
supervisor started by a fresh interpreter pays for every import before its
container runs. The library's side is pylxcore.runtime.launch.
"""
