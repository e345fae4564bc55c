"""Same command, same bits on any number of cores: threads are a setting; the study's worker processes
give the same table and the same runs as one process and as senet_lenet.py."""

import csv
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import types

import pytest

import ablation
import senet_lenet
import visualize
from helpers import ROOT, TRAINED_SYNTHETIC, assert_one_line_error, default_sigint, run_script
from selenet import machine, quiet_start, runs
from selenet.settings import Settings


def weights_sha(run_dir):
    return runs.read_run(run_dir)["sha256"][runs.WEIGHTS_FILE]


def train_in_a_new_process(out_dir, data_dir, *extra, cores=None):
    """senet_lenet.py in a fresh interpreter, on the given cores only (taskset) or on all."""
    command = ["taskset", "-c", cores] if cores else []
    command += [sys.executable, os.path.join(ROOT, "senet_lenet.py"), "--data-dir", data_dir, "--out-dir", out_dir]
    done = subprocess.run([*command, *map(str, extra)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(machine.available_cores() < 2, reason="needs two cores to differ from one")
@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs Linux's taskset to run on one core")
def test_one_core_and_every_core_give_the_same_bits(trained_synthetic_run, tmp_path, synthetic_mnist_dir):
    """Epoch 1 in a fresh interpreter on one core (taskset), epoch 2 resumed here on every core: the same
    weights as the run trained here on every core, never stopped."""
    moved = tmp_path / "moved"
    train_in_a_new_process(moved, synthetic_mnist_dir, *TRAINED_SYNTHETIC, "--epochs", "1", cores="0")
    run = runs.read_run(moved)
    assert run["settings"].threads == 1 and run["machine"]["cpu"] == machine.cpu_model()
    assert run["versions"]["tensorflow"] == senet_lenet.tf.__version__

    resume = ["--out-dir", str(moved), "--resume", "--epochs", "2", "--data-dir", synthetic_mnist_dir]
    assert senet_lenet.main(resume) == 0
    assert runs.read_run(moved)["settings"] == runs.read_run(trained_synthetic_run)["settings"]
    assert weights_sha(moved) == weights_sha(trained_synthetic_run)


def test_threads_are_recorded_resumed_and_compared(trained_synthetic_run, tmp_path, synthetic_mnist_dir, capsys):
    two = tmp_path / "two"
    train_in_a_new_process(two, synthetic_mnist_dir, *TRAINED_SYNTHETIC, "--threads", "2", "--epochs", "1")
    assert runs.read_run(two)["settings"].threads == 2
    one = shutil.copytree(trained_synthetic_run, tmp_path / "one")  # a copy: visualize leaves its lock file there
    args = ["--compare", str(one), str(two), "--data-dir", synthetic_mnist_dir]
    assert visualize.main(args) == 0
    out = capsys.readouterr().out
    assert "differ in threads (1 vs 2)" in out and "same bits are promised only for the same threads" in out

    # --resume takes the recorded threads: in this process (1 thread already) it is one clear line
    resume = ["--out-dir", str(two), "--resume", "--epochs", "2", "--data-dir", synthetic_mnist_dir]
    assert senet_lenet.main(resume) == 2
    assert_one_line_error(
        capsys.readouterr().err, "with 1 intra-op and 1 inter-op threads", "the run's bits need 2 and 1: run the script"
    )
    done = run_script("senet_lenet.py", *resume)
    assert done.returncode == 0, done.stderr
    assert runs.read_run(two)["settings"].threads == 2


def test_an_old_run_json_reads_with_tensorflows_own_threads():
    old = Settings().as_dict()
    del old["threads"]
    assert Settings.from_dict(old).threads == 0


@pytest.mark.parametrize("value", ["-1", "2000", "two"])
def test_bad_threads_are_one_line(value, capsys):
    try:
        code = senet_lenet.main(["--threads", value, "--epochs", "1"])
    except SystemExit as e:  # argparse: not a whole number
        code = e.code
    assert code == 2
    assert_one_line_error(capsys.readouterr().err, "threads")


STUDY = ["--seeds", "2", "--epochs", "1", "--train-samples", "500", "--test-samples", "200", "--reductions", "4"]
STUDY += ["--optimizers", "adam", "--squeezes", "avg", "max", "--gates", "sigmoid", "--positions", "conv2"]
STUDY += ["--excitations", "dense", "--se-biases", "off"]


def rows_but_seconds(study):
    with open(study / "ablation.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds_per_epoch"} for row in csv.DictReader(f)]


@pytest.mark.e2e  # whole studies in worker processes: minutes
def test_workers_give_the_same_study_and_the_same_runs_as_senet_lenet(tmp_path, synthetic_mnist_dir):
    data = ["--data-dir", synthetic_mnist_dir]
    assert ablation.main([*STUDY, *data, "--workers", "1", "--out-dir", str(tmp_path / "serial")]) == 0
    done = run_script("ablation.py", *STUDY, *data, "--workers", "2", "--out-dir", tmp_path / "parallel")
    assert done.returncode == 0, done.stderr
    assert "in 2 process(es)" in done.stdout and "Traceback" not in done.stderr
    # A spawned worker runs ablation.py again as __mp_main__, TensorFlow's import with it: no notice from that.
    assert not [line for line in done.stderr.splitlines() if quiet_start.is_known_notice(line)], done.stderr
    assert rows_but_seconds(tmp_path / "serial") == rows_but_seconds(tmp_path / "parallel")
    for name in ("se-r4_adam_seed1", "se-r4-max_adam_seed0", "no-se_adam_seed1"):
        assert weights_sha(tmp_path / "serial" / name) == weights_sha(tmp_path / "parallel" / name)

    settings = runs.read_run(tmp_path / "parallel" / "se-r4-max_adam_seed0")["settings"]
    flags = ["--epochs", "1", "--train-samples", "500", "--test-samples", "200", "--squeeze", "max", "--seed", "0"]
    assert senet_lenet.main([*flags, *data, "--out-dir", str(tmp_path / "alone")]) == 0
    assert runs.read_run(tmp_path / "alone")["settings"] == settings
    assert weights_sha(tmp_path / "alone") == weights_sha(tmp_path / "parallel" / "se-r4-max_adam_seed0")


@pytest.mark.e2e  # whole studies in worker processes: minutes
def test_ctrl_c_stops_every_worker_and_the_study_resumes(tmp_path, synthetic_mnist_dir):
    args = [*STUDY, "--epochs", "3", "--train-samples", "3000"]
    args += ["--data-dir", synthetic_mnist_dir, "--out-dir", str(tmp_path)]
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "ablation.py"), *args, "--workers", "2"],
        cwd=ROOT,
        preexec_fn=default_sigint,
        start_new_session=True,  # its own process group, as a terminal gives: Ctrl-C reaches every worker
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not any(runs.checkpoint_epochs(tmp_path / name) for name in ("se-r4_adam_seed0", "se-r4_adam_seed1")):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr
    assert_one_line_error(stderr, "ablation.py: stopped by SIGINT", "run the same command again to continue")
    assert not os.path.exists(tmp_path / "ablation.csv")
    resumable = [
        n for n in os.listdir(tmp_path) if os.path.isdir(tmp_path / n) and runs.checkpoint_epochs(tmp_path / n)
    ]
    assert resumable

    assert ablation.main([*args, "--workers", "1"]) == 0  # continues where it stopped
    rows = rows_but_seconds(tmp_path)
    assert len(rows) == 6 and all(float(row["final_test_accuracy"]) > 0 for row in rows)


