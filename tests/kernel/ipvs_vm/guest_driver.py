"""Runs INSIDE the guest under the host's Python (see guestpy.py): one process
drives ipvsadm, reads IPVS over netlink and runs maglevx commands, so that the
Python start-up (seconds under TCG) is paid once per boot.

    hostpy /path/to/guest_driver.py /tmp/job.json /tmp/result.json

The job is a list of steps; each step's result goes to the result list:

- ``{"do": "restore", "lines": [...]}``: ``ipvsadm -R`` (rc, stderr);
- ``{"do": "read"}``: netlink records, ``ipvsadm -Ln --nosort`` and its
  ``--thresholds`` form, taken one after the other;
- ``{"do": "journal_replay"}``: the journal kept over the reads since the
  last ``-C`` (baseline, then diffs), replayed with ``ipvsadm -R`` in a fresh
  network namespace, and that namespace's listings;
- ``{"do": "facts"}``: ``maglevx.kernelinfo.detect()``;
- ``{"do": "flows", "flows": "proto saddr sport daddr dport\\n...", "flowgen": PATH}``:
  the static flow generator's output;
- ``{"do": "maglevx", "args": [...], "stdin": "..."}``: ``maglevx.cli.main``
  in-process (rc, stdout, stderr, seconds);
- ``{"do": "maglevx", "args": [...], "uid": 65534}``: the same in a forked child
  running as that user;
- ``{"do": "watch_start", "listen": "0.0.0.0:9753", "journal": PATH}``: a
  ``maglevx watch`` Watcher serving HTTP in a thread, polled only by
- ``{"do": "watch_poll"}`` (so that every phase's change is observed), and
  ``{"do": "watch_stop"}``;
- ``{"do": "wait_file", "path": ..., "timeout": S}``: wait for the host (which
  sees the 9p share's files appear) to say it is done;
- ``{"do": "sh", "cmd": "..."}``: a shell command (rc, stdout, stderr).
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time


def _run(cmd, stdin: str = "", shell: bool = False) -> dict:  # noqa: D103
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, shell=shell)
    return {"rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr}


JOURNAL: dict = {"last": None, "lines": []}
WATCH: dict = {}


def _journal(services) -> None:
    """Keep a change journal over the reads, as ``maglevx watch`` does."""
    from maglevx import journal

    if JOURNAL["last"] is None:
        JOURNAL["lines"] = journal.baseline(services)
    else:
        JOURNAL["lines"] += journal.diff(JOURNAL["last"], services)
    JOURNAL["last"] = services


def step(s: dict) -> dict:
    t0 = time.monotonic()
    do = s["do"]
    if do == "restore":
        out = _run(["ipvsadm", "-R"], "\n".join(s["lines"]) + "\n")
        if s["lines"] == ["-C"]:
            JOURNAL["last"] = None
    elif do == "read":
        from maglevx import netlink

        out = {}
        try:
            services = netlink.read_services()
            out["records"] = netlink.services_to_json(services)
            _journal(services)
        except Exception as exc:  # noqa: BLE001 - reported to the host
            out["error"] = f"{type(exc).__name__}: {exc}"
        out["listing"] = _run(["ipvsadm", "-Ln", "--nosort"])["stdout"]
        out["thresholds"] = _run(["ipvsadm", "-Ln", "--nosort", "--thresholds"])[
            "stdout"
        ]
    elif do == "journal_replay":
        # the journal so far, replayed by the kernel in a fresh network namespace
        # (ipvsadm -R takes no comments; with lo down the new namespace has no
        # local table and the kernel refuses IPv4 real servers as not unicast;
        # 10.0.0.0/8 is local as in the job's netsetup, so "Local" stays Local)
        text = "\n".join(JOURNAL["lines"]) + "\n"
        out = _run(
            "grep -v '^#' | unshare -n sh -c 'ip link set lo up && "
            "ip route add local 10.0.0.0/8 dev lo && "
            "ipvsadm -R && ipvsadm -Ln --nosort && echo @@ && "
            "ipvsadm -Ln --nosort --thresholds'",
            text,
            shell=True,
        )
        out["journal"] = text
    elif do == "facts":
        from maglevx import kernelinfo

        out = kernelinfo.detect().to_json()
    elif do == "flows":
        import tempfile

        # devtmpfs has no /dev/stdin: hand flowgen a file
        with tempfile.NamedTemporaryFile("w", suffix=".flows") as f:
            f.write(s["flows"])
            f.flush()
            out = _run([s["flowgen"], f.name])
    elif do == "maglevx" and s.get("uid") is not None:
        out = _as_user(s)
    elif do == "maglevx":
        from maglevx import cli

        so, se = io.StringIO(), io.StringIO()
        old_stdin = sys.stdin
        sys.stdin = io.TextIOWrapper(io.BytesIO(s.get("stdin", "").encode()))
        try:
            with contextlib.redirect_stderr(se):
                rc = cli.main(s["args"], stdout=so)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 2
        finally:
            sys.stdin = old_stdin
        out = {"rc": rc, "stdout": so.getvalue(), "stderr": se.getvalue()}
    elif do == "watch_start":
        import threading

        from maglevx.tools import watch

        w = watch.Watcher(journal_path=s.get("journal"))
        stop = threading.Event()
        started = threading.Event()
        t = threading.Thread(
            target=watch.serve,
            args=(w, s["listen"], 3600.0, stop, lambda _a: started.set()),
            daemon=True,
        )
        t.start()
        started.wait(120)
        WATCH.update(watcher=w, stop=stop, thread=t)
        out = {"polls": w.polls, "up": w.up, "error": w.last_error}
    elif do == "watch_poll":
        w = WATCH["watcher"]
        w.poll()
        out = {
            "polls": w.polls,
            "up": w.up,
            "error": w.last_error,
            "fingerprints": dict(w.fingerprints),
        }
    elif do == "watch_stop":
        WATCH["stop"].set()
        WATCH["thread"].join(60)
        out = {"stopped": not WATCH["thread"].is_alive()}
    elif do == "wait_file":
        deadline = time.monotonic() + s.get("timeout", 300)
        import os

        while not os.path.exists(s["path"]) and time.monotonic() < deadline:
            time.sleep(0.5)
        out = {"found": os.path.exists(s["path"])}
    elif do == "sh":
        out = _run(s["cmd"], shell=True)
    else:
        raise SystemExit(f"unknown step {do!r}")
    out["seconds"] = time.monotonic() - t0
    return out


def _as_user(s: dict) -> dict:
    """``maglevx.cli.main`` in a forked child with another uid (no capabilities)."""
    import os

    r_out, w_out = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.setgroups([])
            os.setgid(s["uid"])
            os.setuid(s["uid"])
            from maglevx import cli

            so, se = io.StringIO(), io.StringIO()
            with contextlib.redirect_stderr(se):
                rc = cli.main(s["args"], stdout=so)
            data = json.dumps(
                {"rc": rc, "stdout": so.getvalue(), "stderr": se.getvalue()}
            )
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            data = json.dumps({"rc": -1, "stdout": "", "stderr": repr(exc)})
        os.write(w_out, data.encode())
        os._exit(0)
    os.close(w_out)
    chunks = []
    while True:
        b = os.read(r_out, 65536)
        if not b:
            break
        chunks.append(b)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks) or b'{"rc": -1, "stderr": "no output"}')


def main() -> None:
    t0 = time.monotonic()
    import maglevx  # noqa: F401 - timed: the import is most of the start-up

    started = time.monotonic() - t0
    with open(sys.argv[1]) as f:
        steps = json.load(f)
    results = []
    for s in steps:
        results.append(step(s))
        with open(sys.argv[2], "w") as f:  # partial results survive a crash
            json.dump({"import_seconds": started, "results": results}, f)


if __name__ == "__main__":
    main()
