"""tune.py's Optuna study in its storage: opened (with retries for a storage that is not answering yet), its trials
kept alive by heartbeats, and the trials of processes that died failed and tried again; Optuna's own chatter quiet.
"""
import time
import warnings

import optuna
import sqlalchemy
from optuna.trial import TrialState

from support import secret_url
from support.errors import UserError, first_line

STUDY_NAME = "tune"
HEARTBEAT_SECONDS = 10  # a running trial writes a heartbeat this often ...
GRACE_SECONDS = 30  # ... and one silent for this long is failed (its process died) and tried again
# Heartbeats have been "experimental" in Optuna since 2.8 and are what it recommends for failed processes.
EXPERIMENTAL = ("Argument ``heartbeat_interval`` is an experimental feature",
                "RetryHeartbeatStaleTrialCallback is experimental",
                "optuna.storages._heartbeat.fail_stale_trials is experimental")


def quiet_optuna():
    """Optuna's lines that say nothing to a user: its per-trial log (tune.py says what finished, one line a
    trial) and the experimental-feature warnings of the heartbeats."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for experimental in EXPERIMENTAL:
        warnings.filterwarnings("ignore", message=experimental, category=optuna.exceptions.ExperimentalWarning)


# Storage failures that a second try can mend: a server not answering yet, tables that processes started together
# race to create. A URL that names no database or a driver that is not installed is the user's to fix; anything
# else is a bug and keeps its traceback.
RETRIED = (sqlalchemy.exc.DBAPIError, optuna.exceptions.StorageInternalError)
NOT_A_STORAGE = (sqlalchemy.exc.ArgumentError, ImportError)


def opened(url, attempts=3):
    """The study in `url`, created if new; a failure that a retry can mend is tried again before it counts."""
    for attempt in range(attempts):
        try:
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
            template = url.replace("{", "{{").replace("}", "}}")  # Optuna str.format()s the URL: braces survive
            rdb = optuna.storages.RDBStorage(template, heartbeat_interval=HEARTBEAT_SECONDS,
                                             grace_period=GRACE_SECONDS, heartbeat_stale_trial_callback=retry)
            return optuna.create_study(storage=rdb, study_name=STUDY_NAME, direction="maximize",
                                       load_if_exists=True,
                                       pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
        except (*RETRIED, *NOT_A_STORAGE) as error:
            if attempt + 1 == attempts or isinstance(error, NOT_A_STORAGE):
                raise UserError(f"cannot open the study storage {secret_url.printable(url)}: "
                                f"{secret_url.masked(first_line(error), url)}") from secret_url.masked_cause(error, url)
            time.sleep(1 + attempt)


def settle_dead_trials(study):
    """Fail (and try again) the trials of processes that died, then give every trial still running a heartbeat.
    Optuna fails a trial whose heartbeat is old, but never one without any: a process killed between creating its
    trial and the first beat. With a heartbeat from now, that trial goes stale like any other; a live trial loses
    nothing, and one that died less than GRACE_SECONDS ago waits that much longer."""
    optuna.storages.fail_stale_trials(study)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.record_heartbeat(trial._trial_id)  # Optuna has no public call that takes a trial number


