"""tune.py on tiny drawings: trial folders and the summary, pruning, a killed study continued, two processes on one
storage, deploy of the best trial, and bad input refused before anything is written."""
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest

optuna = pytest.importorskip("optuna", reason="tune.py needs requirements-tune.txt")

import deploy  # noqa: E402
import tune  # noqa: E402
from support import study_storage  # noqa: E402
from conftest import exit_code, run_cli, write_npy  # noqa: E402
from support import verbose  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEARNING_RATE = {"learning_rate": {"type": "float", "low": 1e-9, "high": 1e-2, "log": True}}


@pytest.fixture(scope="module")
def drawings(tmp_path_factory):
    return write_npy(str(tmp_path_factory.mktemp("tune") / "npy"), {"apple": 40, "bicycle": 40, "cat": 40})


def space_file(folder, space=None):
    path = os.path.join(folder, "space.json")
    with open(path, "w") as file:
        json.dump(LEARNING_RATE if space is None else space, file)
    return path


def tune_flags(drawings, folder, save_to, trials, epochs=2):
    return ["--save_to", save_to, "--trials", str(trials), "--space", space_file(folder), "--data", drawings,
            "--model", "logistic", "--num_epochs", str(epochs), "--batch_size", "16"]


def states(study):
    return [trial.state.name for trial in study.get_trials()]


@pytest.fixture(scope="module")
def study_folder(drawings, tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("study"))
    save_to = os.path.join(folder, "tune")
    assert exit_code(tune.main, tune_flags(drawings, folder, save_to, trials=3)) == 0
    return save_to


def test_a_three_trial_study_writes_three_run_folders_best_json_and_the_pictures(study_folder, capsys):
    names = sorted(os.listdir(study_folder))
    assert [name for name in names if name.startswith("trial_")] == ["trial_000", "trial_001", "trial_002"]
    for trial in ("trial_000", "trial_001", "trial_002"):
        assert os.path.isfile(os.path.join(study_folder, trial, "config.json"))
        assert os.path.isfile(os.path.join(study_folder, trial, "best.keras"))
    best = json.load(open(os.path.join(study_folder, "best.json")))
    study = optuna.load_study(study_name=study_storage.STUDY_NAME, storage=f"sqlite:///{study_folder}/study.db")
    assert best["trial"] == study.best_trial.number and best["val_accuracy"] == study.best_value
    assert os.path.realpath(os.path.join(study_folder, "best")) == os.path.realpath(best["run_folder"])
    assert best["settings"]["learning_rate"] == pytest.approx(best["params"]["learning_rate"])
    for picture in ("optimization_history.png", "param_importances.png"):
        assert os.path.getsize(os.path.join(study_folder, picture)) > 1000


def test_a_warning_while_drawing_is_one_line_of_tune_py(tmp_path, monkeypatch, capsys):
    """On a study made here with fixed values, and an importance plot that warns on purpose without computing any
    importances: whether Optuna warns about a trained study's values ("importances will be equal") depends on how
    its trials happened to train."""
    import matplotlib.pyplot as plt

    def importances_with_a_warning(study):
        warnings.warn("Parameter importances will be equal.", UserWarning)
        return plt.plot([trial.value for trial in study.trials])

    monkeypatch.setattr(optuna.visualization.matplotlib, "plot_param_importances", importances_with_a_warning)
    study = optuna.create_study(direction="maximize")
    for step in range(4):
        study.add_trial(optuna.trial.create_trial(params={"learning_rate": 0.001 * (step + 1)}, value=0.2 * step,
                                                  distributions={"learning_rate": optuna.distributions.FloatDistribution(
                                                      0.0001, 0.01)}))
    for _ in range(2):  # the second time too: a warning already shown from the same place is a line again
        assert tune.save_pictures(study, str(tmp_path)) == ["optimization_history.png", "param_importances.png"]
        assert capsys.readouterr().out.splitlines() == ["param_importances.png: Parameter importances will be equal."]
    assert os.path.getsize(tmp_path / "param_importances.png") > 1000


def test_deploy_accepts_the_best_trial_folder(study_folder, tmp_path):
    out = str(tmp_path / "deploy")
    best = os.path.join(study_folder, "best")
    assert exit_code(deploy.main, ["--read_from", best, "--save_to", out, "--calibration_samples", "20"]) == 0
    assert os.path.isfile(os.path.join(out, "model.tflite"))


