"""Run any saved classifier the same way: Keras (.keras / .h5) or LiteRT (.tflite, int8 or float); and find it.

evaluate.py, predict.py, deploy.py's report and the benchmarks all compare artifacts of one model; they can only
do that fairly if every artifact takes the same input and gives the same output. Here every classifier takes
float32 images (N, H, W, C) of raw 0-255 pixel values, exactly what the Keras model takes (it normalises inside
itself), and returns float32 class probabilities (N, num_classes). The int8 model's quantization is applied and
undone here, with the scale and zero point stored in the model, so no caller has to know about it.

Which file of a run or deploy folder is its model, and where its class names come from, is decided here too, for
predict, evaluate, deploy, serve and --from_ckpt alike.
"""
import json
import os
import time

import numpy as np
from tqdm import tqdm

from support import console, folders, storage, tflite_metadata
from support.errors import UserError, first_line
from support.folders import BEST_MODEL, CONFIG, INT8_MODEL
from support.labels import LABELS, labels_from_text

KERAS_SUFFIXES = (".keras", ".h5")
TFLITE_SUFFIXES = (".tflite",)
ACCEPTED = "accepted: .keras or .h5 (Keras), .tflite (LiteRT)"


class Classifier:
    """What every loaded classifier offers: input_shape (H, W, C), num_classes, kind, path, predict(images)."""

    kind = None

    def __init__(self, path, input_shape, num_classes):
        self.path = str(path)
        if any(d is None or d < 1 for d in input_shape):
            raise UserError(f"{path} has no fixed input size (input shape {tuple(input_shape)}); "
                            f"save the model with a fixed input shape (H, W, C)")
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)

    def check_images(self, images):
        """Images as float32 (N, H, W, C); a wrong shape is the user's data not fitting the model: UserError."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or tuple(images.shape[1:]) != self.input_shape:
            raise UserError(f"images have shape {tuple(images.shape)} but {self.path} takes "
                            f"(N, {', '.join(map(str, self.input_shape))})")
        return images

    def predict(self, images):
        """Class probabilities, float32 (N, num_classes), for float32 images (N, H, W, C) of 0-255 pixels."""
        raise NotImplementedError

    def __repr__(self):
        return (f"{type(self).__name__}({self.path!r}, input_shape={self.input_shape}, "
                f"num_classes={self.num_classes})")


class KerasClassifier(Classifier):
    """A Keras model, run in batches through its compiled predict step (no progress bar)."""

    kind = "keras"

    def __init__(self, path, model, batch_size=64):
        super().__init__(path, model.input_shape[1:], model.output_shape[-1])
        self.model = model
        self.batch_size = batch_size

    def predict(self, images):
        images = self.check_images(images)
        if len(images) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        batches = [np.asarray(self.model.predict_on_batch(images[i:i + self.batch_size]))
                   for i in range(0, len(images), self.batch_size)]
        return np.concatenate(batches).astype(np.float32)


def _quantize(images, dtype, scale, zero_point):
    """Float pixels to the input tensor's integer type: round(x / scale + zero_point), clipped to the type."""
    info = np.iinfo(dtype)
    return np.clip(np.round(images / scale + zero_point), info.min, info.max).astype(dtype)


class TFLiteClassifier(Classifier):
    """A .tflite model in the LiteRT interpreter, fed one image at a time (deployed models have batch 1)."""

    kind = "tflite"

    def __init__(self, path, interpreter):
        self.interpreter = interpreter
        self._input = interpreter.get_input_details()[0]
        self._output = interpreter.get_output_details()[0]
        shape = list(self._input["shape"])
        if shape[0] != 1:
            interpreter.resize_tensor_input(self._input["index"], [1] + shape[1:])
        interpreter.allocate_tensors()
        self._input = interpreter.get_input_details()[0]
        self._output = interpreter.get_output_details()[0]
        super().__init__(path, self._input["shape"][1:], self._output["shape"][-1])

    def _to_input(self, image):
        """One (1, H, W, C) image in the input tensor's dtype: quantized if the model is, as is if float."""
        dtype = self._input["dtype"]
        scale, zero_point = self._input["quantization"]
        if np.issubdtype(dtype, np.integer) and scale:
            return _quantize(image, dtype, scale, zero_point)
        return image.astype(dtype)

    def _from_output(self, raw):
        scale, zero_point = self._output["quantization"]
        if np.issubdtype(self._output["dtype"], np.integer) and scale:
            return (raw.astype(np.float32) - zero_point) * scale
        return raw.astype(np.float32)

    def predict(self, images):
        images = self.check_images(images)
        out = np.zeros((len(images), self.num_classes), np.float32)
        for i in range(len(images)):
            self.interpreter.set_tensor(self._input["index"], self._to_input(images[i:i + 1]))
            self.interpreter.invoke()
            out[i] = self._from_output(self.interpreter.get_tensor(self._output["index"])).reshape(-1)
        return out


def _load_keras(path):
    import keras

    try:
        with storage.local_file(path) as local:  # Keras reads a full-model .h5 only from a local file
            model = keras.saving.load_model(local, compile=False)
    except Exception as error:  # any failure to load is a bad file from the user's point of view
        raise UserError(f"cannot load {path} as a Keras model ({first_line(error)[:200]}); {ACCEPTED}") from error
    return KerasClassifier(path, model)


def _load_tflite(path):
    from ai_edge_litert.interpreter import Interpreter

    try:
        with console.captured_output():  # LiteRT announces its XNNPACK delegate when it allocates the tensors
            return TFLiteClassifier(path, Interpreter(model_content=storage.read_bytes(path)))
    except (ValueError, RuntimeError) as error:  # not a model, or an op this CPU runtime lacks (an Edge TPU op)
        hint = "; an Edge TPU model runs only with the Edge TPU runtime" if "edgetpu" in str(error).lower() else ""
        raise UserError(f"cannot load {path} as a TFLite model to run here ({first_line(error)[:200]}){hint}; "
                        f"{ACCEPTED}") from error


