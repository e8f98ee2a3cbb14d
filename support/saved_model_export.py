"""A TensorFlow SavedModel of a trained classifier, which TensorFlow Serving and Vertex AI serve as it is.

Those servers hand the model what a client sends, an image file's bytes, and answer with what the graph returns; no
code of this template runs there. So the export carries the image preparation inside its graph, written to give the
very pixels support.images' decode_image and prepare give (Pillow's decoding, its "L"/"RGB" conversion and its
BILINEAR resize). Figures from bench/saved_model_agreement.py on the shared photos (README: "Serving at scale"):

- JPEG is decoded with the accurate integer DCT, as libjpeg does for Pillow: it gives Pillow's pixels exactly.
  TensorFlow's default, the fast DCT, leaves the prepared photos up to 20 levels off.
- An alpha channel (grey or colour with alpha: PNG, a PNG palette's transparency, WebP) is painted over white as
  reader.decode_image paints it, with Pillow's integer rounding. Colour to grey is Pillow's integer formula,
  L = (19595 R + 38470 G + 7471 B + 2^15) >> 16, and grey is repeated into RGB, as Pillow's convert does. An 8-bit
  BMP's palette is applied (TensorFlow's decoder would return its indices as grey).
- Not in the graph (TENSORFLOW_DIFFERS, which deploy_report.json records): an EXIF orientation is not applied
  (TensorFlow reads no EXIF), and a GIF's transparent colour and the transparent grey or colour a PNG may name
  (instead of an alpha channel) are not painted white (TensorFlow's decoders ignore both).
- Pillow's BILINEAR resize widens its triangle filter when it shrinks (antialiasing) and resizes one axis, then
  the other, rounding to uint8 after each pass. tf.image.resize(antialias=True) does the same filtering; in the
  same two rounded passes, in Pillow's order, 99.8-99.97 % of the pixels are Pillow's and the rest one level off.
  In one pass, 83-90 % are; without antialiasing, shrinking photos puts pixels up to 176 levels off.

Layout (what TensorFlow Serving loads from a model's base folder): saved_model/<version>/ with saved_model.pb,
variables/ and assets/labels.txt, the class names the graph answers with. Signatures:

- serving_default: image_bytes, string (N): JPEG, PNG, GIF (first frame), BMP or WebP files ->
  probabilities, float32 (N, classes), and classes, string (N): the top class's name;
- pixels: pixels, uint8 (N, H, W, C), images already at the model's input shape -> the same two outputs.
"""
import os
import tempfile

import numpy as np
import tensorflow as tf

from support.folders import SAVED_MODEL
from support.images import BACKGROUND
from support.labels import LABELS

PIXELS = "pixels"  # the second signature's name and its input's
TENSORFLOW_DIFFERS = ("an EXIF orientation is not applied: a photo the camera stored turned is prepared as stored, "
                      "where reader.decode_image turns it upright",
                      "a GIF's transparent colour, and a grey or colour PNG's transparent colour (a tRNS key, not an "
                      "alpha channel), keep their colour, where reader.decode_image paints them white")
IMAGE_BYTES = "image_bytes"  # serving_default's input: the "_bytes" ending is what Google's prediction services
#                              read as base64 ({"b64": ...}) when an instance names its inputs


def version_folder(deploy_folder, version):
    return os.path.join(deploy_folder, SAVED_MODEL, str(version))


def little_endian(data, offset, size):
    """An unsigned integer of `size` bytes at `offset` in a string tensor (a BMP header field)."""
    digits = tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, size), tf.uint8), tf.int32)
    return tf.reduce_sum(digits * 256 ** tf.range(size))


def with_palette(data, indices):
    """An 8-bit BMP's colours: its palette (blue, green, red, unused per entry) looked up for each index."""
    header = little_endian(data, 14, 4)
    count = little_endian(data, 46, 4)
    count = tf.where(count == 0, 256, count)
    palette = tf.reshape(tf.io.decode_raw(tf.strings.substr(data, 14 + header, 4 * count), tf.uint8), [-1, 4])
    return tf.gather(palette[:, 2::-1], tf.cast(indices[:, :, 0], tf.int32))


def decoded(data):
    """reader.decode_image's pixels, uint8 H×W×C, with C = 1 or 2 (grey, alpha), 3 (RGB) or 4 (RGB, alpha)."""
    image = tf.cond(tf.io.is_jpeg(data), lambda: tf.io.decode_jpeg(data, dct_method="INTEGER_ACCURATE"),
                    lambda: tf.io.decode_image(data, expand_animations=False))
    image = tf.ensure_shape(image, [None, None, None])
    is_palette_bmp = (tf.strings.substr(data, 0, 2) == "BM") & (tf.shape(image)[2] == 1)
    return tf.cond(is_palette_bmp, lambda: with_palette(data, image), lambda: image)


