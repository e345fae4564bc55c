"""One writer per folder: a lock on OUT/.selenet.lock (filelock: flock on POSIX, LockFileEx on Windows), which
the operating system releases with the process, even on SIGKILL. A POSIX Python without fcntl (the tests take it
away to stand in for what Windows lacks) gets filelock's soft lock: a marker file, removed on release."""

import contextlib
import errno
import os
import warnings

with warnings.catch_warnings():  # without fcntl filelock warns at import that only its soft lock is there
    warnings.simplefilter("ignore", UserWarning)
    import filelock

from selenet.errors import UsageError

LOCK_FILE = ".selenet.lock"  # holds the name and pid of the process that writes the folder
NO_LOCKS = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


def _has_fcntl():
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return False
    return True


NATIVE = os.name == "nt" or _has_fcntl()


@contextlib.contextmanager
def folder_lock(path, prog):
    """Holds an exclusive lock on a run (or study) folder for the `with` block; UsageError naming
    the process that holds it, or saying that the folder's filesystem cannot lock."""
    lock_path = os.path.join(path, LOCK_FILE)

    def name_the_holder(descriptor):
        os.ftruncate(descriptor, 0)
        os.lseek(descriptor, 0, os.SEEK_SET)
        os.write(descriptor, f"{prog} (pid {os.getpid()})".encode())

    if NATIVE:
        lock = filelock.FileLock(lock_path, timeout=0, preserve_lock_file=True, on_acquired=name_the_holder)
    else:
        lock_path += ".soft"  # not the native lock's file, which stays after a release
        lock = filelock.SoftFileLock(lock_path, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        in_use = f"{path} is in use by {holder(lock_path) if NATIVE else 'another process'}"
        raise UsageError(f"{in_use}; wait for it to end, or use another folder") from None
    except OSError as e:
        if e.errno in NO_LOCKS:
            raise UsageError(
                f"cannot lock {path}: its filesystem does not support file locks ({e.strerror}); "
                "use a folder on a local disk"
            ) from None
        raise UsageError(f"cannot write to output directory {path}: {e.strerror}") from e
    try:
        yield
    finally:
        lock.release()


def holder(lock_path):
    """Who holds the lock, as the holder wrote it; "another process" where it cannot be read (Windows locks
    the bytes too)."""
    try:
        with open(lock_path, encoding="utf-8", errors="replace") as f:
            return f.read(200).strip() or "another process"
    except OSError:
        return "another process"
