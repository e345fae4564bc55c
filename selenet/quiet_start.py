"""Importing TensorFlow without its start-up notices: on x86 it prints, twice, absl's warning that logs come
before InitializeLog and the oneDNN notice, before TF_CPP_MIN_LOG_LEVEL is read. Exactly those lines are
dropped; every other line TensorFlow prints while it loads goes through, as it comes."""

import os
import re
import signal
import sys
import threading

KNOWN_NOTICES = (
    re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"),
    re.compile(r"I\d{4} [\d:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on\. .*"),
)


def is_known_notice(line):
    return any(pattern.fullmatch(line.rstrip("\r\n")) for pattern in KNOWN_NOTICES)


def import_tensorflow(on_ctrl_c=None):
    """Imports TensorFlow with file descriptor 2 read through a pipe that drops KNOWN_NOTICES. on_ctrl_c():
    what Ctrl-C does meanwhile (an import it interrupts can fail as an ImportError instead), with stderr
    the real one again; a Ctrl-C that is ignored (a background job) stays ignored."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    previous = signal.getsignal(signal.SIGINT)

    def ctrl_c(signum, frame):
        os.dup2(saved, 2)
        on_ctrl_c()

    main = threading.current_thread() is threading.main_thread()
    if on_ctrl_c is not None and main and previous is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, ctrl_c)

    def forward():
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:  # bytes: a line of another encoding passes as it is
                if not is_known_notice(line.decode("utf-8", "replace")):
                    os.write(saved, line)

    forwarder = threading.Thread(target=forward, daemon=True)
    forwarder.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        import tensorflow  # noqa: F401
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer closes: the forwarder reads to its end
        forwarder.join(timeout=10)
        os.close(saved)
        if signal.getsignal(signal.SIGINT) is ctrl_c:
            signal.signal(signal.SIGINT, previous)