def test_a_trial_that_does_badly_is_pruned(drawings, tmp_path):
    """Two finished trials at 0.99 every epoch; a learning rate of 1e-9 stays near chance and is stopped."""
    space = tune.check_space(tune.read_space(space_file(str(tmp_path))), "space.json", "logistic")
    study = study_storage.opened(f"sqlite:///{tmp_path}/study.db")
    distribution = optuna.distributions.FloatDistribution(1e-9, 1e-2, log=True)
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(
            value=0.99, params={"learning_rate": 1e-3}, distributions={"learning_rate": distribution},
            intermediate_values={epoch: 0.99 for epoch in range(6)}))
    study.enqueue_trial({"learning_rate": 1e-9})
    flags = ["--data", drawings, "--model", "logistic", "--num_epochs", "6", "--batch_size", "16"]
    study.optimize(tune.make_objective(str(tmp_path), space, flags, {}), n_trials=1)
    trial = study.trials[-1]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["epochs"] < 6  # stopped early, with its run folder kept
    assert os.path.isfile(os.path.join(tmp_path, "trial_002", "config.json"))


def start_tune(flags):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "tune.py"), *flags], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_killed_study_continues_with_its_finished_trial_kept(drawings, tmp_path, monkeypatch):
    save_to = str(tmp_path / "tune")
    flags = tune_flags(drawings, str(tmp_path), save_to, trials=4, epochs=3)
    process = start_tune(flags)
    storage_url = f"sqlite:///{save_to}/study.db"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name=study_storage.STUDY_NAME, storage=storage_url)
        except Exception:  # the study is not created yet
            continue
        if "COMPLETE" in states(study):
            break
    process.send_signal(signal.SIGKILL)
    process.wait()
    kept = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert kept, "the first trial did not finish before the deadline"
    first = kept[0]

    monkeypatch.setattr(study_storage, "GRACE_SECONDS", 1)  # the killed trial is failed before the last of three starts
    study = tune.main(flags)
    trials = study.get_trials()
    assert trials[first.number].state.name == "COMPLETE" and trials[first.number].value == first.value
    assert states(study).count("COMPLETE") + states(study).count("PRUNED") == 4
    assert all(state in ("COMPLETE", "PRUNED", "FAIL") for state in states(study))


def test_a_trial_whose_process_died_before_its_first_heartbeat_is_failed_and_tried_again(drawings, tmp_path,
                                                                                          monkeypatch):
    """Optuna creates a trial, then starts its heartbeat: a process killed between the two leaves a running trial
    with no heartbeat, which Optuna alone never fails."""
    save_to = str(tmp_path / "tune")
    assert exit_code(tune.main, tune_flags(drawings, str(tmp_path), save_to, trials=1, epochs=3)) == 0
    with warnings.catch_warnings():  # Optuna may say that ask() does not beat: that is the point here
        warnings.simplefilter("ignore", UserWarning)
        orphan = study_storage.opened(f"sqlite:///{save_to}/study.db").ask()  # created, never beating: a dead process
    monkeypatch.setattr(study_storage, "GRACE_SECONDS", 1)  # stale once its heartbeat is two seconds old (SQLite's clock
    # counts whole seconds), before the third of the three trials that follow starts
    study = tune.main(tune_flags(drawings, str(tmp_path), save_to, trials=4, epochs=3))
    assert states(study)[orphan.number] == "FAIL"
    assert states(study).count("COMPLETE") + states(study).count("PRUNED") == 4
    assert "RUNNING" not in states(study) and "WAITING" not in states(study)


def test_two_processes_on_one_storage_make_one_study_of_distinct_trials(drawings, tmp_path):
    url = f"sqlite:///{tmp_path}/shared.db"
    folders = [str(tmp_path / "machine_a"), str(tmp_path / "machine_b")]
    processes = [start_tune(tune_flags(drawings, str(tmp_path), folder, trials=4) + ["--storage", url])
                 for folder in folders]
    assert [process.wait(timeout=600) for process in processes] == [0, 0]
    study = optuna.load_study(study_name=study_storage.STUDY_NAME, storage=url)
    numbers = [trial.number for trial in study.get_trials() if trial.state.name in ("COMPLETE", "PRUNED")]
    assert len(numbers) >= 4 and len(set(numbers)) == len(numbers)
    written = [name for folder in folders for name in os.listdir(folder) if name.startswith("trial_")]
    assert len(written) == len(set(written)) >= 4  # each trial ran in one process only


