"""tune.py's shared study on a real PostgreSQL server through the driver requirements-tune.txt pins: two processes, one
SIGKILLed mid-trial and started again, make one study in which the killed trial is failed and run again."""
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

optuna = pytest.importorskip("optuna", reason="tune.py needs requirements-tune.txt")
psycopg = pytest.importorskip("psycopg", reason="a postgresql:// study needs psycopg (requirements-tune.txt)")

import tune  # noqa: E402
from conftest import write_npy  # noqa: E402
from support import study_storage  # noqa: E402
from test_tune import ROOT, tune_flags  # noqa: E402

from optuna.trial import TrialState  # noqa: E402

# A dead trial is failed once its heartbeat is GRACE seconds old; tune.py's 10 s / 30 s (no flag sets them) would
# make this test minutes long. GRACE stays several heartbeats long so that a live trial on a busy machine is not
# taken for dead.
HEARTBEAT, GRACE = 1, 5
TUNE = (f"from support import startup, study_storage; startup.setup(); "
        f"study_storage.HEARTBEAT_SECONDS, study_storage.GRACE_SECONDS = {HEARTBEAT}, {GRACE}; import tune; tune.main()")
# B leaves once the study holds B_TRIALS finished trials, so A, started again when its killed trial's heartbeat is
# stale, still has trials to start: a process fails a dead trial only as it starts one of its own.
TRIALS, B_TRIALS, EPOCHS = 5, 3, 3
DEADLINE = 600  # seconds for the whole study, however busy the machine
PASSWORD, ENCODED = "se@cret", "se%40cret"  # an "@" in the password, written %40 in the URL