@pytest.mark.e2e  # whole studies in worker processes: minutes
@pytest.mark.xdist_group("ray")  # one Ray test at a time: `ray stop` ends every cluster on the machine
def test_a_study_on_ray_equals_the_serial_one(tmp_path, synthetic_mnist_dir):
    data = ["--data-dir", synthetic_mnist_dir]
    small = [*STUDY, "--seeds", "1", "--squeezes", "avg"]
    assert ablation.main([*small, *data, "--workers", "1", "--out-dir", str(tmp_path / "serial")]) == 0
    done = run_script("ablation.py", *small, *data, "--ray", "local", "--out-dir", tmp_path / "ray", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "to do on Ray (local)" in done.stdout
    assert rows_but_seconds(tmp_path / "serial") == rows_but_seconds(tmp_path / "ray")
    assert weights_sha(tmp_path / "serial" / "se-r4_adam_seed0") == weights_sha(tmp_path / "ray" / "se-r4_adam_seed0")


def descendants(pid):
    """The processes pid started, and theirs (Linux: /proc)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue  # ended meanwhile
        if parent == pid:
            found += [int(entry), *descendants(int(entry))]
    return found


def socket_inodes(pids):
    """The inodes of the processes' sockets (Linux: /proc/PID/fd)."""
    found = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    found.add(target[len("socket:[") : -1])
        except OSError:
            continue
    return found


def listening_addresses(tables, inodes=None):
    """The addresses TCP sockets listen on, from /proc/net/tcp and tcp6 ({"tcp": text, "tcp6": text}); only
    the sockets with these inodes if given."""
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for row in tables[table].splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and (inodes is None or fields[9] in inodes):  # 0A: LISTEN; [9]: the inode
                raw = bytes.fromhex(fields[1].split(":")[0])  # 32-bit words in the host's byte order
                words = struct.unpack(f"<{len(raw) // 4}I", raw)
                found.add(socket.inet_ntop(family, struct.pack(f">{len(words)}I", *words)))
    return found


def tcp_tables(enter=()):
    """/proc/net/tcp and tcp6 as this process sees them, or as a command run with `enter` (nsenter) does."""
    tables = {}
    for name in ("tcp", "tcp6"):
        read = subprocess.run([*enter, "cat", f"/proc/net/{name}"], capture_output=True, text=True, check=True)
        tables[name] = read.stdout
    return tables


LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1"}


RAY_LOCAL = """
import sys
from study import workers
ray = workers.start_ray("local")
print(ray.util.get_node_ip_address(), flush=True)
sys.stdin.readline()
ray.shutdown()
"""


@pytest.mark.e2e  # starts Ray: half a minute
@pytest.mark.xdist_group("ray")
@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads listening sockets from Linux's /proc")
def test_ray_local_listens_on_loopback_only():
    """--ray local: every Ray process listens on 127.0.0.1, none on the machine's network."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    child = subprocess.Popen(
        [sys.executable, "-c", RAY_LOCAL], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        node_ip = child.stdout.readline().strip()
        addresses = listening_addresses(tcp_tables(), socket_inodes([child.pid, *descendants(child.pid)]))
    finally:
        child.communicate("stop\n", timeout=300)
    assert node_ip == "127.0.0.1"
    assert addresses and addresses <= LOOPBACK, addresses


def test_ray_imported_before_ray_local_is_one_line(monkeypatch):
    """Ray imported first (a notebook's kernel) has read its switch already: --ray local refuses in one line
    rather than listen on every interface."""
    from selenet.errors import UsageError
    from study import workers

    monkeypatch.setitem(sys.modules, "ray._private.ray_constants", types.SimpleNamespace(ENABLE_RAY_CLUSTER=True))
    with pytest.raises(UsageError, match="imported Ray before --ray local could keep it on 127.0.0.1"):
        workers.start_ray("local")


def test_a_workers_interruption_reaches_the_study_whole():
    import pickle

    from selenet import errors

    again = pickle.loads(pickle.dumps(errors.Interrupted(signal.SIGTERM)))  # how a worker's error arrives
    assert again.signum == signal.SIGTERM and str(again) == "SIGTERM"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def loopback_only():
    """A network namespace with loopback alone (Linux: unshare, nsenter and ip, as root): yields the nsenter
    prefix that runs a command in it. Ray nodes there take 127.0.0.1 as their address, as they cannot beside
    the machine's network (Ray replaces 127.0.0.1 with the machine's address, and listens on every interface)."""
    if not all(shutil.which(tool) for tool in ("unshare", "nsenter", "ip")):
        pytest.skip("keeps Ray on loopback in a network namespace: needs Linux's unshare, nsenter and ip")
    holder = subprocess.Popen(["unshare", "--net", "sleep", "3600"], stderr=subprocess.PIPE, text=True)
    ours = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + 30
    while holder.poll() is None and os.readlink(f"/proc/{holder.pid}/ns/net") == ours:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    if holder.poll() is not None:
        pytest.skip(f"cannot make a network namespace here: {holder.stderr.read().strip()}")
    enter = ["nsenter", f"--target={holder.pid}", "--net"]
    try:
        subprocess.run([*enter, "ip", "link", "set", "lo", "up"], check=True, capture_output=True)
        yield enter
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.e2e
@pytest.mark.xdist_group("ray")
def test_a_two_node_cluster_with_token_authentication_as_documented(tmp_path, synthetic_mnist_dir, loopback_only):
    """docs/study.md's commands: a head and a second node on 127.0.0.1, both with RAY_AUTH_MODE=token and the
    same RAY_AUTH_TOKEN, and the study run on them: the table of --workers 1; every Ray socket on loopback."""
    port = free_port()  # here, but free in the new namespace too: it has no sockets of its own
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    head = ["ray", "start", "--head", f"--port={port}", "--num-cpus=1", "--node-ip-address=127.0.0.1"]
    head.append("--include-dashboard=false")  # not needed to run tasks: seconds and ports saved
    node = ["ray", "start", f"--address=127.0.0.1:{port}", "--num-cpus=1", "--node-ip-address=127.0.0.1"]
    try:
        for command in (head, node):
            started = subprocess.run([*loopback_only, *command], env=env, capture_output=True, text=True, timeout=300)
            assert started.returncode == 0, started.stderr[-3000:]
            assert "Local node IP: 127.0.0.1" in started.stdout + started.stderr
        data = ["--data-dir", synthetic_mnist_dir]
        small = [*STUDY, "--seeds", "1", "--squeezes", "avg"]
        assert ablation.main([*small, *data, "--workers", "1", "--out-dir", str(tmp_path / "serial")]) == 0
        args = [*small, *data, "--ray", f"127.0.0.1:{port}", "--out-dir", str(tmp_path / "cluster")]
        driver = [*loopback_only, sys.executable, os.path.join(ROOT, "ablation.py"), *args]
        done = subprocess.run(driver, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        assert rows_but_seconds(tmp_path / "serial") == rows_but_seconds(tmp_path / "cluster")
        addresses = listening_addresses(tcp_tables(loopback_only))
        assert addresses and addresses <= LOOPBACK, addresses  # the nodes' own addresses are 127.0.0.1
    finally:
        subprocess.run([*loopback_only, "ray", "stop", "--force"], env=env, capture_output=True, timeout=300)


def test_the_environment_names_numpy():
    """Bug c: the data order comes from NumPy's generator, so a run's bits depend on its version."""
    from selenet import machine
    from selenet.settings import Settings

    def run(numpy):
        return {"settings": Settings(), "versions": {"tensorflow": "2.21.0", "keras": "3.15.1", "numpy": numpy}}

    a, b = machine.environment(run("2.4.6")), machine.environment(run("2.3.0"))
    assert a["numpy"] == "2.4.6" and "numpy" in machine.environment()
    assert "numpy (2.4.6 vs 2.3.0)" in machine.environment_note("A", a, "B", b)