def test_a_bug_in_a_trial_ends_the_study_with_its_traceback_and_is_not_tried_again(drawings, tmp_path, monkeypatch):
    def broken_run(*args, **kwargs):
        raise ZeroDivisionError("a bug in the training code")

    monkeypatch.setattr(tune.train, "run", broken_run)
    save_to = str(tmp_path / "tune")
    with pytest.raises(ZeroDivisionError, match="a bug in the training code"):
        tune.main(tune_flags(drawings, str(tmp_path), save_to, trials=3))
    study = optuna.load_study(study_name=study_storage.STUDY_NAME, storage=f"sqlite:///{save_to}/study.db")
    assert states(study) == ["FAIL"]  # neither retried nor followed by another trial


@pytest.mark.parametrize("url, words, retries", [
    ("sqlite:///{tmp}/no/such/folder/study.db", "unable to open database file", 2),  # the database's own error
    ("not a url", "Could not parse", 0),
    ("mysql://user@localhost/study", "Failed to import DB access module", 0),
])
def test_only_storage_failures_that_a_retry_can_mend_are_tried_again(tmp_path, monkeypatch, url, words, retries):
    pauses = []
    monkeypatch.setattr(study_storage.time, "sleep", pauses.append)
    with pytest.raises(tune.UserError, match=words):
        study_storage.opened(url.format(tmp=tmp_path))
    assert len(pauses) == retries


