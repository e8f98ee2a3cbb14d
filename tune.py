"""Hyper-parameter search over train.py's settings with Optuna; every trial is an ordinary train.py run.

    python tune.py --data DATA --save_to progress/tune --trials 30 [--timeout S] [--space FILE] [train.py flags]

The search space is data: by default the range each searchable setting declares (config.SETTINGS: `space`), with
what the model's SPEC declares (models/<name>.py) added or replacing those, or a JSON file given as --space FILE.
Each entry names a searchable train.py setting (`learning_rate`, `batch_size`, `jitter`) or a model argument
(`model_kwargs.dropout`) with its type and range; seed, train_ratio (which would move the validation set the
search is scored on), workers, cache_mb and keep_checkpoints are never searched. Trial N trains into SAVE_TO/trial_NNN
through train.run, the code path of the command line, so deploy.py, evaluate.py and --resume accept every trial
folder. Every epoch's val_accuracy goes to Optuna, whose median pruner stops a trial that trails the earlier ones
at the same epoch.

The study lives in SAVE_TO/study.db (SQLite, nothing to install or start): the same command again continues it.
A trial whose process died (killed, crashed) stops sending heartbeats, is marked failed and is tried again.
--storage URL (PostgreSQL, MySQL: any Optuna RDB URL) shares one study among processes on many machines;
--storage env:NAME reads the URL from the environment variable NAME, out of the shell's history and `ps`. Its
password appears nowhere: every line, error and tune.json show the URL masked (support/secret_url.py), and the
--workers processes get it through their environment.
"""
from support import startup

if __name__ == "__main__":
    startup.setup()  # first: before anything imports TensorFlow (support/startup.py)

# The imports below load TensorFlow (through Keras), so they come after the start-up call.
import argparse
import inspect
import json
import os
import subprocess
import sys
import warnings

from support import requirements

requirements.require(["optuna"], "requirements-tune.txt", "tune.py")
import keras
import optuna
from optuna.trial import TrialState

import callbacks
import config
import train
from datagen import open_run_data
from support import distribute, doodles, folders, secret_url, storage, study_storage
from support.errors import ArgumentParser, UserError, first_line, positive_float, positive_int, reports_user_errors

MARKER = "tune.json"  # what makes a folder a tune folder: the study's storage (masked) and fixed train.py flags
STORAGE_VARIABLE = "TUNE_STORAGE"  # the environment variable the --workers processes get the storage URL in
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # a failed trial does not count: it is tried again
# Flags tune.py sets for each trial itself.
MANAGED_FLAGS = ("--save_to", "--resume", "--overwrite")
TYPES = ("float", "int", "categorical")


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0] + " Every other flag goes to train.py unchanged.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--save_to", required=True, help="tune folder: study.db, trial_NNN/ run folders, best.json")
    p.add_argument("--trials", type=positive_int, default=20, help="trials in the study, all processes together "
                                                                   "(default: %(default)s)")
    p.add_argument("--timeout", type=positive_float, help="stop starting trials after this many seconds")
    p.add_argument("--space", help="search space JSON (default: the training settings plus the model's own entries, "
                                   "as its SPEC in models/<name>.py declares; tune.json records the space used)")
    p.add_argument("--storage", help="Optuna RDB URL shared by several tune.py processes, e.g. "
                                     "postgresql://user:pass@host/db, or env:NAME to read it from the environment "
                                     "variable NAME (e.g. env:TUNE_STORAGE); printed and recorded with its password "
                                     "masked (default: sqlite in --save_to)")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="trials at once on this machine, each in its own process (default: %(default)s)")
    p.add_argument("--summary", action=argparse.BooleanOptionalAction, default=True,
                   help="end with the table, best.json and the pictures (the extra --workers processes do not)")
    args, train_flags = p.parse_known_args(argv)
    managed = [flag for flag in train_flags if flag.split("=")[0] in MANAGED_FLAGS]
    if managed:
        p.error(f"tune.py sets {', '.join(MANAGED_FLAGS)} for each trial; remove {', '.join(managed)}")
    args.train_flags = train_flags
    return args


def train_args(flags):
    """train.py's reading of `flags` (a bad flag is its one-line error and exit 2); the last --save_to wins."""
    return train.parse_args(["--save_to", "unused", *flags])


# --- the search space ------------------------------------------------------------------------------------------

def searchable(model):
    """Names a space may use: the settings that declare a space, and model_kwargs.<named argument of the model's
    construct()>."""
    settings = list(config.SEARCHABLE)
    parameters = list(inspect.signature(config.MODELS[model].construct).parameters.values())[2:]  # after the shapes
    return settings + [f"model_kwargs.{p.name}" for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD]


