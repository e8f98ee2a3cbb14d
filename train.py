"""Train a registered model on a data source and write a run folder (see README: "The run folder").

    python train.py --save_to progress/test --num_epochs 10 --batch_size 8 --model mobilenet_v2 \
        --input_size 224,224 --jitter --overwrite

From Python, the same path (README: "From Python"):

    model = train.run(config.RunConfig(data=["photos/"], save_to="progress/photos"), overwrite=True)

Every setting's flag, default and help are declared once, in config.SETTINGS. Bad input is reported in one line
before anything is written.
"""
from support import startup

if __name__ == "__main__":
    startup.setup()  # first: before anything imports TensorFlow (support/startup.py)

# Keras (and with it TensorFlow) and the modules built on it are imported where a run starts, not here: --help and a
# bad flag answer at once, and `python -X importtime train.py --help` imports no TensorFlow.
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

import config
from support import class_weight, distribute, doodles, folders, requirements, storage
from support.errors import ArgumentParser, UserError, non_negative_int, positive_int, reports_user_errors


def parse_args(argv=None):
    p = ArgumentParser(description="Train an image classifier and write a run folder.")
    config.add_flags(p, "train")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --save_to")
    p.add_argument("--coordinator_address", help="host:port of process 0, the same for every process "
                                                 "(default: from TF_CONFIG when set)")
    p.add_argument("--num_processes", type=positive_int, help="processes in a multi-process job")
    p.add_argument("--process_id", type=non_negative_int, help="this process's index, 0 to num_processes-1")
    p.add_argument("--summary", action="store_true",
                   help="print the model's layers and parameter count at its input, and train nothing")
    return p.parse_args(argv)


def check_run_folder(save_to, overwrite, resume):
    """Refuse, before anything is written, to clobber a folder that the user did not ask to replace, or one that
    holds anything train.py did not write."""
    if resume:
        if not folders.is_run_folder(save_to):
            raise UserError(f"cannot resume: {save_to} is not a run folder (no {folders.CONFIG}); a run killed before "
                            f"its first epoch finished leaves nothing to resume: train it again")
    elif storage.exists(save_to):
        if not overwrite:
            raise UserError(f"{save_to} already exists; pass --overwrite to replace it, or --resume to continue it")
        folders.check_replaceable(folders.RUN, save_to)


def settings_from(args):
    """The flags over the declared defaults; on --resume, the run's own settings (only --num_epochs may extend
    it), in the folder given."""
    if args.resume:
        settings = config.read(args.save_to)
        return settings.replace(save_to=args.save_to, num_epochs=args.num_epochs or settings.num_epochs)
    return config.RunConfig(**config.given(args, "train"))


def gpu_available():
    import keras

    try:
        return bool(keras.distribution.list_devices("gpu"))
    except RuntimeError:  # JAX raises where TensorFlow returns an empty list
        return False


def dtype_policy(mixed_precision):
    """'mixed_float16' when asked for and a GPU can use it; otherwise 'float32', saying why."""
    if not mixed_precision:
        return "float32"
    if not gpu_available():
        print("note: --mixed_precision speeds up only GPUs with float16 units, and none is visible: "
              "this run trains in float32")
        return "float32"
    return "mixed_float16"


def learning_rate(settings, steps_per_epoch, unfrozen=False):
    """The rate of the whole run or, with --freeze_epochs, of the frozen epochs, at --head_lr_factor times the learning
    rate; `unfrozen`: of the epochs after them, at --unfreeze_lr_factor times it. A cosine schedule decays over its own
    epochs; with --time_budget, its first epoch that trains the base warms the rate up from 0 first (time_budget.py)."""
    import keras

    if not settings.freeze_epochs:
        rate, epochs = settings.learning_rate, settings.num_epochs
    elif unfrozen:
        rate = settings.learning_rate * settings.unfreeze_lr_factor
        epochs = settings.num_epochs - settings.freeze_epochs
    else:
        rate, epochs = settings.learning_rate * settings.head_lr_factor, settings.freeze_epochs
    if settings.lr_schedule != "cosine":
        return rate
    if settings.time_budget is not None and (unfrozen or not settings.freeze_epochs):
        return keras.optimizers.schedules.CosineDecay(0.0, (epochs - 1) * steps_per_epoch, warmup_target=rate,
                                                      warmup_steps=steps_per_epoch)
    return keras.optimizers.schedules.CosineDecay(rate, epochs * steps_per_epoch)


