"""Stopping on SIGINT or SIGTERM between chunks of training steps, never in the middle of a file."""

import signal
import threading

from selenet.errors import Interrupted


class StopOnSignal:
    """While active, SIGINT and SIGTERM only set `signum`; the training loop stops
    at the next chunk of steps, never in the middle of writing a file."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum = None
        self.on_signal = None  # called on a signal, in a thread of its own (so it may take locks)
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self  # only the main thread may set handlers (main() from a notebook's thread): Ctrl-C as usual
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame):
        self.signum = signum
        if self.on_signal is not None:  # a lock the interrupted code holds would deadlock here, not in a thread
            threading.Thread(target=self.on_signal, daemon=True).start()

    def check(self):
        if self.signum is not None:
            raise Interrupted(self.signum)