def model_space(model):
    """The default search: each searchable setting's declared space, with the model's entries added or replacing
    them."""
    return {**{name: config.NAMED[name].space for name in config.SEARCHABLE}, **config.MODELS[model].space}


def read_space(path):
    try:
        return json.loads(storage.read_text(path))
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read the search space {path}: {error}") from error


def check_space(space, where, model):
    """Every entry checked: a bad one is a UserError naming `where` (the file, or the model's SPEC) and it."""
    if not isinstance(space, dict) or not space:
        raise UserError(f"{where}: a search space is a non-empty JSON object of name: {{\"type\": ...}}")
    valid = searchable(model)
    for name, spec in space.items():
        if name in config.NEVER_SEARCHED:
            raise UserError(f"{where}: {name} is never searched: a trial's score must not depend on it (train_ratio "
                            f"would move the validation set it is scored on); searchable: {', '.join(valid)}")
        if name not in valid:
            raise UserError(f"{where}: unknown parameter '{name}' for {model}; searchable: {', '.join(valid)}")
        check_spec(f"{where}: {name}", spec)
    return space


def check_spec(where, spec):
    if not isinstance(spec, dict) or spec.get("type") not in TYPES:
        raise UserError(f"{where}: give a \"type\" of {', '.join(TYPES)}, got {json.dumps(spec)}")
    if spec["type"] == "categorical":
        if not isinstance(spec.get("choices"), list) or not spec["choices"]:
            raise UserError(f"{where}: a categorical parameter needs a non-empty \"choices\" list")
        return
    low, high = spec.get("low"), spec.get("high")
    number = int if spec["type"] == "int" else (int, float)
    if not all(isinstance(bound, number) and not isinstance(bound, bool) for bound in (low, high)):
        raise UserError(f"{where}: give \"low\" and \"high\" as {spec['type']} numbers, got {low} and {high}")
    if not low < high:
        raise UserError(f"{where}: the range is empty or inverted (low {low}, high {high}); low must be below high")
    if spec.get("log") and low <= 0:
        raise UserError(f"{where}: a log-scale range must be above 0, got low {low}")


def extremes(spec):
    return spec["choices"] if spec["type"] == "categorical" else [spec["low"], spec["high"]]


def suggest(trial, name, spec):
    if spec["type"] == "float":
        return trial.suggest_float(name, spec["low"], spec["high"], log=bool(spec.get("log")))
    if spec["type"] == "int":
        return trial.suggest_int(name, spec["low"], spec["high"], log=bool(spec.get("log")))
    choices = spec["choices"]
    if all(choice is None or isinstance(choice, (bool, int, float, str)) for choice in choices):
        return trial.suggest_categorical(name, choices)
    return json.loads(trial.suggest_categorical(name, [json.dumps(choice) for choice in choices]))  # lists


