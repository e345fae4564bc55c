"""What can go wrong, and the exit code each script reports it with (as one line on stderr)."""

import re


class UsageError(Exception):
    """Bad input from the user: exit code 2."""


class RunNotFound(UsageError):
    """No run.json where a run was expected."""


class Diverged(Exception):
    """The training loss or weights stopped being finite numbers: exit code 1."""


class WriteError(Exception):
    """A file that could not be written (a full disk, say): exit code 1."""


class Interrupted(Exception):
    """Stopped on SIGINT or SIGTERM at a safe point: exit code 128 + the signal's number."""

    def __init__(self, signum):
        super().__init__(signum)  # the number alone in args: the exception pickles (from a worker process)
        self.signum = signum

    def __str__(self):
        import signal

        return signal.Signals(self.signum).name


def first_line(error, limit=160, type_name=False):
    """An exception's message cut to one short line (Keras's and TensorFlow's can run to pages)."""
    line = next((part for part in str(error).splitlines() if part.strip()), "")
    line = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", line)  # TensorFlow's prefix naming its graph node
    if type_name:
        line = f"{type(error).__name__}: {line}" if line else type(error).__name__
    line = line or type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


class MNISTDataError(Exception):
    """A missing, unreadable or malformed MNIST file: reported as one line, exit code 2. Here, not in mnist.py,
    so that the command line knows it without loading NumPy."""
