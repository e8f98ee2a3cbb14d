"""--time_budget: how many epochs a run trains, sized from the measured cost of its first epoch of the whole model.

That epoch (the first after --freeze_epochs, or a run's first without them) is timed; under the cosine schedule it
warms the rate up from 0, which is the same whatever comes after it, so nothing it learns depends on the decision.
Then as many epochs follow as fit in what is left of the budget (at least one, at most --num_epochs in all), and the
cosine decays over them. config.json records the decision (num_epochs, and epoch_seconds, the measured cost), so
--resume continues the same schedule and never decides again.
"""
import math
import statistics
import time

import keras


class EpochClock(keras.callbacks.Callback):
    """Times one epoch (the run's last callback: after its validation and the files written) and then ends the fit,
    noting whether another callback (early stopping, a pruner) had already asked for that."""

    def on_epoch_begin(self, epoch, logs=None):
        self.began, self.steps, self.validation_steps = time.monotonic(), [], []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(time.monotonic())

    def on_test_begin(self, logs=None):
        self.validation_began = time.monotonic()

    def on_test_batch_end(self, batch, logs=None):
        self.validation_steps.append(time.monotonic())

    def on_epoch_end(self, epoch, logs=None):
        self.ended = time.monotonic()
        self.stopped_by_others = self.model.stop_training
        self.model.stop_training = True

    def costs(self):
        """(seconds of an epoch; seconds of tracing the training step, which a new schedule repeats; seconds of a
        validation pass). An epoch costs what the timed one took in all: the excess of its first step is the tracing
        only once, but every epoch starts its data pipeline again there (on grocery, 1,627 photos, the later epochs
        took the timed one's 55 s, where leaving that excess out foresaw 48 s and overran a 14-minute budget by 3)."""
        _, train_tracing = steady(self.began, self.steps)
        validation_step, _ = steady(self.validation_began, self.validation_steps)
        return self.ended - self.began, train_tracing, validation_step * len(self.validation_steps)


def steady(began, ends):
    """(the median time of a step, what the first took beyond it) of steps that began at `began` and ended at `ends`."""
    times = [later - earlier for earlier, later in zip([began, *ends], ends)]
    step = statistics.median(times[1:]) if len(times) > 1 else times[0]
    return step, max(0.0, times[0] - step)


def undecided(settings, done):
    """Whether the epoch after `done` is the one to time."""
    return settings.time_budget is not None and settings.epoch_seconds is None and done >= settings.freeze_epochs


def decide(settings, clock, elapsed, done):
    """`settings` with the epochs that fit after `done` (the timed one included) in the budget less `elapsed` seconds,
    the tracing of the new schedule's step and the report's validation pass."""
    epoch, tracing, validation = clock.costs()
    left = settings.time_budget * 60 - elapsed - tracing - validation
    epochs = min(settings.num_epochs, done + max(1, math.floor(left / epoch)))
    return settings.replace(num_epochs=epochs, epoch_seconds=round(epoch, 2))


def describe(settings, done):
    """One line: what the budget decided."""
    more = settings.num_epochs - done
    return (f"--time_budget {settings.time_budget:g} min: an epoch takes {settings.epoch_seconds:.0f} s here, so "
            f"{more} more {'epoch follows' if more == 1 else 'epochs follow'} ({settings.num_epochs} in all, recorded "
            f"in config.json)")
