"""Check a data source before training on it: labels that look wrong, copies, odd images, class balance.

    python doctor.py --data photos/ --save_to doctor_report
    python train.py --data photos/ --exclude doctor_report/label_issues.csv ...    # after looking at the report

Reads whatever train.py reads, with the same data and split flags, and never changes the data: it writes to
--save_to label_issues.csv (`path,given_label,suggested_label,score`, most suspicious first), label_issues.png (those
suspects, "given -> suggested" under each), duplicates.csv (`path,duplicate_of,kind,same_class,crosses_split`, then
the split of each copy) and odd_images.csv (`path,issue,value`), and prints one line per kind of finding.

- label issues: a logistic probe, fitted k-fold on each item's features, gives every item class probabilities from
  a probe that never saw it; the items whose given label it believes least come first (support/label_probe.py).
  Photos are probed on pretrained EfficientNet-Lite0 features (cached in --save_to, so a second run takes seconds),
  1-channel drawings on their pixels (support/features.py).
- duplicates: the same bytes, the same pixels, the same picture resized or re-encoded, another shot of the same
  thing; within a class, across classes (a contradiction), and across the train/validation split, which inflates
  validation accuracy (support/duplicates.py). train.py --split_groups duplicates.csv keeps each group together.
- odd images: unreadable, tiny, blank, very dark or bright, blurry (support/image_checks.py).
"""
import os

if __name__ == "__main__":
    # One BLAS thread for the probe's small matrix products, before anything loads NumPy's OpenBLAS: on 2 busy cores
    # (load 7) its two spinning threads took 32 s to fit the 5-fold probe on 1,627 photos, one thread 4 s.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from support import startup

    startup.setup()  # first: before anything imports TensorFlow (support/startup.py)

# The imports below load TensorFlow (through Keras), so they come after the start-up call.
import time

import numpy as np

import config
from datagen import in_train_split, open_run_data
from reader import TOO_LARGE, UNREADABLE
from support import contact_sheet, duplicates, image_checks, label_probe, storage
from support.curation import item_names
from support.errors import ArgumentParser, UserError, first_of, positive_int, reports_user_errors
from support.features import PixelFeatures, content_hash, features_of

LABEL_ISSUES, SHEET = "label_issues.csv", "label_issues.png"
DUPLICATES, ODD_IMAGES = "duplicates.csv", "odd_images.csv"


def parse_args(argv=None):
    p = ArgumentParser(description="Check a data source for labels that look wrong, copies and odd images; "
                                   "writes a report folder and changes nothing in the data.")
    config.add_flags(p, "doctor")
    p.add_argument("--save_to", default="doctor_report", help="report folder to write (default: %(default)s)")
    p.add_argument("--label_issues", type=positive_int,
                   help="how many suspects label_issues.csv lists, most suspicious first (default: as many as the "
                        "probe estimates are mislabeled)")
    p.add_argument("--sheet_size", type=positive_int, default=24,
                   help="suspects shown on label_issues.png (default: %(default)s)")
    return p.parse_args(argv)


def settings_from(args):
    """The data and split flags over the declared defaults, as a run's configuration holds them."""
    settings = config.RunConfig(**config.given(args, "doctor"))
    if settings.data == [config.SAMPLE_DATA] and not os.path.isdir(config.SAMPLE_DATA):
        raise UserError(f"no --data given, and the default, the doodle sample in {config.SAMPLE_DATA}, is not there "
                        f"yet (train.py writes it): name the data to check with --data")
    return settings


class PretrainedFeatures:
    """EfficientNet-Lite0 on ImageNet weights (read offline), cut before the Dropout and Dense head train.py puts on
    it: `model(images)` -> (N, 1280) pooled features. The photo recipe's base, at its 224×224."""

    channels = 3
    cached = True

    def __init__(self, input_size=(224, 224)):
        import keras

        from models.pretrained_head import HEAD

        self.input_size = tuple(input_size)
        self.name = f"efficientnet_lite0-imagenet-{input_size[0]}x{input_size[1]}"
        model = config.MODELS["efficientnet_lite"].construct((*self.input_size, 3), 2, weights="imagenet")
        self.model = keras.Model(model.inputs, model.get_layer(HEAD).input)

    def __call__(self, images):
        return np.asarray(self.model.predict_on_batch(images.astype(np.float32)), dtype=np.float32)


