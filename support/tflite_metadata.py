"""TFLite Model Metadata inside a .tflite: what MediaPipe Tasks and the TFLite Task Library read to name classes.

    model = tflite_metadata.write(model, name="cats_vs_dogs", version="1", description="...",
                                  class_names=["cat", "dog"])
    tflite_metadata.class_names(model)  # ["cat", "dog"]

The layout is the one TFLite Support's MetadataPopulator writes: a ModelMetadata flatbuffer (file identifier
"M001") in a buffer of its own, named by a "TFLITE_METADATA" entry of the model's metadata table, and the
associated files (here labels.txt) in a zip archive appended after the model flatbuffer, so the .tflite is also a
valid zip. The model is repacked with its graph, weights and quantization as they were and only the metadata entry
and its buffer new, so it answers exactly as before.

Schemas: the model's is ai-edge-litert's (`ai_edge_litert.schema_py_generated`, with its `flatbuffer_utils` to read
and repack a model); the metadata's is the published one, generated, in third_party/ (its README says why a copy).

MediaPipe's and the Task Library's ImageClassifier both read the metadata of a 3-channel model (category names from
labels.txt); both refuse a 1-channel model, whose GRAYSCALE metadata still names its classes for everything else.
"""
import io
import zipfile

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as model_fb
from ai_edge_litert.tools import flatbuffer_utils

from support.errors import first_line
from support.labels import LABELS
from support.third_party import metadata_schema_py_generated as metadata_fb

METADATA_NAME = b"TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
# What MetadataPopulator's GetMinimumMetadataParserVersion answers for the fields written here: every field that
# raises it (process units, tensor groups, vocabulary or ScaNN files, file versions, custom metadata) is unused.
MIN_PARSER_VERSION = "1.0.0"
COLOR_SPACES = {1: metadata_fb.ColorSpaceType.GRAYSCALE, 3: metadata_fb.ColorSpaceType.RGB}
COLOR_SPACE_NAMES = {value: name for name, value in vars(metadata_fb.ColorSpaceType).items()
                     if not name.startswith("_")}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # a fixed date: the same model and metadata give the same bytes
PIXEL_RANGE, PROBABILITY_RANGE = (0.0, 255.0), (0.0, 1.0)


def _model(model_bytes):
    """The model as flatbuffer objects; anything that is not a TFLite flatbuffer is a ValueError."""
    model_bytes = bytes(model_bytes)
    if len(model_bytes) < 8 or not model_fb.Model.ModelBufferHasIdentifier(model_bytes, 0):
        raise ValueError("not a TFLite model (no TFL3 file identifier)")
    try:
        model = flatbuffer_utils.read_model_from_bytearray(model_bytes)
    except Exception as error:  # the flatbuffers runtime has no verifier: a damaged file fails in many ways
        raise ValueError(f"not a readable TFLite model ({type(error).__name__}: {first_line(error)})") from error
    if len(model.subgraphs or []) != 1:
        raise ValueError(f"the model has {len(model.subgraphs or [])} subgraphs; metadata here describes one")
    return model


def _classifier_tensors(model):
    """(input, output) of a one-image-in, one-probability-vector-out model."""
    graph = model.subgraphs[0]
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ValueError(f"the model has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; "
                         f"a classifier has one of each")
    return graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]


def _stats(low, high):
    stats = metadata_fb.StatsT()
    stats.min, stats.max = [low], [high]
    return stats


def _content(kind, properties):
    content = metadata_fb.ContentT()
    content.contentPropertiesType, content.contentProperties = kind, properties
    return content


def _image_metadata(tensor):
    """The input as an image: colour space and size from the tensor; raw 0-255 pixels, no normalisation,
    because the model normalises inside itself (MediaPipe feeds a uint8 input the pixels as they are)."""
    shape = [int(d) for d in tensor.shape]
    if len(shape) != 4 or shape[0] != 1 or shape[3] not in COLOR_SPACES:
        raise ValueError(f"input shape {shape} is not one image [1, height, width, 1 or 3 channels]")
    if tensor.type != model_fb.TensorType.UINT8:
        raise ValueError(f"input type is {flatbuffer_utils.type_to_name(tensor.type)}, not UINT8: image metadata "
                         f"here describes the full-integer model (raw 0-255 pixels, no normalisation)")
    _, height, width, channels = shape
    size = metadata_fb.ImageSizeT()
    size.width, size.height = width, height
    image = metadata_fb.ImagePropertiesT()
    image.colorSpace, image.defaultSize = COLOR_SPACES[channels], size
    metadata = metadata_fb.TensorMetadataT()
    metadata.name = "image"
    metadata.description = (f"{width}x{height} {COLOR_SPACE_NAMES[COLOR_SPACES[channels]]} image, "
                            f"raw 0-255 pixel values")
    metadata.content = _content(metadata_fb.ContentProperties.ImageProperties, image)
    metadata.stats = _stats(*PIXEL_RANGE)
    return metadata


