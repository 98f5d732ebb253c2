"""Graceful stops: the handler a training process runs under, and the parent's forwarding of a
signal to the child it waits on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from shf.experiments.stop import ForwardStop, StopRequest

# A child that writes the name of every SIGINT/SIGTERM it receives, one per line, and exits on
# the second; "ready" once its handlers are installed.
RECORDER = """
import signal, sys, time
seen = []
def h(signum, frame):
    seen.append(signal.Signals(signum).name)
    print(seen[-1], flush=True)
    if len(seen) == 2:
        sys.exit(0)
signal.signal(signal.SIGINT, h)
signal.signal(signal.SIGTERM, h)
print("ready", flush=True)
while True:
    time.sleep(0.01)
"""


def test_the_first_signal_asks_to_stop_and_a_second_ctrl_c_aborts(capsys):
    # what the process had before (SIG_IGN for SIGINT when started in the background by nohup)
    before = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    with StopRequest() as stop:
        assert not stop()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handler runs between bytecodes of this thread
        assert stop() and stop.exit_code == 128 + signal.SIGTERM
        os.kill(os.getpid(), signal.SIGTERM)  # a repeated SIGTERM changes nothing
        time.sleep(0.05)
        assert stop.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
    assert "SIGTERM: stopping after this iteration" in capsys.readouterr().err
    # The handlers are restored on exit.
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_the_parent_forwards_a_stop_as_sigterm_and_a_second_ctrl_c_as_sigint():
    before = signal.getsignal(signal.SIGINT)
    child = subprocess.Popen([sys.executable, "-c", RECORDER], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        with ForwardStop(child.pid) as fwd:
            os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C reaches the parent: no KeyboardInterrupt
            time.sleep(0.05)
            assert fwd.signum == signal.SIGINT and not fwd.aborted
            assert child.stdout.readline().strip() == "SIGTERM"  # forwarded as a graceful stop
            os.kill(os.getpid(), signal.SIGTERM)  # not a Ctrl-C: not forwarded
            time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C: the child aborts
            time.sleep(0.05)
            assert fwd.aborted
            assert child.stdout.readline().strip() == "SIGINT"
        assert child.wait(timeout=30) == 0
        assert signal.getsignal(signal.SIGINT) == before
    finally:
        child.kill()


def test_off_the_main_thread_the_handlers_are_not_installed():
    """signal.signal works in the main thread only; elsewhere both classes are inert, not errors."""
    seen: list[object] = []

    def body() -> None:
        with StopRequest() as stop, ForwardStop(os.getpid()) as fwd:
            seen.extend([stop(), fwd.signum])

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == [False, None]