def top_k(probabilities, k):
    """(classes, probabilities) of the k best guesses per row, best first; ties go to the lower index, so the first
    guess is always argmax."""
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(probabilities, order, axis=1)


def load_classifier(path):
    """A Classifier for a saved model, chosen by the file's suffix; a missing, unknown or broken file: UserError."""
    path = str(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in KERAS_SUFFIXES + TFLITE_SUFFIXES:
        raise UserError(f"unknown model file type {os.path.basename(path)!r}; {ACCEPTED}")
    if not storage.isfile(path):
        raise UserError(f"no such model file: {path}")
    return _load_keras(path) if suffix in KERAS_SUFFIXES else _load_tflite(path)


# --- which model, which class names ------------------------------------------------------------------------

def model_in(folder, model_file=None):
    """The model file to load: by default a run folder's best.keras or a deploy folder's model.tflite; a bare
    `model_file` name (no folder) is looked up in `folder`; a path is taken as it is. A deploy folder that deploy.py
    did not finish is refused."""
    if folder and folders.is_deploy_folder(folder):
        folders.check_complete_deploy_folder(folder)
    if model_file is not None:
        if not folder or os.path.dirname(model_file):
            return model_file
        path = os.path.join(folder, model_file)
        if not storage.isfile(path):
            raise UserError(f"no such model file: {path} (a bare --model_file name is looked up in the run "
                            f"folder; write ./{model_file} for a file in the current folder)")
        return path
    if folders.is_deploy_folder(folder):
        path = os.path.join(folder, INT8_MODEL)
        if not storage.isfile(path):
            models = [f for f in storage.listdir(folder) if f.endswith(KERAS_SUFFIXES + TFLITE_SUFFIXES)]
            raise UserError(f"no {INT8_MODEL} in {folder}; choose one with --model_file "
                            f"(there: {', '.join(models) or 'none'})")
        return path
    path = os.path.join(folder, BEST_MODEL)
    if not storage.isfile(path):
        raise UserError(f"no trained model in {folder}: {BEST_MODEL} is missing (did training finish an epoch?)")
    return path


def image_classifier(path):
    """load_classifier, plus the check that its input is an image with 1 or 3 channels."""
    classifier = load_classifier(path)
    shape = classifier.input_shape
    if len(shape) != 3 or shape[2] not in (1, 3):
        raise UserError(f"{path} takes input of shape {shape}; expected images (H, W, C) with 1 or 3 channels")
    return classifier


def check_class_names(classifier, class_names, where):
    if len(class_names) != classifier.num_classes:
        raise UserError(f"{classifier.path} predicts {classifier.num_classes} classes but {where} names "
                        f"{len(class_names)}")


def check_probabilities(classifier, probabilities, count):
    if probabilities.shape != (count, classifier.num_classes):
        raise UserError(f"{classifier.path} answered with shape {probabilities.shape} for {count} images; "
                        f"expected ({count}, {classifier.num_classes}): it is not an image classifier")


def class_names_beside(path, num_classes):
    """Class names for a bare model file and where they came from: labels.txt beside it, else config.json
    beside it, else the model's own metadata (a .tflite from deploy.py carries it), else 0..K-1 (None: nowhere)."""
    folder = os.path.dirname(storage.absolute(path))
    labels_path = os.path.join(folder, LABELS)
    names = labels_from_text(storage.read_text(labels_path)) if storage.isfile(labels_path) else None
    if names:
        return names, labels_path
    config_path = os.path.join(folder, CONFIG)
    if storage.isfile(config_path):
        try:
            names = json.loads(storage.read_text(config_path)).get("class_names")
        except (ValueError, AttributeError):
            names = None
        if isinstance(names, list) and names:
            return [str(n) for n in names], config_path
    names = packed_class_names(path)
    if names:
        return names, f"{path} (its metadata)"
    return [str(n) for n in range(num_classes)], None


def packed_class_names(path):
    """The class names in a .tflite model's metadata, or None (another kind of file, or no metadata)."""
    if not path.endswith(TFLITE_SUFFIXES):
        return None
    try:
        return tflite_metadata.class_names(storage.read_bytes(path))
    except ValueError as error:  # the model loaded, so its metadata is what is broken
        print(f"note: {path}: its metadata cannot be read ({error}); classes are numbered")
        return None


def latency_ms(classifier, image, repeats=50, warmup=5):
    """Median milliseconds to classify one image (batch 1), after `warmup` untimed runs.

    The median, because single runs on a shared machine have long outliers; one image, because that is how a
    deployed classifier is called. It includes the quantize/dequantize steps, as a user's code would.
    """
    image = np.asarray(image, dtype=np.float32)
    batch = image[None] if image.ndim == 3 else image
    if batch.shape[0] != 1:
        raise UserError(f"latency_ms takes one image (H, W, C), got shape {tuple(image.shape)}")
    for _ in range(warmup):
        classifier.predict(batch)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        classifier.predict(batch)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)


def predict_batches(classifier, batches, desc="predicting"):
    """Probabilities and labels over every batch of a BatchGenerator, with a progress bar."""
    probabilities, labels = [], []
    for index in tqdm(range(len(batches)), desc=desc, unit="batch", disable=None):
        images, batch_labels = batches[index]
        probabilities.append(classifier.predict(images))
        labels.append(batch_labels)
    return np.concatenate(probabilities), np.concatenate(labels)
