"""One writer per folder: an flock on OUT/.selenet.lock, which the kernel releases with the process."""

import contextlib
import os

from selenet.errors import UsageError

LOCK_FILE = ".selenet.lock"  # holds the name and pid of the process that writes the folder


@contextlib.contextmanager
def folder_lock(path, prog):
    """Holds an exclusive lock on a run (or study) folder for the `with` block; UsageError naming
    the process that holds it. The kernel drops the lock with the process, even on SIGKILL."""
    import fcntl

    try:
        descriptor = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise UsageError(f"cannot write to output directory {path}: {e.strerror}") from e
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 200, 0).decode(errors="replace").strip() or "another process"
            raise UsageError(f"{path} is in use by {holder}; wait for it to end, or use another folder") from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{prog} (pid {os.getpid()})".encode(), 0)
        yield
    finally:
        os.close(descriptor)
