"""The study's runs, one function of (settings, folder), run in this process, in worker processes on every
core, or as one-CPU tasks on a Ray cluster. Each run has its settings' threads, so it has the same bits
wherever it runs, and the same bits as `senet_lenet.py` with those settings.
"""

import concurrent.futures
import dataclasses
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

TASKS_PER_WORKER = 10  # then a fresh worker process: what TensorFlow keeps between runs is freed with it
RAY_EXCLUDES = ["outputs/", ".git/", "*.npz", "*.h5", "*.keras", "__pycache__/"]  # code only, to the cluster


@dataclasses.dataclass(frozen=True)
class Task:
    name: str  # the run's folder name in the study
    settings: dict  # senet_lenet's
    variant: dict  # the study's (variants.VARIANT's keys)
    run_dir: str  # absolute: workers and Ray tasks may run elsewhere
    data_dir: str | None
    train: bool  # False: the run finished; only its excitation role is measured
    resume: bool  # continue from its checkpoint


_data = {}  # data_dir -> (train, test): loaded once per process


def balanced_sample(data, size, seed):
    """`size` records of (images, labels), size // 10 of each digit, drawn with `seed`, in MNIST's order (its own
    random stream, [seed, 0]: the passes' orders use [seed, pass] with passes from 1)."""
    images, labels = data
    rng = np.random.default_rng([seed, 0])
    chosen = [rng.choice(np.flatnonzero(labels == digit), size // 10, replace=False) for digit in range(10)]
    kept = np.sort(np.concatenate(chosen))
    return images[kept], labels[kept]


def run_data(task):
    """The (train, test) data of a task's run: a class-balanced sample, or the first train_samples / test_samples."""
    import senet_lenet

    if task.data_dir not in _data:
        _data.clear()
        _data[task.data_dir] = senet_lenet.load_mnist(task.data_dir)
    (train, test), settings, size = _data[task.data_dir], task.settings, task.variant["train_size"]
    train = (
        balanced_sample(train, size, settings["seed"]) if size else senet_lenet.first(train, settings["train_samples"])
    )
    return train, senet_lenet.first(test, settings["test_samples"])


def study_run(task, check=None):
    """Trains (or resumes) one run unless it finished, then measures its excitation role (SE runs); returns
    (run.json contents, role or None). check(): raises to stop (else this worker's)."""
    import keras

    import senet_lenet
    import visualize
    from study import variants

    check = check or _worker_check
    senet_lenet.tf.get_logger().setLevel("ERROR")  # every run traces its own tf.functions, by design
    check()  # a study being stopped starts no more runs
    settings, variant = task.settings, task.variant
    data = run_data(task)
    senet_lenet.use_threads(settings["threads"])  # before anything runs, training or not
    os.makedirs(task.run_dir, exist_ok=True)
    if task.train:
        print(f"{'resuming' if task.resume else 'training'} {task.name}", flush=True)
        build = lambda: variants.build(settings, variant)  # noqa: E731
        run = senet_lenet.train_run(
            settings,
            data,
            task.run_dir,
            task.resume,
            build,
            variant["epoch_steps"],
            variant,
            check,
            verbose=False,
            log=lambda line: None,
        )
    else:
        run = senet_lenet.read_run(task.run_dir)
    role = None
    if settings["se"]:
        model = variants.build(settings, variant)
        model.load_weights(os.path.join(task.run_dir, "selenet.weights.h5"))
        blocks = variants.POSITIONS[variant["se_position"]]
        role = visualize.excitation_role(model, settings["seed"], data[0][0], data[1], blocks)
        visualize.save_role(task.run_dir, role)
    keras.backend.clear_session()  # many runs in one process: memory stays flat
    check()
    return run, role


# ---- Worker processes ------------------------------------------------------------------------------------------


def stopping(check):
    """Whether check() says stop (a signal was noted) or not."""
    import senet_lenet

    try:
        check()
    except senet_lenet.Stopped:
        return True
    return False


_worker = {}  # in a worker process: the study's stop event and its own SIGINT


def _worker_check():
    import senet_lenet

    if _worker.get("signal") or _worker["event"].is_set():
        raise senet_lenet.Stopped(_worker.get("signal") or signal.SIGINT)


def _start_worker(event, parent):
    """A worker: Ctrl-C (it reaches the whole process group) or the study's event stops it at its next chunk of
    steps; it ends with the study, even when the study is killed (SIGKILL): its parent changes."""
    _worker["event"] = event
    signal.signal(signal.SIGINT, lambda signum, frame: _worker.update(signal=signum))

    def watch():
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def run_all(tasks, workers, check, done, ray_address=None):
    """Runs every task; done(task, run, role) in this process as each ends. workers 1: here, one after another.
    check() raises senet_lenet.Stopped after a signal: then every worker stops at its next chunk of steps, its run
    resumable, and so does this."""
    if ray_address is not None:
        return _run_on_ray(tasks, ray_address, check, done)
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            done(task, *study_run(task, check))
        return
    context = multiprocessing.get_context("spawn")  # not fork: TensorFlow's threads hold locks
    event = context.Event()  # set: every worker stops at its next chunk of steps
    failure, waiting, running = None, list(reversed(tasks)), {}
    options = dict(mp_context=context, initializer=_start_worker, initargs=(event, os.getpid()))
    with ProcessPoolExecutor(min(workers, len(tasks)), max_tasks_per_child=TASKS_PER_WORKER, **options) as pool:
        try:
            while waiting or running:
                if failure is not None or stopping(check):
                    event.set()  # none more after a stop or a failure
                while waiting and not event.is_set() and len(running) < workers:
                    task = waiting.pop()
                    running[pool.submit(study_run, task)] = task
                if not running:
                    break
                finished, _ = concurrent.futures.wait(running, 0.5, concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    task = running.pop(future)
                    try:
                        done(task, *future.result())
                    except Exception as e:  # the task's own error, raised here; the first one is reported
                        failure = failure or e
        except BaseException:
            event.set()
            pool.shutdown(cancel_futures=True)
            raise
    check()
    if failure is not None:
        raise failure


# ---- Ray -------------------------------------------------------------------------------------------------------


RAY_LOCAL_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # Ray's switch: "0" is a cluster of one on loopback


def start_ray(address):
    """ray.init for the study: `local` starts a cluster of one that listens on 127.0.0.1 only; else joins
    the cluster at address. The project's code goes to every node with the tasks."""
    import senet_lenet

    if address == "local":
        imported = sys.modules.get("ray._private.ray_constants")  # Ray already imported: its switch is read
        if getattr(imported, "ENABLE_RAY_CLUSTER", False):
            raise senet_lenet.UsageError(
                f"this process imported Ray before --ray local could keep it on 127.0.0.1 ({RAY_LOCAL_ONLY}=0 "
                "is read at import): run ablation.py in a new process"
            )
        # Ray on Linux replaces 127.0.0.1 with the machine's address and listens on every interface,
        # unless this switch (read when ray is imported) says no other node will join.
        os.environ[RAY_LOCAL_ONLY] = "0"
    try:
        import ray
    except ImportError:
        raise senet_lenet.UsageError("--ray needs Ray: pip install -r requirements-ray.txt") from None
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the project: the scripts and packages
    # No usage report to Ray's servers: the study talks only to the cluster it is given.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        address=None if address == "local" else address,
        runtime_env={"working_dir": root, "excludes": RAY_EXCLUDES},
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
    )
    return ray


def _run_on_ray(tasks, address, check, done):
    ray = start_ray(address)
    try:
        remote = ray.remote(num_cpus=1, max_calls=TASKS_PER_WORKER)(_ray_study_run)
        pending = {remote.remote(task): task for task in tasks}
        while pending:
            finished, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in finished:
                done(pending.pop(ref), *ray.get(ref))
            if stopping(check):
                for ref in pending:
                    ray.cancel(ref)  # a KeyboardInterrupt in the task: the epochs it saved stay
                break
        check()
    finally:
        ray.shutdown()


def _ray_study_run(task):
    return study_run(task, check=lambda: None)  # Ray tasks are stopped by ray.cancel
