"""The one image decoder, bytes of an image file -> uint8 H×W×C, and the one preparation of pixels for a model's
input (prepare), for every reader, the batches, predict.py and serve.py alike.

An image is measured from its header bytes before anything decodes it (a 60 KB PNG can declare 8000×8000 pixels,
and a header a library gives up on must not wave the file through), and only the formats in ACCEPTED are opened:
Pillow's other plugins (EPS hands the file to Ghostscript) are never reached.
"""
import contextlib
import io
import os
import struct
from collections import namedtuple

import numpy as np
from PIL import Image, ImageOps

from support.errors import UserError

# The ceiling for a user's own files. Phone cameras save up to ~50 Mpx (8160×6120 from a 50 Mpx sensor; the
# 200 Mpx ones bin to 12 or 50 Mpx unless told otherwise); 2^26 (67 Mpx) lets those through and keeps one decoded
# RGB image under 200 MB. serve.py passes its own, lower limit.
MAX_PIXELS = 2 ** 26

ACCEPTED = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")  # as Pillow names them; README lists these
NOT_MEASURABLE = "not a PNG, JPEG, GIF, BMP, WebP or TIFF file whose header gives its size"
DAMAGED = "its pixels do not decode (a damaged or cut-short {} file)"

ImageHeader = namedtuple("ImageHeader", "format width height")


class ImageTooLarge(UserError):
    """An image whose header declares more pixels than the limit; raised before anything is decoded."""

    def __init__(self, name, width, height, limit):
        super().__init__(f"image {name} is {width}×{height} pixels, over the limit of {limit:,} pixels")
        self.width, self.height, self.limit = width, height, limit


# --- headers: each reader takes the file's bytes and gives (width, height), or None -------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data):
    """The IHDR chunk, which must come first: width and height at bytes 16-24."""
    if data[12:16] == b"IHDR":
        return struct.unpack_from(">II", data, 16)
    return None


JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # C4, C8, CC are not
JPEG_STANDALONE = {0x00, 0x01, *range(0xD0, 0xD8)}  # markers without a length


def jpeg_size(data):
    """The segments up to the first scan (SOS): the size in the last start-of-frame before it, as Pillow takes it.
    Bytes between segments are skipped to the next 0xFF, as Pillow does."""
    size, at = None, 2
    while True:
        at = data.index(b"\xff", at)
        while data[at] == 0xFF:  # a marker may be preceded by fill bytes
            at += 1
        marker, at = data[at], at + 1
        if marker == 0xDA:
            return size
        if marker == 0xD9:  # end of image before any scan
            return None
        if marker in JPEG_STANDALONE:
            continue
        (length,) = struct.unpack_from(">H", data, at)
        if length < 2:
            return None
        if marker in JPEG_SOF:
            height, width = struct.unpack_from(">HH", data, at + 3)
            size = width, height
        at += length


def gif_size(data):
    """The logical screen, widened to the first frame where that frame reaches past it: Pillow does so (it draws
    the frame on a canvas of that size)."""
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    at = 13 + (3 << (flags & 7) + 1 if flags & 0x80 else 0)  # after the global colour table
    while data[at] == 0x21:  # an extension: its label, then data sub-blocks up to an empty one
        at += 2
        while data[at]:
            at += data[at] + 1
        at += 1
    if data[at] != 0x2C:  # not an image descriptor: no first frame
        return None
    left, top, frame_width, frame_height = struct.unpack_from("<HHHH", data, at + 1)
    return max(width, left + frame_width), max(height, top + frame_height)


def bmp_size(data):
    """The DIB header after the 14-byte file header: the old core header (16-bit sizes) or BITMAPINFOHEADER and
    its successors (32-bit; a negative height means rows stored top-down)."""
    (header,) = struct.unpack_from("<I", data, 14)
    if header == 12:
        return struct.unpack_from("<HH", data, 18)
    if header in (40, 52, 56, 64, 108, 124):
        width, height = struct.unpack_from("<ii", data, 18)
        return (width, abs(height)) if width > 0 else None
    return None


