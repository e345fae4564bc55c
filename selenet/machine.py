"""What a run's bits depend on besides its settings: the versions and the machine that ran it.

run.json records them; visualize.py and --compare print a note when two runs' differ."""

import contextlib
import os
import platform
import subprocess
import sys


def record():
    """run.json's "versions" and "machine" entries for this process (TensorFlow is loaded already)."""
    import keras
    import numpy as np
    import tensorflow as tf

    return {
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
        },
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count()},
    }


def available_cores():
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_model():
    """The processor's model name: /proc/cpuinfo on Linux, sysctl on macOS (platform says only "arm" for every
    Apple chip), else what platform says (Windows: family, model and stepping)."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    if sys.platform == "darwin":
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            brand = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True)
            if brand.returncode == 0 and brand.stdout.strip():
                return brand.stdout.strip()  # "Apple M2", "Intel(R) Core(TM) i7-..."
    return platform.processor() or "unknown"


def environment(run=None):
    """What the bits of a run depend on besides its settings: threads, TensorFlow, Keras, NumPy (the data
    order), CPU model. Of a run.json (a key it lacks: "unrecorded"), or of this process (run None: threads
    not set)."""
    if run is None:
        import keras
        import numpy as np
        import tensorflow as tf

        return {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__, "cpu": cpu_model()}
    versions = run.get("versions", {})
    return {
        "threads": run["settings"].threads,
        **{name: versions.get(name, "unrecorded") for name in ("tensorflow", "keras", "numpy")},
        "cpu": run.get("machine", {}).get("cpu", "unrecorded"),
    }


def environment_note(name_a, a, name_b, b):
    """One line naming how two environments differ (bits are promised only for equal ones), or None."""
    differences = [f"{key} ({a[key]} vs {b[key]})" for key in a if key in b and a[key] != b[key]]
    if not differences:
        return None
    return (
        f"note: {name_a} and {name_b} differ in {', '.join(differences)}: "
        "the same bits are promised only for the same threads, versions and CPU"
    )
