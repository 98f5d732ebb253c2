"""Graceful stops on SIGINT/SIGTERM, for the processes that train (``shf train``, and each
method's child process under ``shf compare``) and for a parent that waits on such a child.

The first signal asks the training loop to stop after the current iteration; the loop then
writes a checkpoint, the best weights and a summary whose ``stop_reason`` is
``"interrupted"``, so rerunning the command resumes the run. A second Ctrl-C aborts at once
(the run then resumes from its last periodic checkpoint).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from types import TracebackType
from typing import Any, Self

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _in_main_thread() -> bool:
    """Signal handlers can only be installed from the main thread; elsewhere these are no-ops."""
    return threading.current_thread() is threading.main_thread()


class _Handlers:
    """A context that installs ``self._handle`` for SIGINT and SIGTERM on entry and restores the
    previous handlers on exit; ``signum`` is the first signal received (None: none)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Self:
        if _in_main_thread():
            for s in STOP_SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()

    def _handle(self, signum: int, frame: object) -> None:
        raise NotImplementedError

    @property
    def exit_code(self) -> int:
        """128 + the signal number (130 for SIGINT, 143 for SIGTERM), the shell's convention."""
        return 128 + int(self.signum or 0)


class StopRequest(_Handlers):
    """A SIGINT/SIGTERM handler and the ``should_stop`` callable of the training loop: the first
    signal makes it return True (the loop stops after the current iteration); a second SIGINT
    raises :class:`KeyboardInterrupt` at once."""

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signum is not None:
            return  # a repeated SIGTERM (or the parent's forward of a Ctrl-C we already had)
        self.signum = signum
        name = signal.Signals(signum).name
        print(f"\nshf: {name}: stopping after this iteration (Ctrl-C again to abort)", file=sys.stderr)

    def __call__(self) -> bool:
        return self.signum is not None


class ForwardStop(_Handlers):
    """While a parent waits on a child that runs under :class:`StopRequest`: the first SIGINT or
    SIGTERM the parent receives is passed on to the child as SIGTERM (a graceful stop; when the
    signal was a Ctrl-C at a terminal, the child has it already and the forward changes
    nothing), a second SIGINT as SIGINT (the child aborts). The parent itself keeps waiting, so
    the child's checkpoint and summary are written before the parent reports; ``signum`` then
    says which signal arrived first (None: none) and ``aborted`` whether a second Ctrl-C came."""

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.pid = pid
        self.aborted = False

    def _send(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # the child has ended already
            os.kill(self.pid, signum)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is None:
            self.signum = signum
            self._send(signal.SIGTERM)
        elif signum == signal.SIGINT:
            self.aborted = True
            self._send(signal.SIGINT)
