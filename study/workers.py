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
from concurrent.futures import ProcessPoolExecutor

from selenet import errors, files, locks, runs
from selenet.manifest import Manifest
from selenet.settings import Settings

TASKS_PER_WORKER = 10  # then a fresh worker process: what TensorFlow keeps between runs is freed with it
RAY_EXCLUDES = ["outputs/", ".git/", "*.npz", "*.h5", "*.keras", "__pycache__/"]  # code only, to the cluster


@dataclasses.dataclass(frozen=True)
class Task:
    name: str  # the run's folder name in the study
    settings: Settings
    run_dir: str  # absolute: workers and Ray tasks may run elsewhere
    data_dir: str | None
    train: bool  # False: the run finished; only its excitation role is measured
    resume: bool  # continue from its checkpoint


_data = {}  # data_dir -> (train, test): loaded once per process


def study_run(task, stop=None):
    """Trains (or resumes) one run unless it finished, then measures its excitation role (SE runs);
    returns (run.json contents, role or None). stop: a signals.StopOnSignal (else this worker's)."""
    import keras

    import senet_lenet
    from selenet.determinism import use_threads
    from selenet.mnist import load_mnist, run_data
    from study import excitation_role

    stop = stop or _worker_stop
    stop.check()  # a study being stopped starts no more runs
    settings = task.settings
    if task.data_dir not in _data:
        _data.clear()
        _data[task.data_dir] = load_mnist(task.data_dir)
    data = run_data(*_data[task.data_dir], settings)
    use_threads(settings.threads)  # before anything runs, training or not
    files.ensure_writable_dir(task.run_dir)
    with locks.folder_lock(task.run_dir, "ablation.py"):
        Manifest(task.run_dir, "run").remove_temporary_files()
        if task.train and not task.resume:
            runs.make_room_for_a_new_run(task.run_dir, False, settings)  # holds no run: earlier_run said so
        if task.train:
            print(f"{'resuming' if task.resume else 'training'} {task.name}", flush=True)
            run = senet_lenet.train_run(settings, *data, task.run_dir, resume=task.resume, stop=stop, verbose=False)
        else:
            run = runs.read_run(task.run_dir)
        role = None
        if settings.se:
            model = senet_lenet.build_model(settings)
            model.load_weights(os.path.join(task.run_dir, runs.WEIGHTS_FILE))
            role = excitation_role.excitation_role(model, settings, *data)
            excitation_role.save_role(task.run_dir, role, run["sha256"][runs.WEIGHTS_FILE])
    keras.backend.clear_session()  # many runs in one process: memory stays flat
    if stop is not None:
        stop.check()
    return run, role


# ---- Worker processes ------------------------------------------------------------------------------------------


class _WorkerStop:
    """A worker's stop: its own SIGINT (Ctrl-C reaches the whole process group), or the study's event, which
    the study sets on any signal it gets. SIGTERM keeps its default: Pool.terminate() ends idle workers with it."""

    def __init__(self, event):
        self.event, self.signum = event, None
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        self.signum = signum

    def check(self):
        if self.signum is not None or self.event.is_set():
            raise errors.Interrupted(self.signum or signal.SIGINT)


_worker_stop = None


def _start_worker(event):
    global _worker_stop
    _worker_stop = _WorkerStop(event)
    # TensorFlow's start-up notices, once per worker, would bury the study's progress lines.
    from selenet import quiet_start

    quiet_start.import_tensorflow()


def run_all(tasks, workers, stop, done, ray_address=None):
    """Runs every task; done(task, run, role) in this process as each ends. workers 1: here, one after another.
    On a signal (stop) every worker stops at its next chunk of steps, its run resumable; errors.Interrupted."""
    if ray_address is not None:
        return _run_on_ray(tasks, ray_address, stop, done)
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            done(task, *study_run(task, stop))
        return
    context = multiprocessing.get_context("spawn")  # not fork: TensorFlow's threads hold locks
    event = context.Event()  # set: every worker stops at its next chunk of steps
    stop.on_signal = event.set
    failure, waiting, running = None, list(reversed(tasks)), {}
    options = dict(mp_context=context, initializer=_start_worker, initargs=(event,))
    with ProcessPoolExecutor(min(workers, len(tasks)), max_tasks_per_child=TASKS_PER_WORKER, **options) as pool:
        try:
            while waiting or running:
                # A few in flight, so that a stop ends them soon; none more after a stop or a failure.
                while waiting and failure is None and stop.signum is None and len(running) < workers:
                    task = waiting.pop()
                    running[pool.submit(study_run, task)] = task
                if not running:
                    break
                finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    task = running.pop(future)
                    try:
                        done(task, *future.result())
                    except Exception as e:  # the task's own error, raised here; the first one is reported
                        if failure is None:
                            failure = e
                            event.set()
        except BaseException:
            event.set()
            pool.shutdown(cancel_futures=True)
            raise
    stop.check()
    if failure is not None:
        raise failure


# ---- Ray -------------------------------------------------------------------------------------------------------


RAY_LOCAL_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # Ray's switch: "0" is a cluster of one on loopback


def start_ray(address):
    """ray.init for the study: `local` starts a cluster of one that listens on 127.0.0.1 only; else joins
    the cluster at address. The project's code goes to every node with the tasks."""
    if address == "local":
        imported = sys.modules.get("ray._private.ray_constants")  # Ray already imported: its switch is read
        if getattr(imported, "ENABLE_RAY_CLUSTER", False):
            raise errors.UsageError(
                f"this process imported Ray before --ray local could keep it on 127.0.0.1 ({RAY_LOCAL_ONLY}=0 "
                "is read at import): run ablation.py in a new process"
            )
        # Ray on Linux replaces 127.0.0.1 with the machine's address and listens on every interface,
        # unless this switch (read when ray is imported) says no other node will join.
        os.environ[RAY_LOCAL_ONLY] = "0"
    try:
        import ray
    except ImportError:
        raise errors.UsageError("--ray needs Ray: pip install -r requirements-ray.txt") from None
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


def _run_on_ray(tasks, address, stop, done):
    ray = start_ray(address)
    try:
        remote = ray.remote(num_cpus=1, max_calls=TASKS_PER_WORKER)(_ray_study_run)
        pending = {remote.remote(task): task for task in tasks}
        while pending:
            finished, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in finished:
                done(pending.pop(ref), *ray.get(ref))
            if stop.signum is not None:
                for ref in pending:
                    ray.cancel(ref)  # a KeyboardInterrupt in the task: the epochs it saved stay
                break
        stop.check()
    finally:
        ray.shutdown()


def _ray_study_run(task):
    return study_run(task, stop=_NeverStop())


class _NeverStop:
    """Ray tasks are stopped by ray.cancel."""

    def check(self):
        pass
