"""Train a registered model on a data source and write a run folder (see README: "The run folder").

    python train.py --save_to progress/test --num_epochs 10 --batch_size 8 --model mobilenet_v2 \
        --input_size 224,224 --jitter --overwrite

Every setting's flag, default and help are declared once, in config.SETTINGS. Bad input is reported in one line
before anything is written.
"""
import os
import shutil
import sys
import tempfile

from support import console  # noqa: F401  first: quiets TensorFlow's import (see console.py)
import keras
import numpy as np

import callbacks
import config
import plots
import transfer
from datagen import open_run_data, run_batches
from support import allocator, class_weight, distribute, doodles, onednn, storage
from support.errors import ArgumentParser, UserError, non_negative_int, positive_int, reports_user_errors

# At import, not in main(): tools that import this module (tune.py) read data with TensorFlow before their
# first training run, and TensorFlow takes the allocator setting at its first CPU allocation.
allocator.reuse_cpu_memory()


def parse_args(argv=None):
    p = ArgumentParser(description="Train an image classifier and write a run folder.")
    config.add_flags(p, "train")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --save_to")
    p.add_argument("--coordinator_address", help="host:port of process 0, the same for every process "
                                                 "(default: from TF_CONFIG when set)")
    p.add_argument("--num_processes", type=positive_int, help="processes in a multi-process job")
    p.add_argument("--process_id", type=non_negative_int, help="this process's index, 0 to num_processes-1")
    return p.parse_args(argv)


def check_run_folder(save_to, overwrite, resume):
    """Refuse, before anything is written, to clobber a folder that the user did not ask to replace."""
    is_run = config.is_run_folder(save_to)
    if resume:
        if not is_run:
            raise UserError(f"cannot resume: {save_to} is not a run folder (no {config.CONFIG_FILE})")
    elif storage.exists(save_to):
        if not overwrite:
            raise UserError(f"{save_to} already exists; pass --overwrite to replace it, or --resume to continue it")
        if not is_run:
            raise UserError(f"refusing to overwrite {save_to}: it is not a run folder (no {config.CONFIG_FILE})")


def settings_from(args):
    """Flags over defaults; on --resume, the run's own settings (only --num_epochs may extend it)."""
    if args.resume:
        settings = config.read(args.save_to)
        settings["num_epochs"] = args.num_epochs or settings["num_epochs"]
    else:
        settings = dict(config.TRAINING)
        settings.update({k: v for k, v in vars(args).items() if k in settings and v is not None})
        settings["save_to"] = args.save_to or settings["save_to"]
        spec = config.MODELS[settings["model"]]
        settings["input_size"] = settings["input_size"] or list(spec.default_input_size(settings["model_kwargs"]))
        settings["channels"] = settings["channels"] or spec.channels
    if settings["freeze_epochs"] > settings["num_epochs"]:
        raise UserError(f"--freeze_epochs {settings['freeze_epochs']} is more than --num_epochs "
                        f"{settings['num_epochs']}: freeze at most as many epochs as the run trains")
    return settings


def gpu_available():
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


def write_sample_if_default(settings):
    """The default --data is the synthetic doodle sample: write it on first use."""
    if settings["data"] == [config.SAMPLE_DATA] and not os.path.isdir(config.SAMPLE_DATA):
        doodles.write(config.SAMPLE_DATA)
        print(f"wrote the synthetic doodle sample to {config.SAMPLE_DATA}")


