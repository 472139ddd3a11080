"""Child processes of the test run that die with it: a process started with
`preexec_fn=dies_with_parent(signal)` gets `signal` from the kernel when the process that
started it ends, however it ends (a killed or crashed pytest too), instead of running on as an
orphan that holds a port, a database or a CPU (Linux `prctl(PR_SET_PDEATHSIG)`)."""

from __future__ import annotations

import ctypes
import signal
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def dies_with_parent(sig: signal.Signals = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn` for subprocess.Popen (it runs in the child, after any switch of user,
    which would clear it). The kernel sends `sig` when the THREAD that started the child ends:
    start such children from a thread that lives as long as they should (the test's own, a
    fixture's), never from a thread pool's worker."""

    def arrange() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return arrange
