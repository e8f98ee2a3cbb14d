"""A TF Serving REST :predict body ({"instances": [...]}) -> the model's input batch, every limit checked before
anything is decoded, and RequestError, the refusal serve.py answers as JSON {"error": ...} of fixed text."""
import base64
import binascii
import json

import numpy as np

from support.images import prepare
from support.errors import UserError
from support.images import decode_image, measure


class RequestError(Exception):
    """A refused request: answered as JSON {"error": message} with its 4xx status (and any headers)."""

    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def image_file(instance, where):
    """The bytes of a {"b64": ...} instance's image file."""
    if set(instance) != {"b64"} or not isinstance(instance["b64"], str):
        raise RequestError(400, f'{where}: an object instance must be {{"b64": "<base64 of a JPEG/PNG file>"}}')
    try:
        return base64.b64decode(instance["b64"], validate=True)
    except binascii.Error:
        raise RequestError(400, f"{where}: b64 is not valid base64") from None


def measured_pixels(data, where, max_pixels):
    """Width × height as an image file's header declares them (support.images.measure reads nothing else), refused
    over the limit: a small PNG can expand to gigabytes."""
    try:
        header = measure(data, where)
    except UserError as error:  # its fixed text, naming no library
        raise RequestError(400, str(error)) from None
    if header.width * header.height > max_pixels:
        raise RequestError(413, f"{where}: image of {header.width}×{header.height} pixels is over the limit of "
                                f"{max_pixels} pixels (--max_image_pixels); send a smaller image")
    return header.width * header.height


def image_pixels(data, where, input_shape, max_pixels):
    """A measured image file decoded and prepared exactly as in training, as the model's float32 (H, W, C) input."""
    try:
        image = decode_image(data, where, max_pixels)
    except UserError as error:  # a fixed text: which file, and that its pixels do not decode
        raise RequestError(400, str(error)) from None
    return prepare(image, input_shape[:2], input_shape[2]).astype(np.float32)


def listed_pixels(instance, where, input_shape):
    """A nested list of 0-255 pixels, which must already have the model's input shape, as float32 (H, W, C)."""
    expected = f"a nested list of 0-255 pixels of shape {list(input_shape)} (H, W, C), or {{\"b64\": ...}}"
    try:
        pixels = np.asarray(instance)
    except ValueError:
        raise RequestError(400, f"{where}: pixels are not a rectangular nested list; expected {expected}") from None
    if pixels.dtype.kind not in "iuf":
        raise RequestError(400, f"{where}: pixels must be numbers; expected {expected}")
    if pixels.shape != input_shape:
        raise RequestError(400, f"{where}: pixels of shape {list(pixels.shape)}; expected {expected}")
    if not ((pixels >= 0) & (pixels <= 255)).all():
        raise RequestError(400, f"{where}: pixel values must be in 0-255; expected {expected}")
    return pixels.astype(np.float32)


def request_instances(body, max_instances):
    """The "instances" list of a TF Serving row-format body {"instances": [...]}."""
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as error:
        raise RequestError(400, f"malformed JSON at line {error.lineno}, column {error.colno}") from None
    except ValueError:  # not UTF-8, or an integer of thousands of digits
        raise RequestError(400, "malformed JSON: the body is not JSON text of sensible numbers") from None
    except RecursionError:
        raise RequestError(400, "malformed JSON: nested too deeply") from None
    if not isinstance(payload, dict) or "instances" not in payload:
        raise RequestError(400, 'the body must be a JSON object with "instances": [...]')
    instances = payload["instances"]
    if not isinstance(instances, list) or not instances:
        raise RequestError(400, '"instances" must be a non-empty list')
    if len(instances) > max_instances:
        raise RequestError(413, f"{len(instances)} instances is over the limit of {max_instances} per request "
                                f"(--max_instances); split the request")
    return instances


def request_images(body, input_shape, max_instances, max_image_pixels, max_request_pixels):
    """The images of a TF Serving row-format body, checked before any model runs: every image file is measured
    from its header, against the limit for one image and the budget for the request, before the first is decoded."""
    instances = request_instances(body, max_instances)
    where = [f"instance {n}" for n in range(len(instances))]
    files = {n: image_file(instance, where[n]) for n, instance in enumerate(instances) if isinstance(instance, dict)}
    pixels = sum(measured_pixels(data, where[n], max_image_pixels) for n, data in files.items())
    if pixels > max_request_pixels:
        raise RequestError(413, f"the request's images are {pixels} pixels together, over the limit of "
                                f"{max_request_pixels} per request (--max_request_pixels); send fewer or smaller "
                                f"images")
    return np.stack([image_pixels(files[n], where[n], input_shape, max_image_pixels) if n in files
                     else listed_pixels(instance, where[n], input_shape) for n, instance in enumerate(instances)])
