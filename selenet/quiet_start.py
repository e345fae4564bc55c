"""Importing TensorFlow without its start-up notices: on x86 it prints, twice, absl's warning that logs come
before InitializeLog and the oneDNN notice, before TF_CPP_MIN_LOG_LEVEL is read. Exactly those lines are
dropped; every other line TensorFlow prints while it loads goes through, as it comes."""

import os
import re
import sys
import threading

KNOWN_NOTICES = (
    re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"),
    re.compile(r"I\d{4} [\d:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on\. .*"),
)


def is_known_notice(line):
    return any(pattern.fullmatch(line.rstrip("\r\n")) for pattern in KNOWN_NOTICES)


def import_tensorflow():
    """Imports TensorFlow with file descriptor 2 read through a pipe that drops KNOWN_NOTICES."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()

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