def as_flags(params, fixed_kwargs):
    """train.py flags for a trial's parameters; appended after the fixed flags, so they win (argparse: last)."""
    flags, model_kwargs = [], dict(fixed_kwargs)
    for name, value in params.items():
        if name.startswith("model_kwargs."):
            model_kwargs[name.split(".", 1)[1]] = value
        elif config.NAMED[name].type is None:  # a bool
            flags.append(f"--{name}" if value else f"--no-{name}")
        else:
            flags += [f"--{name}", ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return flags + (["--model_kwargs", json.dumps(model_kwargs)] if model_kwargs else [])


def check_against_train(space, fixed_flags, fixed_kwargs):
    """Every end of every range must be a value train.py accepts, before anything is written."""
    for name, spec in space.items():
        for value in extremes(spec):
            train.settings_from(train_args(fixed_flags + as_flags({name: value}, fixed_kwargs)))


# --- trials ------------------------------------------------------------------------------------------------------

class ReportToOptuna(keras.callbacks.Callback):
    """Each epoch's val_accuracy to the trial; stops training when the pruner says the trial is hopeless."""

    def __init__(self, trial):
        super().__init__()
        self.trial, self.pruned_at = trial, None

    def on_epoch_end(self, epoch, logs=None):
        self.trial.report(float(logs["val_accuracy"]), epoch)
        if self.trial.should_prune():
            self.pruned_at = epoch + 1
            self.model.stop_training = True


def trial_folder(save_to, number):
    return os.path.join(save_to, f"trial_{number:03d}")


def make_objective(save_to, space, fixed_flags, fixed_kwargs):
    """One trial: a train.py run on the suggested settings; its value is the run's best val_accuracy."""

    def objective(trial):
        params = {name: suggest(trial, name, spec) for name, spec in space.items()}
        run_dir = trial_folder(save_to, trial.number)
        trial.set_user_attr("run_folder", run_dir)
        reporter = ReportToOptuna(trial)
        keras.backend.clear_session()  # fresh layer names and memory for each run in this process
        flags = [*fixed_flags, *as_flags(params, fixed_kwargs), "--save_to", run_dir]
        train.run(train.settings_from(train_args(flags)), extra_callbacks=[reporter])
        accuracies = [float(row["val_accuracy"]) for row in callbacks.read_history(run_dir)]
        trial.set_user_attr("epochs", len(accuracies))
        if reporter.pruned_at:
            raise optuna.TrialPruned(f"pruned after epoch {reporter.pruned_at}")
        return max(accuracies)

    return objective


def announce(study, trial):
    value = "-" if trial.value is None else f"{trial.value:.4f}"
    outcome = (f"pruned after epoch {trial.user_attrs.get('epochs')} at val_accuracy {value}"
               if trial.state == TrialState.PRUNED else f"best val_accuracy {value}")
    print(f"trial {trial.number} {trial.state.name.lower()}: {outcome}; {trial.params}", flush=True)


# --- the study ----------------------------------------------------------------------------------------------------

def one_process(flags):
    """The cluster of every trial: this process alone. A trial may replicate its model over this machine's devices
    (--distribute data_parallel), but tune.py cannot start the other processes of a multi-process run."""
    given = [f"--{name}" for name in ("coordinator_address", "num_processes", "process_id")
             if getattr(flags, name) is not None]
    if given or distribute.cluster_from().num_processes > 1:
        raise UserError(f"tune.py runs each trial in this one process, so {', '.join(given) or 'a TF_CONFIG cluster'} "
                        f"cannot be honoured: remove it (--distribute data_parallel still replicates each trial over "
                        f"this machine's devices)")
    return distribute.Cluster()


def check_tune_folder(save_to, marker):
    """A new folder, or the tune folder of this same search (same storage, flags and space) to continue."""
    if not os.path.exists(save_to):
        return
    path = os.path.join(save_to, MARKER)
    if not os.path.isfile(path):
        raise UserError(f"{save_to} exists and is not a tune folder (no {MARKER}); pick a new --save_to")
    earlier = json.loads(storage.read_text(path))
    if earlier != marker:
        changed = [key for key in marker if earlier.get(key) != marker[key]]
        raise UserError(f"{save_to} holds a search with other {', '.join(changed)}; continue it with the same "
                        f"command, or pick a new --save_to")


def finished(study):
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def run_trials(study, objective, trials, timeout):
    remaining = trials - finished(study)
    if remaining > 0:
        # A trial that train.py refuses (a UserError) fails alone; the study goes on with the next one. Any other
        # exception is a bug: it fails its trial and ends the study with its traceback. Only a trial whose process
        # died (its heartbeat stopped) is tried again.
        study.optimize(objective, n_trials=remaining, timeout=timeout, catch=(UserError,), callbacks=[
            optuna.study.MaxTrialsCallback(trials, states=FINISHED), announce])


def start_workers(argv, count, url):
    """The other --workers: this command again with one worker each and no summary, sharing the storage, whose URL
    they read from their environment (STORAGE_VARIABLE), not from their argv."""
    argv, environment = secret_url.by_environment(argv, url, STORAGE_VARIABLE)
    command = [sys.executable, os.path.abspath(__file__), *argv, "--workers", "1", "--no-summary"]
    return [subprocess.Popen(command, env=environment) for _ in range(count)]


# --- the summary --------------------------------------------------------------------------------------------------

def trial_rows(study):
    for trial in study.get_trials(deepcopy=False):
        seconds = trial.duration.total_seconds() if trial.duration else None
        yield (trial.number, trial.state.name.lower(), json.dumps(trial.params),
               "-" if trial.value is None else f"{trial.value:.4f}", trial.user_attrs.get("epochs", "-"),
               "-" if seconds is None else f"{seconds:.0f}")


def print_table(study):
    print(f"{'trial':>5}  {'state':<9}{'val_acc':>8}{'epochs':>7}{'seconds':>8}  parameters")
    for number, state, params, value, epochs, seconds in trial_rows(study):
        print(f"{number:>5}  {state:<9}{value:>8}{epochs:>7}{seconds:>8}  {params}")


def save_pictures(study, save_to):
    """Optuna's optimization history and parameter importances, drawn headless (Optuna draws with pyplot: its
    backend is chosen here, Agg, which writes files and opens no window)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = []
    for name, draw in (("optimization_history.png", optuna.visualization.matplotlib.plot_optimization_history),
                       ("param_importances.png", optuna.visualization.matplotlib.plot_param_importances)):
        try:
            with warnings.catch_warnings(record=True) as said:  # e.g. "importances will be equal": one line of ours
                warnings.simplefilter("always")  # every warning, even one already shown from the same place
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # both plots are, since 2.2
                draw(study)
        except Exception as error:  # e.g. importances need two finished trials that differ; the rest stands
            print(f"no {name}: {error}")
            continue
        for warning in said:
            print(f"{name}: {warning.message}")
        plt.gcf().set_size_inches(8, 5)
        plt.tight_layout()
        plt.savefig(os.path.join(save_to, name), dpi=80)
        plt.close("all")
        drawn.append(name)
    return drawn


def write_best(study, save_to):
    """best.json, and a `best` link to the best trial's run folder when it is on this machine (with a shared
    --storage it may have run on another one)."""
    best = study.best_trial
    run_dir = best.user_attrs["run_folder"]
    here = folders.is_run_folder(run_dir)
    record = {"trial": best.number, "val_accuracy": best.value, "params": best.params, "run_folder": run_dir,
              "settings": config.read(run_dir).record() if here else None}
    storage.write(os.path.join(save_to, "best.json"), json.dumps(record, indent=2))
    link = os.path.join(save_to, "best")
    if os.path.islink(link):
        os.remove(link)
    if here:  # relative inside the tune folder, so the folder can move
        os.symlink(os.path.relpath(run_dir, save_to), link)
    return best, run_dir, here


def summarize(study, save_to):
    print_table(study)
    states = [trial.state for trial in study.get_trials(deepcopy=False)]
    print(f"{states.count(TrialState.COMPLETE)} complete, {states.count(TrialState.PRUNED)} pruned, "
          f"{states.count(TrialState.FAIL)} failed")
    if not states.count(TrialState.COMPLETE):
        raise UserError(f"no trial of {save_to} completed, so there is no best one; see the lines above")
    pictures = save_pictures(study, save_to)
    best, run_dir, here = write_best(study, save_to)
    print("wrote best.json" + (f", best -> {os.path.relpath(run_dir, save_to)}" if here else
                                f" (the best trial ran in another process's folder: {run_dir})")
          + "".join(f", {name}" for name in pictures))
    print(f"best val_accuracy {best.value:.4f} in trial {best.number} ({run_dir}); deploy it: python deploy.py "
          f"--read_from {run_dir} --save_to deploy/{os.path.basename(os.path.normpath(save_to))}")


@reports_user_errors
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    study_storage.quiet_optuna()
    fixed = train_args(args.train_flags)
    model = config.given_or_default(fixed, "model")
    space = check_space(read_space(args.space) if args.space else model_space(model),
                        args.space or f"the search space of models/{model}.py", model)
    check_against_train(space, args.train_flags, fixed.model_kwargs or {})
    settings = train.settings_from(fixed)
    distribute.check(settings.distribute, one_process(fixed))
    doodles.write_if_default(settings.data)  # as train.run does: no --data means the synthetic sample
    open_run_data(settings)  # missing or unreadable data: before anything is written
    save_to = os.path.abspath(args.save_to)
    url = secret_url.resolve(args.storage, "--storage") if args.storage else \
        f"sqlite:///{os.path.join(save_to, 'study.db')}"
    # A continued search recognises its storage by the masked URL: the same database, whatever its password now.
    marker = {"storage": secret_url.printable(url), "train_flags": args.train_flags, "space": space}
    check_tune_folder(save_to, marker)
    study = study_storage.opened(url) if args.storage else None  # an unreachable server: before anything is written
    os.makedirs(save_to, exist_ok=True)
    storage.write(os.path.join(save_to, MARKER), json.dumps(marker, indent=2))
    study = study or study_storage.opened(url)
    study_storage.settle_dead_trials(study)
    workers = start_workers(argv, args.workers - 1, url) if args.workers > 1 else []
    objective = make_objective(save_to, space, args.train_flags, fixed.model_kwargs or {})
    run_trials(study, objective, args.trials, args.timeout)
    for worker in workers:
        worker.wait()
    if args.summary:
        summarize(study, save_to)
    return study


if __name__ == "__main__":
    main()