def check_report_folder(save_to, readers):
    """The report goes outside every data folder (the data is never changed) and into a folder, not onto a file."""
    if storage.isfile(save_to):
        raise UserError(f"--save_to {save_to} is a file; give a folder for the report")
    if storage.is_url(save_to):
        return
    report = os.path.realpath(save_to)
    for path in (p for reader in readers for p in reader.paths):
        folder = os.path.realpath(path if os.path.isdir(path) else os.path.dirname(path))
        if report == folder or report.startswith(folder + os.sep):
            raise UserError(f"--save_to {save_to} is inside the data folder {path}; the doctor changes nothing "
                            f"there: give a folder outside it")


class Survey:
    """Every item of the data, less what --exclude leaves out: its name, label, split, content keys and pixel
    measures, read once; the unreadable ones apart."""

    def __init__(self, readers, settings):
        self.readers, self.refs, self.unreadable = readers, [], []
        self.names, self.labels, self.splits = [], [], []
        self.bytes_keys, self.pixel_keys, self.thumbnails, self.measures, self.channels = [], [], [], [], []
        for r, reader in enumerate(readers):
            if r == 0 and len(readers) == 1:
                split = np.where(in_train_split(reader.id_keys, settings.seed, settings.train_ratio), "train", "val")
            else:  # --val_data validates and all of --data trains
                split = np.full(len(reader), "train" if r == 0 else "val")
            self.unreadable += [(path, "" if reason == UNREADABLE else reason)
                                for _, reason, path in getattr(reader.source, "skipped", ())
                                if reason in (UNREADABLE, TOO_LARGE)]
            names = item_names(reader)
            for i in np.flatnonzero(~reader.left_out):
                try:
                    data, image = reader.encoded(i), reader.load(i)
                except UserError as error:  # a damaged record or image: an odd image, not the end of the check
                    self.unreadable.append((names[i], str(error)))
                    continue
                self.refs.append((r, i))
                self.names.append(names[i])
                self.labels.append(int(reader.labels[i]))
                self.splits.append(str(split[i]))
                self.bytes_keys.append(content_hash(data))
                self.pixel_keys.append(content_hash(np.ascontiguousarray(image).tobytes() + str(image.shape).encode()))
                self.thumbnails.append(duplicates.thumbnail(image))
                self.measures.append(image_checks.measure(image))
                self.channels.append(image.shape[2])
        self.labels = np.array(self.labels, dtype=np.int64)

    def load(self, ref):
        return self.readers[ref[0]].load(ref[1])

    def photos(self):
        """Whether most items are photos (3 channels), which get pretrained features, or drawings (1)."""
        return np.mean(np.array(self.channels) == 3) >= 0.5


def label_issues(survey, features, class_names, seed, count=None):
    """[(position, given, suggested, score)]: the `count` most suspicious (default: the probe's cut), first first."""
    labeled = np.flatnonzero(survey.labels >= 0)
    if len(np.unique(survey.labels[labeled])) < 2:
        return []
    probabilities = label_probe.out_of_fold(features[labeled], survey.labels[labeled], len(class_names), seed=seed)
    given = survey.labels[labeled]
    scores = label_probe.scores(probabilities, given)
    suggested = label_probe.suggested(probabilities, given)
    flagged = np.flatnonzero(label_probe.flagged(probabilities, given, count))
    flagged = flagged[np.argsort(-scores[flagged], kind="stable")]
    return [(int(labeled[n]), class_names[given[n]], class_names[suggested[n]], float(scores[n])) for n in flagged]


def write_report(save_to, survey, issues, copies, odd, class_names, sheet_size):
    """The three CSVs and the contact sheet, each written whole under a temporary name."""
    names, labels, splits = survey.names, survey.labels, survey.splits
    storage.write_csv(os.path.join(save_to, LABEL_ISSUES), [["path", "given_label", "suggested_label", "score"]] + [
        [names[n], given, suggested, f"{score:.4f}"] for n, given, suggested, score in issues])
    storage.write_csv(os.path.join(save_to, DUPLICATES), [
        ["path", "duplicate_of", "kind", "same_class", "crosses_split", "split", "duplicate_of_split"]] + [
        [names[m], names[f], kind, yes_no(labels[m] == labels[f]), yes_no(splits[m] != splits[f]), splits[m],
         splits[f]] for m, f, kind in copies])
    storage.write_csv(os.path.join(save_to, ODD_IMAGES), [["path", "issue", "value"]] + odd)
    shown = issues[:sheet_size]
    storage.write(os.path.join(save_to, SHEET), contact_sheet.render(
        [survey.load(survey.refs[n]) for n, *_ in shown],
        [[f"{given} -> {suggested} ({score:.2f})", names[n]] for n, given, suggested, score in shown]))


