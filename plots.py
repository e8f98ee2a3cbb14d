"""Pictures of a run: training curves, a confusion matrix, and a preview of what jitter does to images.

    python plots.py curves --read_from progress/test                      # progress/test/curves.png
    python plots.py jitter --data data/quickdraw --count 8                # jitter_preview.png
    python plots.py jitter --data cats_vs_dogs/train --input_size 160,160 --channels 3
    python plots.py jitter --read_from progress/test                      # the run's data, size and channels

Headless: each picture is a matplotlib Figure of its own, rendered to PNG bytes, never a window, and no global
backend is chosen (a notebook that imports this module keeps its own). The jitter preview runs
the template's own pipeline, images.prepare and datagen.augmenter, so it shows exactly what
training with --jitter sees.
"""
from support import startup

if __name__ == "__main__":
    startup.setup()  # first: before anything imports TensorFlow (support/startup.py)

# The imports below load TensorFlow (through Keras), so they come after the start-up call.
import io
import os

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

import config
from callbacks import read_history
from support import doodles, storage
from support.errors import ArgumentParser, UserError, positive_int, reports_user_errors
from support.folders import CURVES, HISTORY


def save_figure(figure, path):
    """Render in memory and write through storage, so a run folder in a bucket gets its pictures too."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=os.path.splitext(path)[1].lstrip(".") or "png", dpi=100)
    storage.write(path, buffer.getvalue())


# --- training curves -------------------------------------------------------------------------------------

def history_columns(rows):
    """{column: float array} of a run's history rows; columns that are not numbers are left out."""
    columns = {}
    for key in rows[0] if rows else []:
        try:
            columns[key] = np.array([float(row[key]) for row in rows])
        except (TypeError, ValueError):
            pass
    return columns


def training_curves(run_dir, path=None):
    """Plot loss and accuracy per epoch (train vs validation) from run_dir/history.csv into run_dir/curves.png.

    Returns the PNG's path, or None when the run has no finished epoch yet."""
    history = history_columns(read_history(run_dir))
    if "epoch" not in history or not len(history["epoch"]):
        return None
    epochs = history["epoch"].astype(int) + 1  # history.csv counts from 0; people count from 1
    path = path or os.path.join(run_dir, CURVES)
    figure = Figure(figsize=(11, 4.2))
    axes = figure.subplots(1, 2)
    for ax, metric, label in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        for key, name, style in ((metric, "train", "-o"), (f"val_{metric}", "validation", "-s")):
            if key in history:
                ax.plot(epochs, history[key], style, label=name, markersize=4)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.set_xlim(0.5, epochs[-1] + 0.5)
        ax.margins(y=0.12)  # room for the "best" label under the best point
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
            ax.legend()
    if "val_accuracy" in history:
        best = int(np.argmax(history["val_accuracy"]))
        axes[1].axvline(epochs[best], color="grey", linestyle=":", linewidth=1)
        right_half = best >= len(epochs) / 2  # put the label on the side of the line with more room
        axes[1].annotate(f"best {history['val_accuracy'][best]:.4f}", (epochs[best], history["val_accuracy"][best]),
                         textcoords="offset points", xytext=(-5 if right_half else 5, -14), fontsize=9,
                         color="grey", ha="right" if right_half else "left")
    figure.suptitle(os.path.basename(os.path.abspath(run_dir)))
    figure.tight_layout()
    save_figure(figure, path)
    return path


# --- confusion matrix ------------------------------------------------------------------------------------

def confusion_matrix_png(matrix, class_names, path, title="confusion matrix"):
    """Heat map of a confusion matrix (rows true, columns predicted), coloured by the share of each true class
    (so rare and common classes read alike), with the counts written in the cells up to 20 classes."""
    matrix = np.asarray(matrix)
    count = len(class_names)
    if matrix.shape != (count, count):
        raise ValueError(f"matrix {matrix.shape} does not fit {count} class names")
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    side = float(np.clip(0.45 * count, 4.5, 34))  # inches of the matrix itself
    cell = side * 72 / max(count, 1)  # points per cell
    font = float(np.clip(cell * 0.45, 4, 11))
    step = int(np.ceil(font * 1.3 / cell))  # label every class while the labels fit, else every step-th
    longest = max((len(str(n)) for n in class_names[::step]), default=1)
    label_inches = min(longest, 40) * font * 0.62 / 72 + 0.6  # room for the rotated / left labels
    figure = Figure(figsize=(side + label_inches + 1.6, side + label_inches + 0.9))
    ax = figure.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    ticks = list(range(0, count, step))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    slanted = count <= 30  # 45° labels read best; beyond that, vertical ones keep to their own column
    ax.set_xticklabels([class_names[t] for t in ticks], rotation=45 if slanted else 90,
                       ha="right" if slanted else "center", rotation_mode="anchor" if slanted else "default",
                       fontsize=font)
    ax.set_yticklabels([class_names[t] for t in ticks], fontsize=font)
    ax.set_xlabel("predicted class", fontsize=max(10, font * 1.2))
    ax.set_ylabel("true class", fontsize=max(10, font * 1.2))
    ax.set_title(title, fontsize=max(10, font * 1.2))
    if count <= 20:
        for row in range(count):
            for column in range(count):
                if matrix[row, column]:
                    ax.text(column, row, str(int(matrix[row, column])), ha="center", va="center",
                            fontsize=font * 0.9, color="white" if shares[row, column] > 0.5 else "black")
    bar = figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("share of the true class")
    figure.tight_layout()
    save_figure(figure, path)
    return path