def make_optimizer(settings, steps_per_epoch, unfrozen=False):
    """The optimizer of the whole run or, with --freeze_epochs, of the frozen epochs, at --head_lr_factor times
    the learning rate; `unfrozen`: of the epochs after them, at --unfreeze_lr_factor times the learning rate.
    A cosine schedule decays over its own epochs."""
    freeze_epochs = settings["freeze_epochs"]
    if not freeze_epochs:
        learning_rate, epochs = settings["learning_rate"], settings["num_epochs"]
    elif unfrozen:
        learning_rate = settings["learning_rate"] * settings["unfreeze_lr_factor"]
        epochs = settings["num_epochs"] - freeze_epochs
    else:
        learning_rate, epochs = settings["learning_rate"] * settings["head_lr_factor"], freeze_epochs
    if settings["lr_schedule"] == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * steps_per_epoch)
    # Keras applies weight decay decoupled from the gradient (Adam with it is AdamW); 0 means none.
    return config.OPTIMIZERS[settings["optimizer"]](learning_rate=learning_rate,
                                                    weight_decay=settings["weight_decay"] or None)


def compiled_model(settings, steps_per_epoch, epochs_done=0):
    """The model as it trains after `epochs_done` epochs (what a backup of them restores into): a new run starts
    from --from_ckpt; during --freeze_epochs the base is frozen; each phase has its own optimizer."""
    model = config.build_model(settings)
    if settings["from_ckpt"] and not epochs_done:  # a resumed run's weights come from its backup
        transfer.load_checkpoint(model, settings["from_ckpt"])
    spec = config.MODELS[settings["model"]]
    frozen = transfer.frozen_at(settings, epochs_done)
    unfrozen = settings["freeze_epochs"] > 0 and not frozen
    if frozen:
        transfer.freeze_base(model, spec.head)
    elif unfrozen:  # resumed after the switch: as UnfreezeBase left it
        transfer.unfreeze_base(model, spec)
    model.compile(optimizer=make_optimizer(settings, steps_per_epoch, unfrozen),
                  loss=config.LOSSES[settings["loss"]](), metrics=["accuracy"])
    return model


def unfreezing(settings, steps_per_epoch):
    """The callback that unfreezes the base after --freeze_epochs, when the run goes on past them."""
    freeze_epochs = settings["freeze_epochs"]
    if not 0 < freeze_epochs < settings["num_epochs"]:
        return []
    return [transfer.UnfreezeBase(freeze_epochs, make_optimizer(settings, steps_per_epoch, unfrozen=True),
                                  config.MODELS[settings["model"]])]


def trim_history(run_dir, epochs):
    """Drop history rows of epochs the backup does not hold (a crash between the two writes)."""
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


@reports_user_errors
def main(argv=None):
    """Train as the command line says; returns the trained model (for scripts and tests)."""
    args = parse_args(argv)
    cluster = distribute.cluster_from(args.coordinator_address, args.num_processes, args.process_id)
    return run(settings_from(args), args.resume, args.overwrite, cluster)