def make_optimizer(settings, steps_per_epoch, unfrozen=False, model=None):
    """The optimizer of the whole run or of one phase of it (learning_rate's). While the base trains, the head of
    `model` learns at --unfrozen_head_lr_factor times the rate (transfer.HeadRate)."""
    import transfer

    optimizer_class = config.named(config.OPTIMIZERS[settings.optimizer])
    options = {}
    if settings.unfrozen_head_lr_factor != 1 and (unfrozen or not settings.freeze_epochs):
        optimizer_class = transfer.with_head_rate(optimizer_class)
        options = {"head_paths": transfer.head_paths(model, config.MODELS[settings.model].head),
                   "head_factor": settings.unfrozen_head_lr_factor}
    # Keras applies weight decay decoupled from the gradient (Adam with it is AdamW); 0 means none.
    return optimizer_class(learning_rate=learning_rate(settings, steps_per_epoch, unfrozen),
                           weight_decay=settings.weight_decay or None, **options)


def batchnorm_trains(settings):
    """Whether BatchNorm trains once --freeze_epochs unfreeze the base: --train_batchnorm, else the model's SPEC."""
    if settings.train_batchnorm is not None:
        return settings.train_batchnorm
    return config.MODELS[settings.model].batchnorm_fine_tunes


def compiled_model(settings, steps_per_epoch, epochs_done=0):
    """The model as it trains after `epochs_done` epochs (what a backup of them restores into): a new run starts
    from --from_ckpt; during --freeze_epochs the base is frozen; each phase has its own optimizer."""
    import transfer

    model = config.build_model(settings)
    if settings.from_ckpt and not epochs_done:  # a resumed run's weights come from its backup
        transfer.load_checkpoint(model, settings.from_ckpt)
    head = config.MODELS[settings.model].head
    frozen = transfer.frozen_at(settings.freeze_epochs, epochs_done)
    unfrozen = settings.freeze_epochs > 0 and not frozen
    if frozen:
        transfer.freeze_base(model, head)
    elif unfrozen:  # resumed after the switch: as UnfreezeBase left it
        transfer.unfreeze_base(model, head, batchnorm_trains(settings))
    model.compile(optimizer=make_optimizer(settings, steps_per_epoch, unfrozen, model),
                  loss=config.named(config.LOSSES[settings.loss])(), metrics=["accuracy"])
    return model


def unfreezing(settings, model, steps_per_epoch):
    """The callback that unfreezes the base after --freeze_epochs, when the run goes on past them."""
    import transfer

    if not 0 < settings.freeze_epochs < settings.num_epochs:
        return []
    return [transfer.UnfreezeBase(settings.freeze_epochs, make_optimizer(settings, steps_per_epoch, True, model),
                                  config.MODELS[settings.model].head, batchnorm_trains(settings))]


def trim_history(run_dir, epochs):
    """Drop history rows of epochs the backup does not hold (a crash between the two writes)."""
    import callbacks

    rows = [row for row in callbacks.read_history(run_dir) if int(row["epoch"]) < epochs]
    callbacks.write_history(run_dir, rows)
    return rows


NOTHING_LEARNED_MARGIN = 0.02  # validation accuracy this close to always guessing one class is no result


def nothing_learned(model, val_gen, best_accuracy, single_process=True):
    """Why the run looks like it learned nothing, or None: a classifier that always answers the commonest
    class scores its share, so a best validation accuracy near that share, or one answer for every
    validation item, means the features carry no class information yet. (Predicting is collective across
    processes, so a multi-process run checks the accuracy only.)"""
    counts = np.bincount(val_gen.reader.labels[val_gen.indices], minlength=model.output_shape[-1])
    guess_share = counts.max() / counts.sum()
    if best_accuracy <= guess_share + NOTHING_LEARNED_MARGIN:
        return (f"best val_accuracy {best_accuracy:.4f} is no better than always answering the commonest "
                f"class ({guess_share:.4f})")
    if not single_process:
        return None
    answers = np.unique(np.argmax(model.predict(val_gen, verbose=0), axis=-1))
    if len(answers) == 1:
        return f"the final model answers '{val_gen.reader.class_names[answers[0]]}' for every validation item"
    return None


def seed_everything(seed):
    """Seed what Keras draws from when it builds a model (its initializers and dropout take their seeds from Python's
    random module): keras.utils.set_random_seed, which also seeds TensorFlow and so imports it whatever the backend;
    on another backend (JAX) the same without TensorFlow."""
    if requirements.keras_backend() == "tensorflow":
        import keras

        keras.utils.set_random_seed(seed)
    else:
        random.seed(seed)
        np.random.seed(seed)


