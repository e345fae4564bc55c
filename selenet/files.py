"""Writing files so that each is whole or absent: a temporary name, then a rename over the target.

Temporary names start with TEMPORARY_PREFIX, then the writer's pid and a random part: no user picks
such a name, so clean-up may remove them (and only them) in the folders the project writes.
"""

import contextlib
import csv
import errno
import io
import os
import re
import secrets
import shutil
import tempfile
import time

from selenet.errors import UsageError, WriteError

TEMPORARY_PREFIX = ".selenet-tmp-"
TEMPORARY_NAME = re.compile(rf"^{re.escape(TEMPORARY_PREFIX)}\d+-[0-9a-f]{{8}}")
MEMORY_DIR = "/dev/shm"  # where libraries that write their own files (h5py) write first
SCRATCH_BYTES = 16 * 2**20  # free space a model file needs while Keras writes it (ours are under 1 MB)


def temporary_name(name=""):
    """.selenet-tmp-PID-RANDOM, then .NAME if given (keeping NAME's extensions, which Keras and Matplotlib read)."""
    return f"{TEMPORARY_PREFIX}{os.getpid()}-{secrets.token_hex(4)}" + (f".{name}" if name else "")


def is_temporary(name):
    return bool(TEMPORARY_NAME.match(name))


def remove_temporary_files(directory):
    """Removes what a killed writer left half-written directly in `directory` (call it holding the lock)."""
    for name in os.listdir(directory) if os.path.isdir(directory) else ():
        if is_temporary(name):
            path = os.path.join(directory, name)
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)


def write_failure(path, error):
    """The WriteError for `error` raised while writing `path`."""
    text = str(error)
    if getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in text:
        reason = "no space left on device"
    else:
        reason = getattr(error, "strerror", None) or next((line for line in text.splitlines() if line), "")
    return WriteError(f"cannot write {path}: {reason}; the files written before it are whole")


REPLACE_RETRIES = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)  # seconds: Windows refuses while another program has it open


def replace(temporary, path):
    """os.replace, retried for a few seconds when another program holds `path` open (Windows: Excel, an
    antivirus scan); then PermissionError, which names the file in one line (write_failure)."""
    for delay in REPLACE_RETRIES:
        try:
            return os.replace(temporary, path)
        except PermissionError:
            time.sleep(delay)
    return os.replace(temporary, path)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary name beside `path`, renamed over `path` only if the block succeeds."""
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, temporary_name(name))
    try:
        yield temporary
        replace(temporary, path)
    except OSError as e:
        raise write_failure(path, e) from e
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def scratch_folder(path):
    """Where a library may write `path` first: the memory folder, else `path`'s own folder, whichever
    has SCRATCH_BYTES free; WriteError if neither has (h5py on a full disk can crash the process)."""
    for folder in (MEMORY_DIR, os.path.dirname(path) or "."):
        with contextlib.suppress(OSError):
            if os.access(folder, os.W_OK) and shutil.disk_usage(folder).free >= SCRATCH_BYTES:
                return folder
    raise WriteError(f"cannot write {path}: no space left on device (less than {SCRATCH_BYTES >> 20} MB free)")


def write_via_scratch(path, write):
    """write(scratch_path) in a scratch folder, then its bytes to `path` atomically; returns their SHA-256."""
    try:
        scratch = tempfile.mkdtemp(prefix=temporary_name() + "-", dir=scratch_folder(path))
    except OSError as e:
        raise write_failure(path, e) from e
    try:
        scratch_path = os.path.join(scratch, os.path.basename(path))
        write(scratch_path)
        digest = sha256_of(scratch_path)
        with atomic_path(path) as temporary:
            shutil.copyfile(scratch_path, temporary)
        return digest
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def sha256_of(path):
    """The file's SHA-256 as hex; None if it cannot be read."""
    import hashlib

    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def write_text(path, text):
    """Writes text as UTF-8 with "\\n" line ends on every OS (Windows would write CRLF)."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)


def save_figure(figure, path):
    """Writes a Matplotlib figure as a PNG."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, format="png")


def ensure_writable_dir(path):
    """Creates `path` if needed and proves a file can be written there (else UsageError)."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix=temporary_name() + "-", dir=path):
            pass
    except OSError as e:
        raise UsageError(f"cannot write to output directory {path}: {e.strerror}") from e


def csv_text(rows, fields):
    """Rows (dicts) as CSV text with a header line."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