def webp_size(data):
    """The first chunk: a lossy frame (VP8), a lossless one (VP8L) or the extended header's canvas (VP8X)."""
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":  # a key frame's start code
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF  # the top two bits are a scaling hint
    if chunk == b"VP8L" and data[20] == 0x2F:
        (bits,) = struct.unpack_from("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return (int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1)
    return None


TIFF_WIDTH, TIFF_LENGTH, TIFF_ORIENTATION = 256, 257, 274
TIFF_INTEGERS = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8 (BigTIFF)


def tiff_size(data):
    """The first IFD's ImageWidth and ImageLength, in either byte order, classic or BigTIFF. Pillow gives a TIFF
    whose Orientation turns it a quarter (5-8) its turned size, so this does too."""
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    count_format, entry_format, entry_size = ("Q", "HHQ", 20) if big else ("H", "HHI", 12)
    (offset,) = struct.unpack_from(order + ("Q" if big else "I"), data, 8 if big else 4)
    (count,) = struct.unpack_from(order + count_format, data, offset)
    first = offset + struct.calcsize(count_format)
    if first + count * entry_size > len(data):
        return None
    tags = {}
    for at in range(first, first + count * entry_size, entry_size):
        tag, kind, values = struct.unpack_from(order + entry_format, data, at)
        if tag in (TIFF_WIDTH, TIFF_LENGTH, TIFF_ORIENTATION) and kind in TIFF_INTEGERS and values == 1:
            (tags[tag],) = struct.unpack_from(order + TIFF_INTEGERS[kind], data, at + entry_size - (8 if big else 4))
    if TIFF_WIDTH not in tags or TIFF_LENGTH not in tags:
        return None
    if tags.get(TIFF_ORIENTATION) in (5, 6, 7, 8):
        return tags[TIFF_LENGTH], tags[TIFF_WIDTH]
    return tags[TIFF_WIDTH], tags[TIFF_LENGTH]


def header_reader(data):
    """The format a file's first bytes say it is, and the function that reads its size."""
    if data[:8] == PNG_SIGNATURE:
        return "PNG", png_size
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG", jpeg_size
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF", gif_size
    if data[:2] == b"BM":
        return "BMP", bmp_size
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP", webp_size
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF", tiff_size
    return None, None


def measure(data, name):
    """An image file's format and size from its header bytes alone, without decoding anything; a UserError for
    anything else, or for a header that does not give a size."""
    fmt, size_of = header_reader(data)
    try:
        size = size_of(data) if size_of else None
    except (struct.error, IndexError, ValueError):  # the header ends early, or a marker is never found
        size = None
    if size is None or min(size) < 1:
        raise UserError(f"cannot decode image {name}: {NOT_MEASURABLE}")
    return ImageHeader(fmt, *size)


# --- decoding ------------------------------------------------------------------------------------------------

def measured(data, name, max_pixels):
    """The header of an image no larger than max_pixels (capped at MAX_PIXELS, where the libraries' own walls
    stand); ImageTooLarge before anything is decoded."""
    header = measure(data, name)
    limit = min(max_pixels, MAX_PIXELS)
    if header.width * header.height > limit:
        raise ImageTooLarge(name, header.width, header.height, limit)
    return header


def opened(data, name, max_pixels=MAX_PIXELS):
    """The Pillow image of a measured file, its pixels not yet loaded (a context manager, like Image.open)."""
    return pillow_image(data, name, measured(data, name, max_pixels))


@contextlib.contextmanager
def pillow_image(data, name, header):
    """Image.open with the measured format's plugin only, refused if Pillow finds another size than the header's.
    A failure inside the block is the fixed UserError too."""
    try:
        with Image.open(io.BytesIO(data), formats=(header.format,)) as image:
            if image.size != (header.width, header.height):
                raise UserError(f"cannot decode image {name}: {NOT_MEASURABLE}")
            yield image
    except UserError:
        raise
    except Exception as error:  # Pillow's errors (DecompressionBombError too) name nothing a user can act on
        raise UserError(f"cannot decode image {name}: {DAMAGED.format(header.format)}") from error


BACKGROUND = 255  # what transparent pixels show: white, as a page and most image viewers show them
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# A grey PNG with these chunks goes through Pillow: tRNS marks a transparent grey, and EXIF (eXIf, or a text chunk
# holding EXIF or XMP) may turn the picture, which OpenCV's IMREAD_UNCHANGED would not do.
PNG_CHUNKS_FOR_PILLOW = (b"tRNS", b"eXIf", b"tEXt", b"zTXt", b"iTXt")


def plain_grey_png(data):
    """An 8-bit greyscale PNG (IHDR: bit depth 8, colour type 0) without transparency or EXIF: KMLC's drawings.
    The chunk types are looked for anywhere in the file, quicker than walking its chunks: the same four letters
    inside compressed data only send a file the slower way."""
    return (data[:8] == PNG_SIGNATURE and data[24:26] == b"\x08\x00"
            and not any(kind in data for kind in PNG_CHUNKS_FOR_PILLOW))


def over_background(image):
    """A Pillow image with transparency (an alpha channel, or a palette entry or grey/RGB colour marked transparent)
    painted over BACKGROUND, as people see it: two images that look the same decode the same, whatever colours
    their transparent pixels hide. Pillow's paste with a mask rounds (colour × alpha + BACKGROUND × (255 − alpha))
    / 255 to the nearest integer; saved_model_export.composited does the same in TensorFlow."""
    if image.mode not in ALPHA_MODES and "transparency" not in image.info:
        return image
    opaque = "L" if image.mode in ("1", "L", "LA", "La") else "RGB"
    image = image.convert(opaque + "A")
    background = Image.new(opaque, image.size, (BACKGROUND,) * len(opaque))
    background.paste(image, mask=image.getchannel("A"))
    return background


def library_ceilings():
    """Second walls behind the measurement, at the same ceiling, for the whole process: Pillow refuses to open more
    pixels than twice its limit, and OpenCV reads its limit from the environment once, when cv2 is first imported
    (Keras imports it while it loads): so startup.setup() calls this before anything imports them."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))


def decode_image(data, name, max_pixels=MAX_PIXELS):
    """Bytes of a PNG/JPEG/GIF/BMP/WebP/TIFF file -> uint8 H×W×C with C = 1 (grey) or 3 (colour), as people see
    the picture: turned upright by its EXIF orientation and any transparency painted over white. The only image
    decoder, so training, evaluation, prediction, serving and calibration all see the same pixels. Measured first:
    a file over max_pixels is ImageTooLarge before any pixel is decoded.

    Plain 8-bit greyscale PNGs go through OpenCV, ~4× faster than Pillow for the same pixels; everything else,
    and anything OpenCV declines, through Pillow."""
    header = measured(data, name, max_pixels)
    if plain_grey_png(data):
        import cv2  # OpenCV (imgaug needs it anyway): here, so that importing this module loads none of it

        try:
            array = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error:
            array = None
        if array is not None and array.shape == (header.height, header.width) and array.dtype == np.uint8:
            return array[:, :, None]
    with pillow_image(data, name, header) as image:
        ImageOps.exif_transpose(image, in_place=True)  # loads the pixels
        if image.mode.startswith("I;16") or image.mode == "I":  # 16-bit grey: convert("L") would clip at 255
            array = np.clip(np.asarray(image, dtype=np.int64) >> 8, 0, 255).astype(np.uint8)
        else:
            image = over_background(image)
            if image.mode not in ("L", "RGB"):
                image = image.convert("L" if image.mode in ("1", "F") else "RGB")
            array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def prepare(image, input_size, channels):
    """uint8 H×W×C of any size and channel count -> uint8 at `input_size` (H, W) with `channels` channels.

    The single place where images are resized and converted: training, calibration, evaluation and
    prediction all go through it, so a deployed model sees exactly what training saw."""
    height, width = input_size
    if image.shape[2] == channels and image.shape[:2] == (height, width):
        return image
    picture = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    picture = picture.convert("L" if channels == 1 else "RGB")
    if picture.size != (width, height):
        picture = picture.resize((width, height), Image.BILINEAR)
    array = np.asarray(picture, dtype=np.uint8)
    return array[:, :, None] if channels == 1 else array
