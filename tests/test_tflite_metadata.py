import io
import zipfile

import keras
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as model_fb
from ai_edge_litert.interpreter import Interpreter

import deploy
from conftest import write_npy
from datagen import ImageGenerator
from reader import DataReader
from support import tflite_metadata

metadata_fb = tflite_metadata.metadata_fb  # the schema module tflite_metadata writes with

CLASSES = {1: ["apple", "bicycle", "cat"], 3: ["cat", "dog"]}
SIZE = (12, 10)  # height, width: unequal, so a swapped width and height would show
ABOUT = dict(name="tiny", version="7", description="a tiny test classifier")


def tiny_model(channels, classes):
    """The same weights whatever ran before: with unlucky random ones every ReLU output is 0 on the calibration
    images, and LiteRT's XNNPACK refuses the zero range that quantization gives such a tensor."""
    inputs = keras.Input((*SIZE, channels))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(seed=1),
                            bias_initializer=keras.initializers.Constant(0.1))(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(classes, activation="softmax", kernel_initializer=keras.initializers.GlorotUniform(seed=2))
    return keras.Model(inputs, dense(x))


@pytest.fixture(scope="module", params=sorted(CLASSES), ids=lambda c: f"{c}-channel")
def int8_model(request, tmp_path_factory):
    """(full-int8 model bytes without metadata, channels) for a tiny model calibrated on tiny drawings."""
    channels = request.param
    reader = DataReader(write_npy(str(tmp_path_factory.mktemp("npy")), {"a": 10, "b": 10}))
    calibration = ImageGenerator(reader, SIZE, channels, limit=8)
    return deploy.to_int8_tflite(tiny_model(channels, len(CLASSES[channels])), calibration), channels


def with_metadata(model, channels, **changes):
    return tflite_metadata.write(model, **{**ABOUT, "class_names": CLASSES[channels], **changes})


def raw_outputs(model, images):
    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    outputs = []
    for image in images:
        interpreter.set_tensor(source["index"], image[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(target["index"]).copy())
    return np.stack(outputs), (source["quantization"], target["quantization"])


def metadata_entries(model):
    parsed = model_fb.Model.GetRootAs(model, 0)
    return [parsed.Metadata(i).Name() for i in range(parsed.MetadataLength())]


def test_the_metadata_reads_back_with_the_models_image_and_labels(int8_model):
    model, channels = int8_model
    assert tflite_metadata.read(model) is None and tflite_metadata.class_names(model) is None
    written = with_metadata(model, channels)
    metadata = tflite_metadata.read(written)
    assert {key: metadata[key] for key in ABOUT} == ABOUT
    assert metadata["min_parser_version"] == "1.0.0"
    assert metadata["input"] == {"name": "image", "description": f"10x12 {'RGB' if channels == 3 else 'GRAYSCALE'} "
                                                                 f"image, raw 0-255 pixel values",
                                 "color_space": "RGB" if channels == 3 else "GRAYSCALE",
                                 "width": 10, "height": 12, "range": [0.0, 255.0]}
    assert metadata["output"]["range"] == [0.0, 1.0] and metadata["output"]["labels_file"] == "labels.txt"
    assert metadata["class_names"] == tflite_metadata.class_names(written) == CLASSES[channels]


def test_the_schema_sees_an_image_input_and_a_labelled_probability_output(int8_model):
    """Read with the generated schema alone, as MediaPipe's C++ reader walks it, not through read()."""
    model, channels = int8_model
    written = model_fb.Model.GetRootAs(with_metadata(model, channels), 0)
    entry = next(written.Metadata(i) for i in range(written.MetadataLength())
                 if written.Metadata(i).Name() == b"TFLITE_METADATA")
    data = written.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    assert metadata_fb.ModelMetadata.ModelMetadataBufferHasIdentifier(data, 0)
    graph = metadata_fb.ModelMetadata.GetRootAs(data, 0).SubgraphMetadata(0)
    image, probabilities = graph.InputTensorMetadata(0), graph.OutputTensorMetadata(0)
    assert image.Content().ContentPropertiesType() == metadata_fb.ContentProperties.ImageProperties
    assert image.ProcessUnitsLength() == 0  # no normalisation: a uint8 input takes the pixels as they are
    assert probabilities.Content().ContentPropertiesType() == metadata_fb.ContentProperties.FeatureProperties
    labels = probabilities.AssociatedFiles(0)
    assert (labels.Name(), labels.Type()) == (b"labels.txt", metadata_fb.AssociatedFileType.TENSOR_AXIS_LABELS)


def test_writing_changes_no_output_of_the_model(int8_model):
    model, channels = int8_model
    images = np.random.default_rng(0).integers(0, 256, size=(6, *SIZE, channels), dtype=np.uint8)
    images = np.concatenate([images, np.zeros_like(images[:1]), np.full_like(images[:1], 255)])
    before, quantization_before = raw_outputs(model, images)
    after, quantization_after = raw_outputs(with_metadata(model, channels), images)
    assert np.array_equal(before, after) and quantization_before == quantization_after
    assert len({output.tobytes() for output in before}) > 1, "inputs that all give one answer would prove nothing"


def test_the_written_model_is_a_zip_holding_the_labels(int8_model):
    model, channels = int8_model
    with zipfile.ZipFile(io.BytesIO(with_metadata(model, channels))) as files:
        assert files.namelist() == ["labels.txt"]
        assert files.read("labels.txt").decode() == "".join(f"{name}\n" for name in CLASSES[channels])
        assert files.getinfo("labels.txt").compress_type == zipfile.ZIP_STORED  # MediaPipe reads only stored files


def test_writing_again_replaces_the_metadata_and_labels(int8_model):
    model, channels = int8_model
    renamed = [f"class {i}" for i in range(len(CLASSES[channels]))]
    again = with_metadata(with_metadata(model, channels), channels, name="second", class_names=renamed)
    assert again == with_metadata(model, channels, name="second", class_names=renamed)
    assert tflite_metadata.read(again)["name"] == "second" and tflite_metadata.class_names(again) == renamed
    assert metadata_entries(again) == metadata_entries(model) + [b"TFLITE_METADATA"]  # the converter's are kept


@pytest.mark.parametrize("bad, message", [
    (b"", "not a TFLite model"),
    (b"not a model at all", "not a TFLite model"),
    (b"\x18\x00\x00\x00TFL3" + b"\xff" * 40, "not a readable TFLite model"),
])
def test_what_is_not_a_tflite_model_is_a_one_line_value_error(bad, message):
    for call in (lambda: tflite_metadata.read(bad), lambda: tflite_metadata.write(bad, **ABOUT, class_names=["a"])):
        with pytest.raises(ValueError, match=message) as error:
            call()
        assert "\n" not in str(error.value)


@pytest.mark.parametrize("names, message", [
    (["only one"], "1 class names for a model with"),
    (["a", "b", "c", "d"], "4 class names for a model with"),
])
def test_class_names_that_do_not_fit_the_output_are_a_one_line_value_error(int8_model, names, message):
    model, _ = int8_model
    with pytest.raises(ValueError, match=message) as error:
        tflite_metadata.write(model, **ABOUT, class_names=names)
    assert "\n" not in str(error.value)


def test_a_class_name_that_would_break_the_label_file_is_a_value_error(int8_model):
    model, channels = int8_model
    names = ["two\nlines"] + CLASSES[channels][1:]
    with pytest.raises(ValueError, match="cannot be a line of labels.txt"):
        tflite_metadata.write(model, **ABOUT, class_names=names)