@dataclass
class Training:
    """A run ready to fit: what it records (the configuration with what the data told), its batches, its compiled
    model and the folder it writes into."""

    settings: config.RunConfig
    train_gen: "datagen.BatchGenerator"
    val_gen: "datagen.BatchGenerator"
    class_weights: dict
    model: "keras.Model"
    folder: folders.Destination
    done: int  # epochs a resumed run has finished
    best_so_far: tuple  # callbacks.epoch_rank of a resumed run's best epoch
    cluster: distribute.Cluster
    started: float  # time.monotonic() when the run began: what --time_budget counts from


def prepare(settings, resume, overwrite, cluster):
    """Check the folder, read the data, build the model and the folder to write: everything that can refuse
    the run does so here, before anything is written."""
    import keras

    import callbacks
    from datagen import open_run_data, run_batches
    from support import onednn

    started = time.monotonic()
    distribute.check(settings.distribute, cluster)
    if settings.time_budget is not None and cluster.num_processes > 1:
        raise UserError("--time_budget times an epoch in one process, and each process of a multi-process run would "
                        "decide apart: give --num_epochs instead")
    if cluster.is_chief:
        check_run_folder(settings.save_to, overwrite, resume)
        doodles.write_if_default(settings.data)
    train_reader, val_reader = open_run_data(settings)
    train_gen, val_gen = run_batches(settings, train_reader, val_reader, shard=cluster.process_id,
                                     num_shards=cluster.num_processes, whole_batches=settings.distribute != "none",
                                     workers=settings.workers, use_multiprocessing=settings.use_multiprocessing)
    class_weights = class_weight.per_class(settings.class_weight, train_reader.class_names,
                                           train_reader.labels[train_gen.indices])
    distribute.start(settings.distribute, cluster, settings.batch_size)
    recorded = settings.replace(  # what the data and this machine told, for config.json
        class_names=train_reader.class_names, data_format=train_reader.fmt,
        data=list(map(os.path.abspath, settings.data)),
        val_data=list(map(os.path.abspath, settings.val_data)) if settings.val_data else None,
        num_processes=cluster.num_processes, dtype_policy=dtype_policy(settings.mixed_precision))
    keras.mixed_precision.set_global_policy(recorded.dtype_policy)
    seed_everything(recorded.seed)  # every process builds the same initial model
    done = callbacks.epochs_done(recorded.save_to) if resume else 0
    model = compiled_model(recorded, len(train_gen), done)
    onednn.check(model)
    best_so_far = None
    if resume:
        callbacks.restore(model, recorded.save_to)
        if cluster.is_chief:
            history = trim_history(recorded.save_to, done)
            best_so_far = max(filter(None, map(callbacks.epoch_rank, history)), default=None)
    # A new run is written beside its place and published after its first epoch (support/folders.py); saving a
    # distributed model is collective: every process saves, but only process 0 into the run folder.
    if not cluster.is_chief:
        folder = folders.Destination(tempfile.mkdtemp(prefix=f"process{cluster.process_id}-"))
    elif resume:
        folder = folders.Destination(recorded.save_to)
    else:
        folder = folders.Destination.new(recorded.save_to)
        recorded = config.save(folder.path, recorded)
    return Training(recorded, train_gen, val_gen, class_weights, model, folder, done, best_so_far, cluster, started)


def fit(training, extra_callbacks=()):
    """Train the epochs still to do: the frozen ones on cached features where it can, the rest with model.fit.
    A run that fails before its first epoch is done leaves the folder it would replace as it was."""
    import callbacks
    import time_budget
    import transfer

    settings, model, done = training.settings, training.model, training.done
    left_out = sum(int(reader.left_out.sum()) for reader in {training.train_gen.reader, training.val_gen.reader})
    print(f"{settings.model}: {model.count_params():,} parameters; training on {len(training.train_gen.indices)} and "
          f"validating on {len(training.val_gen.indices)} items of {len(settings.class_names)} classes"
          + (f"; {left_out} left out (--exclude)" if left_out else "")
          + (f"; {len(settings.split_groups)} groups of copies each on one side (--split_groups)"
             if settings.split_groups else "")
          + (f"; process {training.cluster.process_id} of {training.cluster.num_processes}"
             if training.cluster.num_processes > 1 else ""))
    if training.class_weights:
        print(f"loss weight of each class (--class_weight): "
              f"{class_weight.describe(training.class_weights, settings.class_names)}")
    run_callbacks = callbacks.get(training.folder, [training.train_gen, training.val_gen], settings.keep_checkpoints,
                                  settings.early_stopping, training.best_so_far) + list(extra_callbacks)
    try:
        if transfer.head_on_cached_features(settings.freeze_epochs, done, training.cluster.num_processes):
            done = transfer.fit_head_on_features(model, config.MODELS[settings.model].head, training.train_gen,
                                                 training.val_gen, done, settings.freeze_epochs, settings.num_epochs,
                                                 run_callbacks, training.class_weights)
        run_callbacks = unfreezing(settings, model, len(training.train_gen)) + run_callbacks
        if done < settings.num_epochs and not model.stop_training and time_budget.undecided(settings, done):
            done = timed_epoch(training, run_callbacks, done)
        if done < training.settings.num_epochs and not model.stop_training:
            fit_epochs(training, run_callbacks, done)
    except BaseException:
        training.folder.discard()
        raise
    return model


