"""What a folder owns: manifest.json, the record of every path the project wrote in it.

A path is recorded before it is written, so nothing of ours is ever unrecorded (a recorded path that
is missing is harmless). The project deletes, prunes and replaces only recorded paths: anything else
in a folder it writes is the user's and is never touched. A name the project needs that holds
something unrecorded is refused, before anything is written.

Entries are relative paths; a folder's ends in "/". An entry may carry facts, such as the SHA-256 of
the weights a figure was drawn from ("weights").
"""

import json
import os

from selenet import files
from selenet.errors import UsageError

MANIFEST_FILE = "manifest.json"
WRITTEN_BY = "SE-LeNet"


class Manifest:
    """The record of one folder. kind ("run" or "study"): what the folder must hold, if it holds a record."""

    def __init__(self, folder, kind=None):
        self.folder = str(folder)
        self.path = os.path.join(self.folder, MANIFEST_FILE)
        self.kind, self.entries = self._read()
        if kind is not None and self.kind not in (None, kind):
            raise UsageError(f"{self.folder} holds a {self.kind} of this project, not a {kind}; choose another folder")
        self.kind = self.kind or kind

    def _read(self):
        try:
            with open(self.path, "rb") as f:
                record = json.loads(f.read().decode("utf-8"))
        except FileNotFoundError:
            return None, {}
        except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise UsageError(f"{self.path} is not a record of this project's files ({type(e).__name__})") from None
        entries = record.get("paths") if isinstance(record, dict) and record.get("written_by") == WRITTEN_BY else None
        if not isinstance(entries, dict) or not all(isinstance(v, dict) and valid(k) for k, v in entries.items()):
            raise UsageError(f"{self.path} is not a record of this project's files")
        return record.get("kind"), entries

    def owns(self, name):
        return name in self.entries

    def owned(self, folder=""):
        """The recorded entries directly in `folder` ("" or "checkpoints/"), as names relative to the folder."""
        inside = [n[len(folder) :] for n in self.entries if n.startswith(folder) and n != folder]
        return sorted(n for n in inside if "/" not in n.rstrip("/"))

    def check_free(self, *names):
        """UsageError naming the first of `names` that holds something this folder's record does not list."""
        for name in names:
            for part in (*parents(name), name):
                path = os.path.join(self.folder, part)
                # ours only if recorded, and as the kind recorded (a file where we wrote a folder is not ours)
                if os.path.lexists(path) and (not self.owns(part) or os.path.isdir(path) != part.endswith("/")):
                    raise UsageError(
                        f"{path.rstrip('/')} was not written by this project (no record of it in {self.path}); "
                        "it is left alone: move it away, or choose another output folder"
                    )

    def claim(self, *names, **facts):
        """Records `names` (and their folders) as ours before they are written (the writer makes the folders)."""
        self.check_free(*names)
        self.record(*names, **facts)

    def record(self, *names, **facts):
        """Records `names` without the check: for files this process has just created under names a library
        chose (TensorFlow's event files)."""
        for name in names:
            for part in parents(name):
                self.entries.setdefault(part, {})
            self.entries[name] = dict(facts)
        self.save()

    def join(self, name):
        """The path of `name` in the folder."""
        return os.path.join(self.folder, name)

    def write_text(self, name, text, **facts):
        """Records `name` (with facts), then writes `text` to it whole."""
        self.claim(name, **facts)
        files.write_text(self.join(name), text)

    def write_file(self, name, write, **facts):
        """Records `name`, then write(path) into a scratch file that replaces it whole; returns its SHA-256."""
        self.claim(name, **facts)
        return files.write_via_scratch(self.join(name), write)

    def save_figure(self, name, figure, **facts):
        """Records `name`, then saves a matplotlib figure to it whole."""
        self.claim(name, **facts)
        files.save_figure(figure, self.join(name))

    def move_in(self, source, name):
        """Records `name`, then moves the file `source` (on the same filesystem) there."""
        self.claim(name)
        os.replace(source, self.join(name))

    def make_folder(self, name):
        """Records the folder `name` ("logs/train/") and makes it; returns its path."""
        self.claim(name)
        path = self.join(name)
        os.makedirs(path, exist_ok=True)
        return path

    def release(self, *names):
        """Removes recorded `names` from disk and from the record: files first, then folders left empty
        (a folder still holding a file of the user's stays, and stays recorded). Returns the names removed."""
        names, removed = [n for n in names if self.owns(n)], []
        for name in sorted(names, key=lambda n: (n.endswith("/"), -n.count("/"))):
            path = os.path.join(self.folder, name)
            try:
                if name.endswith("/"):
                    if os.path.isdir(path) and not os.path.islink(path):
                        files.remove_temporary_files(path)
                        os.rmdir(path)
                elif os.path.lexists(path):
                    os.remove(path)
            except OSError:
                continue  # a folder that holds the user's files
            del self.entries[name]
            removed.append(name)
        self.save()
        return removed

    def release_all(self, keep=lambda name, facts: False):
        """Removes everything recorded but what keep(name, facts) keeps; returns the names removed."""
        return self.release(*(n for n, facts in self.entries.items() if not keep(n, facts)))

    def remove_temporary_files(self):
        """Temporary files of killed writers, in this folder and the folders it records."""
        for name in ["", *(n for n in self.entries if n.endswith("/"))]:
            files.remove_temporary_files(os.path.join(self.folder, name))

    def save(self):
        if not self.entries and not os.path.exists(self.path):
            return
        os.makedirs(self.folder, exist_ok=True)
        record = {"written_by": WRITTEN_BY, "kind": self.kind, "paths": dict(sorted(self.entries.items()))}
        files.write_text(self.path, json.dumps(record, indent=1) + "\n")


def parents(name):
    """The folder entries above a name: "a/b/c" -> ["a/", "a/b/"]."""
    parts = name.rstrip("/").split("/")[:-1]
    return ["/".join(parts[: i + 1]) + "/" for i in range(len(parts))]


def valid(name):
    """A relative path inside the folder, the same on every OS: "/" between parts; no absolute path, no "..", no
    empty part, and no backslash or drive (C:), which Windows reads as a separator or a root (..\\x, C:\\x)."""
    parts = name.rstrip("/").split("/")
    return (
        bool(name)
        and not name.startswith("/")
        and "\\" not in name
        and ":" not in name
        and all(p not in ("", ".", "..") for p in parts)
    )