def run(settings, resume=False, overwrite=False, cluster=distribute.Cluster(), extra_callbacks=()):
    """Train on `settings` (settings_from's; left as they are) into settings["save_to"]: the one path of train.py
    and tune.py's trials (whose pruning is an extra callback). A user error is a UserError, before anything is
    written."""
    run_dir = settings["save_to"]
    distribute.check(settings["distribute"], cluster)
    if cluster.is_chief:
        check_run_folder(run_dir, overwrite, resume)
        write_sample_if_default(settings)
    train_reader, val_reader = open_run_data(settings)
    train_gen, val_gen = run_batches(settings, train_reader, val_reader, shard=cluster.process_id,
                                     num_shards=cluster.num_processes,
                                     whole_batches=settings["distribute"] != "none",
                                     workers=settings["workers"], use_multiprocessing=settings["use_multiprocessing"])
    class_weights = class_weight.per_class(settings["class_weight"], train_reader.class_names,
                                           train_reader.labels[train_gen.indices])
    distribute.start(settings["distribute"], cluster, settings["batch_size"])
    settings = dict(settings, class_names=train_reader.class_names, data_format=train_reader.fmt,
                    data=[os.path.abspath(p) for p in settings["data"]],
                    val_data=[os.path.abspath(p) for p in settings["val_data"]] if settings["val_data"] else None,
                    num_processes=cluster.num_processes, dtype_policy=dtype_policy(settings["mixed_precision"]))
    keras.mixed_precision.set_global_policy(settings["dtype_policy"])
    keras.utils.set_random_seed(settings["seed"])  # every process builds the same initial model
    done = callbacks.epochs_done(run_dir) if resume else 0
    model = compiled_model(settings, len(train_gen), done)
    onednn.check(model)
    left_out = sum(int(reader.left_out.sum()) for reader in (train_reader, val_reader) if reader is not None)
    print(f"{settings['model']}: {model.count_params():,} parameters; training on {len(train_gen.indices)} and "
          f"validating on {len(val_gen.indices)} items of {len(train_reader.class_names)} classes"
          + (f"; {left_out} left out (--exclude)" if left_out else "")
          + (f"; {len(settings['split_groups'])} groups of copies each on one side (--split_groups)"
             if settings["split_groups"] else "")
          + (f"; process {cluster.process_id} of {cluster.num_processes}" if cluster.num_processes > 1 else ""))
    if class_weights:
        print(f"loss weight of each class (--class_weight): "
              f"{class_weight.describe(class_weights, train_reader.class_names)}")

    best_so_far = None
    if resume:
        callbacks.restore(model, run_dir)
        if cluster.is_chief:
            history = trim_history(run_dir, done)
            best_so_far = max((float(row["val_accuracy"]) for row in history), default=None)
    elif cluster.is_chief:
        storage.rmtree(run_dir)  # checked above: a run folder the user asked to overwrite
        storage.makedirs(run_dir)
        config.save(run_dir, settings)

    # Saving a distributed model is collective: every process saves, but only process 0 into the run folder.
    writes_to = run_dir if cluster.is_chief else tempfile.mkdtemp(prefix=f"process{cluster.process_id}-")
    run_callbacks = unfreezing(settings, len(train_gen)) + callbacks.get(
        writes_to, [train_gen, val_gen], settings["keep_checkpoints"], settings["early_stopping"],
        best_so_far) + list(extra_callbacks)
    if transfer.head_on_cached_features(settings, done, cluster.num_processes):
        done = transfer.fit_head_on_features(model, config.MODELS[settings["model"]].head, train_gen, val_gen, done,
                                             settings["freeze_epochs"], settings["num_epochs"], run_callbacks,
                                             class_weights)
    if done < settings["num_epochs"] and not model.stop_training:
        # shuffle=False: the generator shuffles from (seed, epoch); Keras' own shuffle of the batch order draws from
        # Python's global random state, which a resumed run does not share with the run it continues.
        model.fit(train_gen, validation_data=val_gen, epochs=settings["num_epochs"], initial_epoch=done,
                  shuffle=False, verbose=(1 if sys.stdout.isatty() else 2) if cluster.is_chief else 0,
                  callbacks=run_callbacks, class_weight=class_weights)
    if not cluster.is_chief:
        shutil.rmtree(writes_to)
        print(f"process {cluster.process_id} done; process 0 wrote the run folder {run_dir}")
        return model
    print(f"training curves: {plots.training_curves(run_dir)}")
    history = callbacks.read_history(run_dir)
    best = max(history, key=lambda row: float(row["val_accuracy"]))
    print(f"best val_accuracy {float(best['val_accuracy']):.4f} at epoch {int(best['epoch']) + 1}; "
          f"{len(history)} epochs run; run folder: {run_dir}")
    problem = nothing_learned(model, val_gen, float(best["val_accuracy"]), cluster.num_processes == 1)
    if problem:
        print(f"warning: this run learned nothing: {problem}. Likely causes: too few steps (more epochs or a "
              f"smaller --batch_size), a --learning_rate too high or too low, BatchNorm statistics that lag "
              f"(momentum near 1 on a small data set), or labels that do not match the images", file=sys.stderr)
    return model


if __name__ == "__main__":
    main()