def fit_epochs(training, run_callbacks, done):
    """model.fit from epoch `done` to the run's last."""
    # shuffle=False: the generator shuffles from (seed, epoch); Keras' own shuffle of the batch order draws from
    # Python's global random state, which a resumed run does not share with the run it continues.
    training.model.fit(training.train_gen, validation_data=training.val_gen,
                       epochs=training.settings.num_epochs, initial_epoch=done, shuffle=False,
                       callbacks=run_callbacks, verbose=(1 if sys.stdout.isatty() else 2) if training.cluster.is_chief
                       else 0, class_weight=training.class_weights)


def timed_epoch(training, run_callbacks, done):
    """--time_budget: train and time one epoch of the whole model, then decide how many follow (time_budget.py):
    recorded in config.json, and the cosine of the schedule set to end with them. Returns the epochs done."""
    import time_budget

    model, clock = training.model, time_budget.EpochClock()
    fit_epochs(training, run_callbacks + [clock], done)
    model.stop_training = clock.stopped_by_others
    done += 1
    training.settings = time_budget.decide(training.settings, clock, time.monotonic() - training.started, done)
    config.write(training.folder.path, training.settings)
    print(time_budget.describe(training.settings, done), flush=True)
    model.optimizer.learning_rate = learning_rate(training.settings, len(training.train_gen),
                                                  unfrozen=training.settings.freeze_epochs > 0)
    model.make_train_function(force=True)  # the compiled step holds the schedule it was traced with
    return done


def report(training):
    """The curves, the best epoch, and a warning when the run learned nothing."""
    import callbacks
    import plots

    settings, cluster = training.settings, training.cluster
    if not cluster.is_chief:
        shutil.rmtree(training.folder.path)
        print(f"process {cluster.process_id} done; process 0 wrote the run folder {settings.save_to}")
        return
    print(f"training curves: {plots.training_curves(settings.save_to)}")
    history = callbacks.read_history(settings.save_to)
    best = max(history, key=callbacks.epoch_rank)  # the epoch best.keras holds
    print(f"best val_accuracy {float(best['val_accuracy']):.4f} at epoch {int(best['epoch']) + 1} (best.keras); "
          f"{len(history)} epochs run; run folder: {settings.save_to}")
    problem = nothing_learned(training.model, training.val_gen, float(best["val_accuracy"]), cluster.num_processes == 1)
    if problem:
        print(f"warning: this run learned nothing: {problem}. Likely causes: too few steps (more epochs or a "
              f"smaller --batch_size), a --learning_rate too high or too low, BatchNorm statistics that lag "
              f"(momentum near 1 on a small data set), or labels that do not match the images", file=sys.stderr)


def run(settings, resume=False, overwrite=False, cluster=distribute.Cluster(), extra_callbacks=()):
    """Train as `settings` (a config.RunConfig) says into settings.save_to, and return the trained keras.Model: the
    one path of train.py, of Python code, and of tune.py's trials (whose pruning is an extra callback). A user error
    is a UserError, raised before anything is written."""
    training = prepare(settings, resume, overwrite, cluster)
    fit(training, extra_callbacks)
    report(training)
    return training.model


@reports_user_errors
def main(argv=None):
    """Train as the command line says; returns the trained model (for scripts and tests)."""
    args = parse_args(argv)
    settings = settings_from(args)
    if args.summary:  # before any data is read: the classes are only counted, and two will do
        model = config.build_model(settings.replace(class_names=["a", "b"]))
        model.summary()
        return model
    cluster = distribute.cluster_from(args.coordinator_address, args.num_processes, args.process_id)
    return run(settings, args.resume, args.overwrite, cluster)


if __name__ == "__main__":
    main()