def test_a_bug_while_opening_the_study_is_not_tried_again(tmp_path, monkeypatch):
    def broken_storage(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(tune.optuna.storages, "RDBStorage", broken_storage)
    monkeypatch.setattr(study_storage.time, "sleep", lambda seconds: pytest.fail("retried a bug"))
    with pytest.raises(KeyError):
        study_storage.opened(f"sqlite:///{tmp_path}/study.db")


@pytest.mark.parametrize("flags, words", [
    (["--distribute", "data_parallel"], "runs on the JAX backend"),
    (["--num_processes", "2", "--coordinator_address", "localhost:1"], "--coordinator_address, --num_processes "
                                                                        "cannot be honoured"),
    (["--process_id", "0"], "--process_id cannot be honoured"),
])
def test_distribute_flags_tune_cannot_honour_are_one_error_line(drawings, tmp_path, capsys, flags, words):
    if "--distribute" in flags and tune.keras.backend.backend() == "jax":
        pytest.skip("data_parallel runs on the JAX backend")
    save_to = str(tmp_path / "tune")
    code, _, err = run_cli(tune.main, tune_flags(drawings, str(tmp_path), save_to, trials=1) + flags, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and words in err, err
    assert not os.path.exists(save_to)


def test_every_trial_trains_data_parallel_when_asked(drawings, tmp_path):
    """On the JAX backend with two (virtual) CPU devices, as a machine with two accelerators would have."""
    pytest.importorskip("jax")
    save_to = str(tmp_path / "tune")
    env = dict(os.environ, KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    flags = [*tune_flags(drawings, str(tmp_path), save_to, trials=2, epochs=1), "--distribute", "data_parallel",
             "--batch_size", "8"]
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tune.py"), *flags], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("the model is replicated on 2 device(s) of 1 process(es)") == 2
    for trial in ("trial_000", "trial_001"):
        assert json.load(open(os.path.join(save_to, trial, "config.json")))["distribute"] == "data_parallel"


@pytest.mark.parametrize("space, words", [
    ({"learnin_rate": {"type": "float", "low": 0.1, "high": 1}}, "unknown parameter 'learnin_rate'"),
    ({"learning_rate": {"type": "float", "low": 0.1, "high": 0.01}}, "empty or inverted"),
    ({"model_kwargs.width": {"type": "int", "low": 1, "high": 4}}, "searchable: "),
    ({"batch_size": {"type": "categorical", "choices": []}}, "non-empty \"choices\""),
    ({"batch_size": {"kind": "int"}}, "give a \"type\""),
    ("not json {", "cannot read the search space"),
])
def test_a_bad_space_is_one_error_line_and_writes_nothing(drawings, tmp_path, capsys, space, words):
    path = str(tmp_path / "space.json")
    with open(path, "w") as file:
        file.write(space if isinstance(space, str) else json.dumps(space))
    save_to = str(tmp_path / "tune")
    code, _, err = run_cli(tune.main, ["--save_to", save_to, "--space", path, "--data", drawings,
                                       "--model", "logistic"], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and words in err, err
    assert not os.path.exists(save_to)


@pytest.mark.parametrize("case", ["storage", "server", "not_a_tune_folder", "train_flag", "managed_flag"])
def test_bad_input_is_one_error_line_and_writes_nothing(drawings, tmp_path, capsys, case):
    save_to = str(tmp_path / "tune")
    flags = ["--save_to", save_to, "--space", space_file(str(tmp_path)), "--data", drawings, "--model", "logistic"]
    words = {"storage": "cannot open the study storage", "not_a_tune_folder": "is not a tune folder",
             "server": "cannot open the study storage postgresql://tune:***@127.0.0.1:1/study",
             "train_flag": "--batch_size", "managed_flag": "remove --resume"}[case]
    if case == "storage":
        flags += ["--storage", f"sqlite:///{tmp_path}/no/such/folder/study.db"]
    elif case == "server":  # nothing listens on port 1; the password stays out of the message
        flags += ["--storage", "postgresql://tune:secret@127.0.0.1:1/study"]
    elif case == "not_a_tune_folder":
        os.makedirs(save_to)
        open(os.path.join(save_to, "notes.txt"), "w").close()
    elif case == "train_flag":
        flags += ["--batch_size", "zero"]
    else:
        flags += ["--resume"]
    before = sorted(os.listdir(tmp_path))
    code, _, err = run_cli(tune.main, flags, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and words in err, err
    assert "secret" not in err and sorted(os.listdir(tmp_path)) == before
    if case == "not_a_tune_folder":
        assert os.listdir(save_to) == ["notes.txt"]


def test_without_data_a_study_runs_on_the_sample_that_train_py_writes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the sample goes to data/doodles under the working folder, as for train.py
    study = tune.main(["--save_to", "tune", "--trials", "1", "--model", "logistic", "--num_epochs", "1"])
    assert os.path.isdir(tmp_path / "data" / "doodles") and states(study) == ["COMPLETE"]
    best = json.load(open(tmp_path / "tune" / "best.json"))
    assert len(best["settings"]["class_names"]) == 10  # the doodle sample's classes
    assert set(best["params"]) == set(tune.model_space("logistic")) == {"learning_rate", "batch_size", "jitter"}


# --- the storage's password --------------------------------------------------------------------------------------

SECRETS = ("pa55{w}rd", "pa55%7Bw%7Drd", "us3r@pass", "us3r%40pass", "t0ken")  # as given and as encoded


def shows_no_secret(text):
    return not any(secret in text for secret in SECRETS)


@pytest.mark.parametrize("url, shown", [
    ("postgresql://bob:us3r%40pass@db:5432/study", "postgresql://bob:***@db:5432/study"),
    ("postgresql://bob:us3r@pass@db/study", "postgresql://bob:***@db/study"),  # a bare "@" too
    ("postgresql://bob@db/study?sslmode=require&password=pa55{w}rd&sslpassword=t0ken",
     "postgresql://bob@db/study?sslmode=require&password=***&sslpassword=***"),
    ("mysql+pymysql://bob:x@db/s?passwd=a&pwd=b&token=c&client_secret=d&api_key=e&charset=utf8mb4",
     "mysql+pymysql://bob:***@db/s?passwd=***&pwd=***&token=***&client_secret=***&api_key=***&charset=utf8mb4"),
    ("sqlite:////tmp/a@b/study.db", "sqlite:////tmp/a@b/study.db"),  # no user info: nothing to hide
    ("t0ken is no URL", "<unparseable storage URL>"),
])
def test_a_storage_url_prints_with_every_secret_masked(url, shown):
    assert tune.secret_url.printable(url) == shown


@pytest.mark.parametrize("url, words", [
    ("postgresql://tune:us3r%40pass@127.0.0.1:1/study?password=pa55{w}rd",  # nothing listens on port 1
     "cannot open the study storage postgresql://tune:***@127.0.0.1:1/study?password=***: "),
    ("postgresql://tune:us3r@pass@127.0.0.1:1/study", "postgresql://tune:***@127.0.0.1:1/study: its password holds "
                                                      "an '@'"),
    ("sqlite://bob:us3r%40pass@//tmp/study.db?password=t0ken", "Invalid SQLite URL: sqlite://bob:***@//tmp/study.db"
                                                               "?password=***"),  # SQLAlchemy's message, masked
    ("t0ken:not a URL", "cannot open the study storage <unparseable storage URL>: "),
    ("env:TUNE_NOT_SET", "--storage env:TUNE_NOT_SET: the environment variable TUNE_NOT_SET is not set"),
], ids=["server", "bare @", "library message", "unparseable", "unset variable"])
def test_a_storage_that_cannot_be_opened_is_one_line_without_its_password(drawings, tmp_path, capsys, monkeypatch,
                                                                          url, words):
    save_to = str(tmp_path / "tune")
    flags = tune_flags(drawings, str(tmp_path), save_to, trials=1) + ["--storage", url]
    monkeypatch.delenv("TUNE_NOT_SET", raising=False)
    monkeypatch.setattr(study_storage.time, "sleep", lambda seconds: None)  # the server's retries
    code, out, err = run_cli(tune.main, flags, capsys)
    assert code == 2 and err.count("\n") == 1 and words in err, err
    monkeypatch.setattr(verbose, "ON", True)
    code, verbose_out, verbose_err = run_cli(tune.main, flags, capsys)  # the library failure behind it, printed
    assert code == 2 and verbose_err.endswith(err)
    assert shows_no_secret(out + err + verbose_out + verbose_err) and not os.path.exists(save_to)


def command_line_once_started(pid):
    """A child's /proc/PID/cmdline (what `ps` shows) once it runs tune.py: before its exec it is the parent's."""
    deadline = time.time() + 60
    while time.time() < deadline:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            line = file.read().replace(b"\0", b" ").decode()
        if "tune.py" in line:
            return line
        time.sleep(0.05)
    raise AssertionError(f"process {pid} did not start tune.py: {line}")


def test_the_storage_password_is_in_no_output_file_or_worker_command_line(drawings, tmp_path, capfd, monkeypatch):
    """A SQLite URL with a password query parameter (SQLite URIs pass it on and ignore it); braces in it too, which
    Optuna's str.format() of the URL would take for a template. The worker's output is on the same descriptors."""
    url = f"sqlite:///file:{tmp_path}/shared.db?uri=true&password=pa55{{w}}rd"
    save_to = str(tmp_path / "tune")
    workers, start_workers = [], tune.start_workers

    def watched(*args):
        started = start_workers(*args)
        workers.extend((worker, command_line_once_started(worker.pid)) for worker in started)
        return started

    monkeypatch.setattr(tune, "start_workers", watched)
    study = tune.main(tune_flags(drawings, str(tmp_path), save_to, trials=2, epochs=1)
                      + ["--storage", url, "--workers", "2"])
    assert len(workers) == 1 and workers[0][0].returncode == 0 and "--storage env:TUNE_STORAGE" in workers[0][1]
    assert states(study).count("COMPLETE") + states(study).count("PRUNED") >= 2
    captured = capfd.readouterr()
    assert "trial 0 " in captured.out and shows_no_secret(captured.out + captured.err + workers[0][1])
    assert json.load(open(os.path.join(save_to, tune.MARKER)))["storage"].endswith("?uri=true&password=***")
    for folder, _, names in os.walk(save_to):
        for name in names:
            with open(os.path.join(folder, name), "rb") as file:
                assert shows_no_secret(file.read().decode("latin-1")), name


def test_the_storage_url_can_come_from_an_environment_variable_and_a_new_password_continues(drawings, tmp_path,
                                                                                           capsys, monkeypatch):
    save_to = str(tmp_path / "tune")
    database = f"sqlite:///file:{tmp_path}/shared.db?uri=true&password="
    for trials, password in ((1, "t0ken"), (2, "pa55{w}rd")):  # the same database, its password changed
        monkeypatch.setenv("TUNE_STORAGE", database + password)
        flags = tune_flags(drawings, str(tmp_path), save_to, trials=trials, epochs=1)
        code, out, err = run_cli(tune.main, flags + ["--storage", "env:TUNE_STORAGE"], capsys)
        assert code == 0 and shows_no_secret(out + err), err
    study = optuna.load_study(study_name=study_storage.STUDY_NAME, storage=database + "x")
    assert states(study) == ["COMPLETE", "COMPLETE"]
    assert json.load(open(os.path.join(save_to, tune.MARKER)))["storage"] == database + "***"