# --- jitter preview --------------------------------------------------------------------------------------

def spread_sample(labels, count, seed):
    """`count` item indices, cycling over the classes (so the preview shows several), seeded."""
    rng = np.random.default_rng(seed)
    classes = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    classes = [rng.permutation(members) for members in classes]
    chosen, round_ = [], 0
    while len(chosen) < count and any(round_ < len(m) for m in classes):
        chosen += [m[round_] for m in classes if round_ < len(m)]
        round_ += 1
    return np.array(chosen[:count])


def jitter_preview(reader, path, input_size, channels, count, versions, seed, kind, title=None):
    """A grid: each row one image as the model sees it un-jittered, then `versions` jittered versions of it
    (the template's augmenter of --jitter_kind `kind`, seeded differently per column)."""
    from datagen import augmenter
    from support.images import prepare

    indices = spread_sample(reader.labels, count, seed)
    originals = np.stack([prepare(reader.load(i), input_size, channels) for i in indices])
    jitter = augmenter(kind, channels)
    columns = [originals]
    for version in range(versions):
        copy = jitter.deepcopy()
        copy.seed_(seed * 1000 + version + 1)
        columns.append(copy(images=originals))
    height, width = input_size
    cell = 1.6 if max(height, width) <= 64 else 2.2
    aspect = width / height
    figure = Figure(figsize=(cell * aspect * (versions + 1) + 1.2, cell * len(indices) + 0.8))
    axes = figure.subplots(len(indices), versions + 1, squeeze=False)
    for row, item in enumerate(indices):
        label = reader.labels[item]
        name = reader.class_names[label] if label >= 0 else "(unlabeled)"
        for column, images in enumerate(columns):
            ax = axes[row, column]
            picture = images[row]
            if channels == 1:
                ax.imshow(picture[:, :, 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            else:
                ax.imshow(picture, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title("original" if column == 0 else f"jitter {column}", fontsize=10)
            if column == 0:
                ax.set_ylabel(name, fontsize=9)
    figure.suptitle(title or f"jitter preview: {height}x{width}x{channels}, {len(indices)} images", fontsize=11)
    figure.tight_layout()
    save_figure(figure, path)
    return path


# --- the command -----------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = ArgumentParser(description="Pictures of a run: training curves, or a preview of the jitter augmentation.")
    commands = p.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    curves = commands.add_parser("curves", help="loss and accuracy per epoch of a run -> RUN_DIR/curves.png")
    curves.add_argument("--read_from", required=True, help="run folder written by train.py")
    curves.add_argument("--save_to", help="PNG to write (default: RUN_DIR/curves.png)")
    jitter = commands.add_parser("jitter", help="training images before and after the augmentation pipeline")
    jitter.add_argument("--read_from", help="a run folder: its data, format, input size, channels and seed, where "
                                            "the flags below do not say otherwise")
    config.add_flags(jitter, "plots")
    jitter.add_argument("--count", type=positive_int, default=8, help="images, one per row (default: %(default)s)")
    jitter.add_argument("--versions", type=positive_int, default=3,
                        help="jittered versions of each image (default: %(default)s)")
    jitter.add_argument("--save_to", default="jitter_preview.png", help="PNG to write (default: %(default)s)")
    jitter.add_argument("--overwrite", action="store_true", help="replace an existing --save_to")
    return p.parse_args(argv)


@reports_user_errors
def main(argv=None):
    args = parse_args(argv)
    if args.command == "curves":
        if not storage.isdir(args.read_from):
            raise UserError(f"no such run folder: {args.read_from}")
        path = training_curves(args.read_from, args.save_to)
        if path is None:
            raise UserError(f"{args.read_from} has no {HISTORY} with a finished epoch yet")
        print(f"wrote {path}")
        return
    if storage.exists(args.save_to) and not args.overwrite:
        raise UserError(f"{args.save_to} already exists; pass --overwrite to replace it")
    from reader import DataReader

    given = config.given(args, "plots")
    if args.read_from and args.data:
        given.setdefault("data_format", "auto")  # the format of the data given, not of the run's
    settings = config.read(args.read_from).replace(**given) if args.read_from else config.RunConfig(**given)
    doodles.write_if_default(settings.data)
    size, channels = settings.input_size, settings.channels
    kind = settings.jitter_kind if settings.jitter_kind == "crops" else "drawing" if channels == 1 else "photo"
    title = (f"jitter preview ({kind} augmenter): {size[0]}x{size[1]}x{channels}, "
             f"{os.path.basename(os.path.normpath(settings.data[0]))}")
    path = jitter_preview(DataReader(settings.data, settings.data_format), args.save_to, size, channels, args.count,
                          args.versions, settings.seed, settings.jitter_kind, title)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
