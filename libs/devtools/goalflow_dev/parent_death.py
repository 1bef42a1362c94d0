"""Children that die with the process that started them, without ``preexec_fn``.

:func:`dying_with_this_process` turns a command into one that gets SIGTERM when this process
dies, even by SIGKILL (Linux ``PR_SET_PDEATHSIG``). The command then runs as
``python -m goalflow_dev.parent_death PARENT_PID COMMAND [ARG ...]``: this module sets
the signal, checks that PARENT_PID is still its parent, and execs COMMAND in the same process
(same pid; exec keeps the setting, which only a set-user-ID program would clear).

Why a launcher: the setting must be made in the child, and doing it from
``subprocess.Popen(preexec_fn=...)`` runs Python between fork and exec. In a process with
gRPC's threads that crashed the child with SIGSEGV before exec in 2 of 4-7 restarts (and
1-2 of 10 in tests/libs/devtools/test_devstack.py). Without ``preexec_fn``, Popen forks
and execs in C (vfork), so nothing of the parent's runtime runs in the child; the cost is
one extra interpreter start-up (about 20 ms). ``setpriv --pdeathsig`` would do the same in
C, but it cannot notice that the parent died before the setting took effect, which leaves
an orphan behind; here such a child exits without starting anything.

The kernel counts the *thread* that forked as the parent: start such children from a thread
that lives as long as they should (the main thread, or a pool that outlives them).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def dying_with_this_process(command: list[str]) -> list[str]:
    """``command`` wrapped so that it gets SIGTERM when this process dies (Linux); elsewhere
    ``command`` as it is (the caller's own cleanup still stops it on Ctrl-C)."""
    if sys.platform != "linux":  # pragma: no cover - the dev stack targets Linux
        return list(command)
    return [sys.executable, "-m", __name__, str(os.getpid()), *command]


def main(argv: list[str]) -> None:
    if len(argv) < 2 or not argv[0].isdigit():
        sys.exit("usage: python -m goalflow_dev.parent_death PARENT_PID COMMAND [ARG ...]")
    parent, command = int(argv[0]), argv[1:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    # Set only now: had the parent died already, the signal would never come.
    if os.getppid() != parent:
        sys.exit(f"parent_death: process {parent} is gone; not starting {command[0]}")
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