def _probabilities_metadata(tensor, class_names):
    """The output as class probabilities, named by the packed labels file (one class a line, index order)."""
    classes = int(tensor.shape[-1])
    if len(class_names) != classes:
        raise ValueError(f"{len(class_names)} class names for a model with {classes} outputs")
    bad = next((name for name in class_names if not name or "\n" in name or "\r" in name), None)
    if bad is not None:
        raise ValueError(f"class name {bad!r} cannot be a line of {LABELS}")
    labels = metadata_fb.AssociatedFileT()
    labels.name, labels.type = LABELS, metadata_fb.AssociatedFileType.TENSOR_AXIS_LABELS
    labels.description = "Class names, one a line, in the order of the output's probabilities."
    metadata = metadata_fb.TensorMetadataT()
    metadata.name = "probability"
    metadata.description = f"Probabilities of the {classes} classes."
    metadata.content = _content(metadata_fb.ContentProperties.FeatureProperties, metadata_fb.FeaturePropertiesT())
    metadata.stats = _stats(*PROBABILITY_RANGE)
    metadata.associatedFiles = [labels]
    return metadata


def _metadata_bytes(model, name, version, description, class_names):
    image, probabilities = _classifier_tensors(model)
    graph = metadata_fb.SubGraphMetadataT()
    graph.inputTensorMetadata = [_image_metadata(image)]
    graph.outputTensorMetadata = [_probabilities_metadata(probabilities, class_names)]
    metadata = metadata_fb.ModelMetadataT()
    metadata.name, metadata.version, metadata.description = name, version, description
    metadata.subgraphMetadata, metadata.minParserVersion = [graph], MIN_PARSER_VERSION
    builder = flatbuffers.Builder(0)
    builder.Finish(metadata.Pack(builder), METADATA_IDENTIFIER)
    return bytes(builder.Output())


def _metadata_entry(model):
    return next((entry for entry in model.metadata or [] if bytes(entry.name) == METADATA_NAME), None)


def write(model_bytes, *, name, version, description, class_names):
    """The model with this metadata and its labels.txt packed in; any metadata it had is replaced.

    The input's colour space and size come from the model's input tensor (uint8 [1, H, W, 1 or 3]); class_names
    must match the output's size. Bad input is a ValueError.
    """
    model = _model(model_bytes)
    class_names = [str(c) for c in class_names]
    buffer = model_fb.BufferT()
    buffer.data = np.frombuffer(_metadata_bytes(model, name, version, description, class_names), np.uint8)
    entry = _metadata_entry(model)
    if entry is None:
        entry = model_fb.MetadataT()
        entry.name, entry.buffer = METADATA_NAME, 0
        model.metadata = (model.metadata or []) + [entry]
    if entry.buffer:  # metadata written before: its buffer is replaced
        model.buffers[entry.buffer] = buffer
    else:  # buffer 0 is the empty one that every tensor without data shares
        model.buffers.append(buffer)
        entry.buffer = len(model.buffers) - 1
    archive = io.BytesIO(flatbuffer_utils.convert_object_to_bytearray(model))  # repacked: any old zip is gone
    with zipfile.ZipFile(archive, "a") as files:  # appended after the flatbuffer, stored uncompressed
        labels = zipfile.ZipInfo(LABELS, date_time=ZIP_DATE)
        files.writestr(labels, "".join(f"{c}\n" for c in class_names))
    return archive.getvalue()


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _range(stats):
    if stats is None or stats.min is None or stats.max is None:
        return None
    return [float(stats.min[0]), float(stats.max[0])]


def _packed_lines(model_bytes, file_name):
    try:
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as files:
            return files.read(file_name).decode("utf-8").splitlines()
    except (zipfile.BadZipFile, KeyError) as error:
        raise ValueError(f"the metadata names {file_name} but the model does not pack it") from error


def _labels_file(tensor):
    return next((_text(f.name) for f in tensor.associatedFiles or []
                 if f.type == metadata_fb.AssociatedFileType.TENSOR_AXIS_LABELS), None)


def _input_description(tensor):
    description = {"name": _text(tensor.name), "description": _text(tensor.description),
                   "range": _range(tensor.stats)}
    properties = tensor.content.contentProperties if tensor.content else None
    if isinstance(properties, metadata_fb.ImagePropertiesT):
        size = properties.defaultSize
        description.update(color_space=COLOR_SPACE_NAMES.get(properties.colorSpace),
                           width=size.width if size else None, height=size.height if size else None)
    return description


def read(model_bytes):
    """The model's metadata as a dict (name, version, description, min_parser_version, input, output,
    class_names from the packed labels file), or None when it has none. Not a TFLite model: ValueError."""
    model_bytes = bytes(model_bytes)
    model = _model(model_bytes)
    entry = _metadata_entry(model)
    if entry is None:
        return None
    data = model.buffers[entry.buffer].data
    data = b"" if data is None else bytes(data)
    if len(data) < 8 or not metadata_fb.ModelMetadata.ModelMetadataBufferHasIdentifier(data, 0):
        raise ValueError("the model's TFLITE_METADATA buffer is not a ModelMetadata flatbuffer (no M001)")
    metadata = metadata_fb.ModelMetadataT.InitFromObj(metadata_fb.ModelMetadata.GetRootAs(data, 0))
    graph = metadata.subgraphMetadata[0]
    output = graph.outputTensorMetadata[0]
    labels_file = _labels_file(output)
    return {
        "name": _text(metadata.name), "version": _text(metadata.version),
        "description": _text(metadata.description), "min_parser_version": _text(metadata.minParserVersion),
        "input": _input_description(graph.inputTensorMetadata[0]),
        "output": {"name": _text(output.name), "description": _text(output.description),
                   "range": _range(output.stats), "labels_file": labels_file},
        "class_names": _packed_lines(model_bytes, labels_file) if labels_file else None,
    }


def class_names(model_bytes):
    """The class names packed in the model, or None when it has no metadata or no label file."""
    metadata = read(model_bytes)
    return metadata["class_names"] if metadata else None