def yes_no(flag):
    return "yes" if flag else "no"


def count_line(counts):
    return ", ".join(f"{count} {name}" for name, count in counts.items())


def balance_line(survey, class_names):
    counts = np.bincount(survey.labels[survey.labels >= 0], minlength=len(class_names))
    small, large = int(np.argmin(counts)), int(np.argmax(counts))
    if counts[small] == counts[large]:
        return f"class balance: {len(class_names)} classes of {counts[small]:,} items each"
    return (f"class balance: {len(class_names)} classes, {counts[small]:,} ({class_names[small]}) to "
            f"{counts[large]:,} ({class_names[large]}) items; the smallest class is "
            f"{100 * counts[small] / max(counts.sum(), 1):.1f} % of {counts.sum():,}")


@reports_user_errors
def main(argv=None, feature_model=None):
    """Check the data as the command line says; `feature_model` replaces the default features (tests)."""
    start = time.perf_counter()
    args = parse_args(argv)
    settings = settings_from(args)
    train_reader, val_reader = open_run_data(settings)
    readers = [train_reader] + ([val_reader] if val_reader is not None else [])
    class_names = train_reader.class_names
    if len(class_names) < 2:
        raise UserError(f"{', '.join(settings.data)} has one class ({class_names[0]}); the doctor compares "
                        f"classes: give data with two or more class folders")
    check_report_folder(args.save_to, readers)

    survey = Survey(readers, settings)
    if not survey.refs:
        raise UserError(f"no readable items in {', '.join(settings.data)}")
    if feature_model is None:
        feature_model = PretrainedFeatures() if survey.photos() else PixelFeatures()
    feature_start = time.perf_counter()
    features, computed = features_of(survey.refs, survey.bytes_keys, survey.load, feature_model, args.save_to)
    print(f"features: {feature_model.name} of {len(survey.refs):,} items, {computed:,} computed, the rest from "
          f"the cache ({time.perf_counter() - feature_start:.1f} s)")

    issues = label_issues(survey, features, class_names, settings.seed, args.label_issues)
    copies = duplicates.find(survey.bytes_keys, survey.pixel_keys, survey.thumbnails, features)
    odd = [[name, UNREADABLE, why] for name, why in survey.unreadable] + [
        [survey.names[n], issue, value] for n, issue, value in image_checks.issues(survey.measures)]
    write_report(args.save_to, survey, issues, copies, odd, class_names, args.sheet_size)

    folder = args.save_to
    print(f"label issues: {len(issues):,} of {int((survey.labels >= 0).sum()):,} labels look wrong"
          + (f"; first {survey.names[issues[0][0]]} ({issues[0][1]} -> {issues[0][2]}, {issues[0][3]:.2f})"
             if issues else "") + f": {os.path.join(folder, LABEL_ISSUES)}, {os.path.join(folder, SHEET)}")
    kinds = {kind: sum(k == kind for *_, k in copies) for kind in duplicates.KINDS}
    labels, splits = survey.labels, survey.splits
    print(f"duplicates: {len(copies):,} copies ({count_line(kinds)}); "
          f"{sum(labels[m] != labels[f] for m, f, _ in copies):,} across classes, "
          f"{sum(splits[m] != splits[f] for m, f, _ in copies):,} across the train/validation split: "
          f"{os.path.join(folder, DUPLICATES)}")
    odd_kinds = {kind: sum(row[1] == kind for row in odd) for kind in
                 (UNREADABLE, "tiny", "blank", "dark", "bright", "blurry")}
    print(f"odd images: {count_line(odd_kinds)}: {os.path.join(folder, ODD_IMAGES)}"
          + (f" (unreadable: {first_of([name for name, _ in survey.unreadable], 3)})" if survey.unreadable else ""))
    print(balance_line(survey, class_names))
    print(f"checked {len(survey.refs):,} items in {time.perf_counter() - start:.1f} s; report: {folder}")


if __name__ == "__main__":
    main()