def server_binary(name):
    """PATH first, then Debian's versioned folders, where its `postgresql` package puts initdb and pg_ctl."""
    debian = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda path: float(path.split("/")[4]))
    return shutil.which(name) or (debian[-1] if debian else None)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def postgres_url():
    """A throwaway cluster on 127.0.0.1 with a password and a `study` database, stopped and removed afterwards.
    initdb refuses to run as root, so as root the server runs as the `postgres` user, in a folder it owns: not under
    tmp_path, which only root may enter (and whose length would overflow the socket's path)."""
    initdb, pg_ctl = server_binary("initdb"), server_binary("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed (Debian: apt-get install postgresql)")
    as_user = []
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run initdb and pg_ctl as")
        if not shutil.which("runuser"):
            pytest.skip("running as root and there is no runuser to run initdb and pg_ctl as `postgres`")
        as_user = ["runuser", "-u", "postgres", "--"]
    folder = tempfile.mkdtemp(prefix="tune-postgres-")
    data = os.path.join(folder, "data")
    try:
        password = os.path.join(folder, "password")
        with open(password, "w") as file:
            file.write(f"{PASSWORD}\n")
        if as_user:
            for path in (folder, password):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        made = subprocess.run([*as_user, initdb, "-D", data, "-U", "tune", f"--pwfile={password}",
                               "--auth=scram-sha-256", "--no-sync", "--encoding=UTF8", "--locale=C"],
                              capture_output=True, text=True)
        if made.returncode:
            pytest.skip(f"initdb failed: {(made.stderr or made.stdout).strip()[-500:]}")
        port = free_port()
        options = f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        started = subprocess.run([*as_user, pg_ctl, "-D", data, "-l", os.path.join(folder, "server.log"), "-o",
                                  options, "-w", "-t", "120", "start"], capture_output=True, text=True)
        if started.returncode:
            log = os.path.join(folder, "server.log")
            said = open(log).read() if os.path.isfile(log) else started.stderr
            pytest.skip(f"the PostgreSQL server did not start: {said.strip()[-500:]}")
        with psycopg.connect(f"postgresql://tune:{ENCODED}@127.0.0.1:{port}/postgres", autocommit=True) as connection:
            connection.execute("CREATE DATABASE study")
        yield f"postgresql://tune:{ENCODED}@127.0.0.1:{port}/study"
    finally:
        if os.path.isfile(os.path.join(data, "postmaster.pid")):
            subprocess.run([*as_user, pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def start_tune(tmp_path):
    """tune.py as a process of its own with the short heartbeat, its output in NAME.log for a failure's message;
    one still running at the end (an assertion failed) is killed, before the server stops."""
    started = []

    def start(name, flags):
        with open(tmp_path / f"{name}.log", "w") as log:
            started.append(subprocess.Popen([sys.executable, "-c", TUNE, *flags], cwd=ROOT, stdout=log,
                                            stderr=subprocess.STDOUT))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def log_tail(folder, name):
    return (folder / f"{name}.log").read_text()[-3000:]


def holds_password(text):
    return PASSWORD in text or ENCODED in text


def process_of(trial, save_to):
    return trial.user_attrs.get("run_folder", "").startswith(save_to + os.sep)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # retried_trial_number
def test_a_process_killed_mid_trial_on_postgresql_has_its_trial_failed_and_run_again(postgres_url, start_tune,
                                                                                     tmp_path):
    drawings = write_npy(str(tmp_path / "npy"), {"apple": 40, "bicycle": 40, "cat": 40})
    machine_a, machine_b = str(tmp_path / "machine_a"), str(tmp_path / "machine_b")
    flags_a, flags_b = (tune_flags(drawings, str(tmp_path), save_to, trials, EPOCHS) + ["--storage", postgres_url]
                        for save_to, trials in ((machine_a, TRIALS), (machine_b, B_TRIALS)))
    a, b = start_tune("a", flags_a), start_tune("b", flags_b)
    deadline = time.time() + DEADLINE

    # Both processes have opened the study (made its tables) once their tune.json is written: reading it sooner
    # would race them to create the tables.
    while not all(os.path.isfile(os.path.join(save_to, tune.MARKER)) for save_to in (machine_a, machine_b)):
        assert time.time() < deadline and a.poll() is None, log_tail(tmp_path, "a")
        time.sleep(0.2)
    study = optuna.load_study(study_name=study_storage.STUDY_NAME, storage=postgres_url)
    while True:  # kill A once a trial has finished and one of A's is running
        assert time.time() < deadline and a.poll() is None, log_tail(tmp_path, "a")
        trials = study.get_trials()
        running = [t for t in trials if t.state == TrialState.RUNNING and process_of(t, machine_a)]
        if running and any(t.state in tune.FINISHED for t in trials):
            break
        time.sleep(0.1)
    a.send_signal(signal.SIGKILL)
    a.wait()
    killed_at = time.time()
    killed = study.get_trials()[running[0].number]
    assert killed.state == TrialState.RUNNING, "the trial finished before the kill landed"

    time.sleep(max(0.0, killed_at + GRACE + 0.5 - time.time()))  # the killed trial's heartbeat is stale from here on
    a_again = start_tune("a_again", flags_a)  # the same command, as after a crash
    for name, process in (("a_again", a_again), ("b", b)):
        assert process.wait(timeout=max(1.0, deadline - time.time())) == 0, log_tail(tmp_path, name)

    trials = study.get_trials()
    finished = [t for t in trials if t.state in tune.FINISHED]
    # One over when B's last trial was still running as the restarted A filled the study.
    assert TRIALS <= len(finished) <= TRIALS + 1
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [killed.number]
    assert all(t.state in (*tune.FINISHED, TrialState.FAIL) for t in trials)
    retries = [t for t in finished
               if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed.number]
    assert len(retries) == 1 and retries[0].params == killed.params
    run_folders = [t.user_attrs["run_folder"] for t in finished]
    assert len(set(run_folders)) == len(run_folders)  # each trial trained in one process only
    assert all(os.path.isfile(os.path.join(folder, "config.json")) for folder in run_folders)

    for save_to in (machine_a, machine_b):  # the tune folders hold the storage, but not its password
        with open(os.path.join(save_to, tune.MARKER)) as file:
            assert json.load(file)["storage"] == postgres_url.replace(f":{ENCODED}@", ":***@")
        for folder, _, names in os.walk(save_to):
            for name in names:
                with open(os.path.join(folder, name), "rb") as file:
                    assert not holds_password(file.read().decode("latin-1")), name
    for name in ("a", "a_again", "b"):  # nor what the processes printed
        assert not holds_password((tmp_path / f"{name}.log").read_text()), name

    # The process that finished the last trial summed up a study with nothing left to finish.
    last = max(finished, key=lambda t: t.datetime_complete)
    with open(os.path.join(os.path.dirname(last.user_attrs["run_folder"]), "best.json")) as file:
        best = json.load(file)
    assert best["trial"] == study.best_trial.number and best["val_accuracy"] == study.best_value
    assert best["params"] == study.best_trial.params