def composited(data, image):
    """Decoded pixels with an alpha channel (C = 2 or 4) painted over BACKGROUND as images.over_background paints
    them with Pillow's paste: (colour × alpha + BACKGROUND × (255 − alpha)) / 255, rounded by Pillow's integer
    division by 255, ((x + 128) + ((x + 128) >> 8)) >> 8. A BMP's fourth channel is not alpha to Pillow (it reads a
    32-bit BMP as RGB), so converted() drops it."""
    count = tf.shape(image)[2]

    def over_background():
        pixels = tf.cast(image, tf.int32)
        alpha = pixels[:, :, -1:]
        blend = pixels[:, :, :-1] * alpha + BACKGROUND * (255 - alpha) + 128
        return tf.cast(tf.bitwise.right_shift(blend + tf.bitwise.right_shift(blend, 8), 8), tf.uint8)

    has_alpha = ((count == 2) | (count == 4)) & (tf.strings.substr(data, 0, 2) != "BM")
    return tf.cond(has_alpha, over_background, lambda: image)


def converted(image, channels):
    """Pillow's convert("L") (channels 1) or convert("RGB") (channels 3) of decoded pixels."""
    count = tf.shape(image)[2]
    if channels == 1:
        def grey():
            red, green, blue = (tf.cast(image[:, :, c], tf.int32) for c in range(3))
            return ((19595 * red + 38470 * green + 7471 * blue + 32768) // 65536)[:, :, None]
        return tf.cond(count >= 3, grey, lambda: tf.cast(image[:, :, :1], tf.int32))
    return tf.cond(count >= 3, lambda: tf.cast(image[:, :, :3], tf.int32),
                   lambda: tf.repeat(tf.cast(image[:, :, :1], tf.int32), 3, axis=2))


def rounded(pixels):
    """Float pixels to 0-255 integers as Pillow rounds them: halves up."""
    return tf.clip_by_value(tf.floor(pixels + 0.5), 0, 255)


def resized(image, input_size):
    """Pillow's BILINEAR resize: two antialiased passes, each rounded. Pillow 13 makes the height's pass first when
    the height loses more than twice the pixels the width loses, otherwise the width's."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    pixels = tf.cast(image, tf.float32)

    def one_pass(x, size):
        return rounded(tf.image.resize(x, size, "bilinear", antialias=True))

    height_first = (height > input_size[0]) & (height - input_size[0] > 2 * (width - input_size[1]))
    return tf.cond(height_first, lambda: one_pass(one_pass(pixels, [input_size[0], width]), input_size),
                   lambda: one_pass(one_pass(pixels, [height, input_size[1]]), input_size))


def prepared(data, input_size, channels):
    """One image file's bytes -> uint8 (H, W, C) at the model's input: support/images.py's
    prepare(decode_image(data))."""
    return tf.cast(resized(converted(composited(data, decoded(data)), channels), input_size), tf.uint8)


def answering(model, class_names):
    """pixels -> {"probabilities", "classes"}: the float Keras model's answer; class_names is a lookup table."""
    def answer(pixels):
        probabilities = tf.cast(model(tf.cast(pixels, tf.float32), training=False), tf.float32)
        return {"probabilities": probabilities, "classes": class_names.lookup(tf.argmax(probabilities, axis=1))}
    return answer


def export(model, class_names, path):
    """Write the SavedModel of a float Keras model and its class names (in index order) to the version folder
    `path`; the names go in as assets/labels.txt, one per line.

    Keras' ExportArchive writes it: it lists the variables the endpoints use in the SavedModel itself, which is what
    lets a session-based loader such as TensorFlow Serving's restore them (a bare tf.Module holding the model loads in
    Python, but a session finds its variables missing)."""
    import keras

    height, width, channels = model.input_shape[1:]
    with tempfile.TemporaryDirectory() as work:
        labels_path = os.path.join(work, LABELS)
        with open(labels_path, "w") as f:
            f.write("".join(f"{name}\n" for name in class_names))
        table = tf.lookup.StaticHashTable(tf.lookup.TextFileInitializer(
            labels_path, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE),
            default_value="")
        answer = answering(model, table)
        archive = keras.export.ExportArchive()
        archive.track(table)  # the endpoints track the variables they use; track(model) would save them twice
        archive.add_endpoint("serving_default", lambda image_bytes: answer(tf.map_fn(
            lambda data: prepared(data, (height, width), channels), image_bytes,
            fn_output_signature=tf.TensorSpec((height, width, channels), tf.uint8))),
            input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_BYTES)])
        archive.add_endpoint(PIXELS, answer, input_signature=[tf.TensorSpec([None, height, width, channels],
                                                                           tf.uint8, name=PIXELS)])
        archive.write_out(path, verbose=False)


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def served(path, images, batch_size=32):
    """serving_default's probabilities (N, classes) for image files' bytes, the export loaded as a server loads it."""
    serve = tf.saved_model.load(path).signatures["serving_default"]
    return np.concatenate([serve(**{IMAGE_BYTES: tf.constant(images[start:start + batch_size])})["probabilities"]
                           .numpy() for start in range(0, len(images), batch_size)])


def agreement(probabilities, expected):
    """How probabilities (N, classes) agree with `expected`, predict.py's for the same images: the top-1 share and the
    largest and mean probability gaps."""
    gaps = np.abs(probabilities - expected)
    return {"images": len(expected), "top1_agreement": float(np.mean(probabilities.argmax(1) == expected.argmax(1))),
            "max_probability_gap": float(gaps.max()), "mean_probability_gap": float(gaps.mean())}
