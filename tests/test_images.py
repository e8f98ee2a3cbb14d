"""support/images.py: images measured from their header bytes before anything decodes them, only the formats README
lists opened, and pictures decoded as people see them (upright by EXIF, transparency over white), by the template
and by the SavedModel's graph alike. Every file is made here, most of them byte by byte."""
import io
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image, ImageFile

from conftest import ROOT
from support.images import prepare
from reader import DataReader
from support import images
from support.errors import UserError
from support.images import ImageHeader, ImageTooLarge, decode_image, measure

NOT_MEASURABLE = "not a PNG, JPEG, GIF, BMP, WebP or TIFF file whose header gives its size"
LIMIT = 25_000_000


# --- files, written by hand where a library would not write what the test needs -----------------------------

def encoded(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(kind, data, crc=None):
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def grey_png(width, height, *chunks):
    """An 8-bit grey PNG of zeros, any size, compressed row by row; `chunks` go between IHDR and IDAT."""
    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # a filter byte, then the row
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + b"".join(chunks) + png_chunk(b"IDAT", pixels) + png_chunk(b"IEND", b"")


def tiff(order, width, height, orientation=None):
    """An uncompressed 8-bit grey TIFF in byte order "<" (II) or ">" (MM); ImageWidth as LONG, ImageLength SHORT."""
    pixels = bytes(range(256)) * (width * height // 256) + bytes(width * height % 256)
    tags = [(256, 4, width), (257, 3, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 0), (277, 3, 1),
            (278, 4, height), (279, 4, len(pixels))] + ([(274, 3, orientation)] if orientation else [])
    tags.sort()
    pixels_at = 8 + 2 + 12 * len(tags) + 4

    def field(kind, value):  # a value held in the entry itself: a SHORT first, then padding; a LONG whole
        return struct.pack(order + "HH", value, 0) if kind == 3 else struct.pack(order + "I", value)

    entries = b"".join(struct.pack(order + "HHI", tag, kind, 1) + field(kind, pixels_at if tag == 273 else value)
                       for tag, kind, value in tags)  # 273, StripOffsets: where the pixels start
    magic = b"II*\x00" if order == "<" else b"MM\x00*"
    return magic + struct.pack(order + "I", 8) + struct.pack(order + "H", len(tags)) + entries + bytes(4) + pixels


def bmp_core(width, height):
    """A 24-bit BMP with the old 12-byte core header (16-bit sizes), which Pillow reads but does not write."""
    stride = (width * 3 + 3) & ~3
    pixels = bytes(stride * height)
    return (b"BM" + struct.pack("<IHHI", 26 + len(pixels), 0, 0, 26) + struct.pack("<IHHHH", 12, width, height, 1, 24)
            + pixels)


def top_down(bmp):
    """A BMP with BITMAPINFOHEADER turned into its top-down form: a negative height."""
    (height,) = struct.unpack_from("<i", bmp, 22)
    return bmp[:22] + struct.pack("<i", -height) + bmp[26:]


def gif_descriptor(gif):
    """Where a Pillow-written GIF's first image descriptor starts: after the screen, its colour table and the
    extensions (a test-side walk of the same structure, for patching)."""
    at = 13 + (3 << (gif[10] & 7) + 1 if gif[10] & 0x80 else 0)
    while gif[at] == 0x21:
        at += 2
        while gif[at]:
            at += gif[at] + 1
        at += 1
    assert gif[at] == 0x2C
    return at


def gif_frame_past_screen(gif, screen, left, top):
    """A GIF whose logical screen is smaller than its first frame, placed at (left, top)."""
    at = gif_descriptor(gif)
    return gif[:6] + struct.pack("<HH", *screen) + gif[10:at + 1] + struct.pack("<HH", left, top) + gif[at + 5:]


def jpeg(width, height, sof=0xC0):
    """A JPEG's header alone: start of image, a JFIF segment, a start-of-frame of the given size, a scan's start."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    frame = bytes([0xFF, sof]) + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + frame + b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00\x00\x3f\x00"


def riff(chunk, payload):
    body = b"WEBP" + chunk + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_headers(width, height):
    """The three WebP first chunks, each declaring width × height (VP8: at most 16383 a side)."""
    vp8 = b"\x10\x02\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", min(width, 16383), min(height, 16383))
    vp8l = b"\x2f" + struct.pack("<I", (width - 1) | (height - 1) << 14)
    vp8x = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return {"VP8": riff(b"VP8 ", vp8), "VP8L": riff(b"VP8L", vp8l), "VP8X": riff(b"VP8X", vp8x)}


def photo(height=45, width=61, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, np.full((height, width), 128)], axis=2)
    return np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)


def real_files():
    """(name, bytes, Pillow's size) of small files of every kind ACCEPTED covers, as libraries and cameras write
    them and in the older or rarer forms the readers handle."""
    rgb = Image.fromarray(photo())
    grey, palette = rgb.convert("L"), rgb.quantize(16)
    exif = Image.Exif()
    exif[0x0112] = 6
    gif = encoded(palette, "GIF")
    files = {
        "png": encoded(rgb, "PNG"), "grey png": encoded(grey, "PNG"), "palette png": encoded(palette, "PNG"),
        "16-bit png": encoded(Image.fromarray(np.asarray(grey).astype(np.uint16) * 257), "PNG"),
        "jpeg": encoded(rgb, "JPEG"), "progressive jpeg": encoded(rgb, "JPEG", progressive=True),
        "jpeg with exif": encoded(rgb, "JPEG", exif=exif), "cmyk jpeg": encoded(rgb.convert("CMYK"), "JPEG"),
        "gif": gif, "animated gif": encoded(palette, "GIF", save_all=True, append_images=[palette.rotate(90)]),
        "gif frame past its screen": gif_frame_past_screen(gif, (20, 10), 7, 5),
        "bmp": encoded(rgb, "BMP"), "top-down bmp": top_down(encoded(rgb, "BMP")),
        "palette bmp": encoded(palette, "BMP"), "core-header bmp": bmp_core(61, 45),
        "lossy webp": encoded(rgb, "WEBP"), "lossless webp": encoded(rgb, "WEBP", lossless=True),
        "webp with alpha": encoded(rgb.convert("RGBA"), "WEBP"), "webp with exif": encoded(rgb, "WEBP", exif=exif),
        "animated webp": encoded(rgb, "WEBP", save_all=True, append_images=[rgb.rotate(90)]),
        "tiff": encoded(rgb, "TIFF"), "lzw tiff": encoded(rgb, "TIFF", compression="tiff_lzw"),
        "bigtiff": encoded(rgb, "TIFF", big_tiff=True), "little-endian tiff": tiff("<", 61, 45),
        "big-endian tiff": tiff(">", 61, 45), "tiff turned by orientation 6": tiff(">", 61, 45, orientation=6),
    }
    found = []
    for name, data in files.items():
        with Image.open(io.BytesIO(data)) as image:
            found.append((name, data, image.size, image.format))
    return found


REAL_FILES = real_files()
REAL_IDS = [name for name, *_ in REAL_FILES]


@pytest.fixture
def nothing_decodes(monkeypatch):
    """Fails the test if OpenCV or Pillow is asked to decode or open anything."""
    def refuse(*args, **kwargs):
        raise AssertionError("an image was handed to a decoder")
    import cv2

    monkeypatch.setattr(cv2, "imdecode", refuse)
    monkeypatch.setattr(images.Image, "open", refuse)


# --- measuring -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, data, size, fmt", REAL_FILES, ids=REAL_IDS)
def test_the_header_gives_the_size_pillow_opens_and_the_file_decodes(name, data, size, fmt):
    header = measure(data, name)
    assert header == ImageHeader("JPEG" if fmt == "MPO" else fmt, *size)
    decoded = decode_image(data, name)
    assert decoded.dtype == np.uint8 and decoded.shape[2] in (1, 3)
    assert decoded.shape[:2] in ((size[1], size[0]), (size[0], size[1]))  # EXIF may turn it a quarter


@pytest.mark.parametrize("name, data, size, fmt", REAL_FILES, ids=REAL_IDS)
def test_a_cut_file_is_the_fixed_error_or_its_true_size_never_a_library_error(name, data, size, fmt):
    for length in [*range(64), *range(64, len(data), max(1, len(data) // 40))]:
        cut = data[:length]
        try:
            header = measure(cut, "cut")
        except UserError as error:
            assert str(error) == f"cannot decode image cut: {NOT_MEASURABLE}"
        else:
            assert (header.width, header.height) == size, length
        try:
            decoded = decode_image(cut, "cut")
        except UserError as error:
            assert str(error).startswith("cannot decode image cut: ")
        else:  # all the pixels were there (a PNG cut before IEND)
            assert decoded.shape[:2] in ((size[1], size[0]), size), length


def test_a_grey_png_of_8000x8000_behind_a_bad_crc_or_a_huge_text_chunk_is_refused_before_decoding(nothing_decodes):
    """62 KB on the wire, 64 MB decoded: Pillow gives up on such a header, which once waved it through."""
    bad_crc = png_chunk(b"tEXt", b"Comment\x00hello", crc=0)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, 2 << 20, np.uint8).tobytes()  # 2 MB that do not compress
    huge_text = png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(noise))
    for extra in (bad_crc, huge_text):
        data = grey_png(8000, 8000, extra)
        with pytest.raises(ImageTooLarge) as refused:
            decode_image(data, "bomb.png", max_pixels=LIMIT)
        error = refused.value
        assert (error.width, error.height, error.limit) == (8000, 8000, LIMIT)
        assert isinstance(error, UserError) and str(error) == \
            "image bomb.png is 8000×8000 pixels, over the limit of 25,000,000 pixels"


def declared_too_large():
    """(name, header bytes declaring width × height over LIMIT) for each format and each form of its header."""
    cases = [("png", grey_png(6000, 5000)[:33], (6000, 5000)),
             ("jpeg baseline", jpeg(6000, 5000), (6000, 5000)),
             ("jpeg progressive", jpeg(6000, 5000, sof=0xC2), (6000, 5000)),
             ("gif screen", b"GIF89a" + struct.pack("<HHBBB", 6000, 5000, 0, 0, 0) + b","
              + struct.pack("<HHHHB", 0, 0, 1, 1, 0), (6000, 5000)),
             ("gif frame past a 1x1 screen", b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0, 0, 0) + b","
              + struct.pack("<HHHHB", 10, 20, 6000, 5000, 0), (6010, 5020)),
             ("bmp info header", b"BM" + bytes(12) + struct.pack("<Iii", 40, 6000, 5000), (6000, 5000)),
             ("bmp top-down", b"BM" + bytes(12) + struct.pack("<Iii", 40, 6000, -5000), (6000, 5000)),
             ("bmp core header", b"BM" + bytes(12) + struct.pack("<IHH", 12, 6000, 5000), (6000, 5000)),
             ("tiff little-endian", tiff("<", 6000, 5000)[:200], (6000, 5000)),
             ("tiff big-endian", tiff(">", 6000, 5000)[:200], (6000, 5000)),
             ("tiff turned", tiff(">", 6000, 5000, orientation=8)[:200], (5000, 6000))]
    cases += [(f"webp {kind}", data, (6000, 5000)) for kind, data in webp_headers(6000, 5000).items()]
    return cases


@pytest.mark.parametrize("name, data, size", declared_too_large(), ids=[case[0] for case in declared_too_large()])
def test_each_format_declaring_more_pixels_than_the_limit_is_refused_before_decoding(name, data, size,
                                                                                    nothing_decodes):
    with pytest.raises(ImageTooLarge) as refused:
        decode_image(data, name, max_pixels=LIMIT)
    assert (refused.value.width, refused.value.height, refused.value.limit) == (*size, LIMIT)


def test_the_limit_never_goes_past_max_pixels_where_the_libraries_own_walls_stand(nothing_decodes):
    """OpenCV raises its own error past 2^30 pixels; a caller's higher limit stops at MAX_PIXELS first."""
    with pytest.raises(ImageTooLarge) as refused:
        decode_image(grey_png(40000, 40000)[:33], "huge.png", max_pixels=2 ** 40)
    assert refused.value.limit == images.MAX_PIXELS
    assert Image.MAX_IMAGE_PIXELS == images.MAX_PIXELS


def test_opencv_refuses_past_the_limit_in_a_tool_process_where_keras_imports_it_first():
    """OpenCV reads OPENCV_IO_MAX_IMAGE_PIXELS once, when imported, and Keras imports it during the tools' start:
    startup.setup(), what every tool does first, sets it before."""
    script = (f"import sys; sys.path[:0] = [{ROOT!r}, {os.path.dirname(__file__)!r}]\n"
              "from support import startup; startup.setup()\n"
              "import keras, cv2, numpy as np\n"
              "from support.images import MAX_PIXELS\n"
              "from test_images import grey_png\n"
              "try:\n"
              "    decoded = cv2.imdecode(np.frombuffer(grey_png(8200, 8200), np.uint8), cv2.IMREAD_UNCHANGED)\n"
              "except cv2.error:\n"
              "    decoded = None\n"
              "print(8200 * 8200 > MAX_PIXELS, decoded is None)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "True"]


@pytest.mark.parametrize("data", [
    b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + jpeg(20, 10)[2:],  # a scan before any frame
    b"\xff\xd8\xff\xd9", b"\xff\xd8" + b"\xff\xe0\x00\x01" + jpeg(20, 10)[2:],  # an end at once; a length below 2
    jpeg(20, 0), jpeg(0, 10), b"GIF89a" + struct.pack("<HHBBB", 20, 10, 0, 0, 0) + b";",  # no size; no frame
    b"BM" + bytes(12) + struct.pack("<Iii", 40, -20, 10), b"BM" + bytes(12) + struct.pack("<Iii", 20, 20, 10),
    riff(b"VP8 ", b"\x10\x02\x00\x00\x00\x00" + bytes(4)), riff(b"ALPH", bytes(16)),
    tiff("<", 20, 10)[:8] + struct.pack("<H", 0) + bytes(4), b"", b"hello", bytes(100)],
    ids=["sos before sof", "eoi", "short length", "zero height", "zero width", "gif without a frame",
         "bmp negative width", "bmp unknown header", "webp without start code", "webp unknown chunk",
         "tiff without tags", "empty", "text", "zeros"])
def test_a_header_that_gives_no_size_is_the_fixed_error(data):
    with pytest.raises(UserError) as refused:
        measure(data, "odd.jpg")
    assert str(refused.value) == f"cannot decode image odd.jpg: {NOT_MEASURABLE}"


def eps(side=10):
    return (f"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 {side} {side}\n%%EndComments\n"
            f"0 0 moveto {side} {side} lineto stroke\nshowpage\n%%EOF\n").encode()


@pytest.fixture
def fake_ghostscript(tmp_path, monkeypatch):
    """A `gs` first on PATH that leaves a marker file when anything runs it; Pillow forgets any gs it found."""
    folder, marker = tmp_path / "bin", tmp_path / "ghostscript-ran"
    folder.mkdir()
    script = folder / "gs"
    script.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)
    return marker


OTHER_FORMATS = {"eps": eps(), "ppm": encoded(Image.fromarray(photo()), "PPM"),
                 "ico": encoded(Image.fromarray(photo()), "ICO"), "pcx": encoded(Image.fromarray(photo()), "PCX"),
                 "tga": encoded(Image.fromarray(photo()), "TGA")}


@pytest.mark.parametrize("fmt", OTHER_FORMATS)
def test_formats_pillow_reads_outside_the_list_are_refused_and_ghostscript_never_runs(fmt, fake_ghostscript):
    with pytest.raises(UserError) as refused:
        decode_image(OTHER_FORMATS[fmt], f"drawing.{fmt}")
    assert str(refused.value) == f"cannot decode image drawing.{fmt}: {NOT_MEASURABLE}"
    assert not fake_ghostscript.exists()


def test_the_fake_ghostscript_does_run_when_pillow_opens_an_eps_with_every_plugin(fake_ghostscript):
    """What the test above guards against: Image.open without formats= hands an EPS to Ghostscript."""
    with pytest.raises(Exception):
        with Image.open(io.BytesIO(eps())) as image:
            image.load()
    assert fake_ghostscript.exists()


def test_an_image_folder_skips_what_is_not_measured_and_ghostscript_never_runs(tmp_path, fake_ghostscript, capsys):
    root = tmp_path / "photos"
    (root / "cats").mkdir(parents=True)
    (root / "dogs").mkdir()
    for n in range(3):
        Image.fromarray(photo(seed=n)).save(root / "cats" / f"{n}.jpg")
        Image.fromarray(photo(seed=n)[::-1]).save(root / "dogs" / f"{n}.png")
    (root / "cats" / "poster.png").write_bytes(eps())  # a name does not make a file a PNG
    (root / "dogs" / "bomb.png").write_bytes(grey_png(9000, 9000))  # 81 Mpx, over MAX_PIXELS
    reader = DataReader(str(root))
    assert len(reader) == 6 and not any("poster" in i or "bomb" in i for i in reader.ids)
    err = capsys.readouterr().err
    assert f"cats 1 unreadable ({os.path.join('photos', 'cats', 'poster.png')})" in err
    assert f"dogs 1 over 67,108,864 pixels ({os.path.join('photos', 'dogs', 'bomb.png')})" in err
    assert not fake_ghostscript.exists()
    with pytest.raises(UserError, match=r"^2 unreadable image\(s\): "):
        DataReader(str(root), strict=True)


def test_a_size_pillow_reads_otherwise_than_the_header_is_refused_before_loading(monkeypatch):
    """The header's size and the decoder's must agree; where they do not, nothing is decoded at the larger one."""
    data = grey_png(30, 20)
    monkeypatch.setattr(images, "measure", lambda data, name: ImageHeader("PNG", 20, 30))
    loaded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loaded.append(self))
    with pytest.raises(UserError) as refused:
        decode_image(data, "liar.png")
    assert str(refused.value) == f"cannot decode image liar.png: {NOT_MEASURABLE}" and not loaded


def test_pixels_that_do_not_decode_are_a_fixed_error_with_the_cause_kept():
    data = encoded(Image.fromarray(photo()), "PNG")
    start = data.index(b"IDAT") + 4
    damaged = data[:start] + bytes(200) + data[start + 200:]
    with pytest.raises(UserError) as refused:
        decode_image(damaged, "damaged.png")
    assert str(refused.value) == "cannot decode image damaged.png: its pixels do not decode (a damaged or " \
                                 "cut-short PNG file)"
    assert refused.value.__cause__ is not None  # KERAS_TEMPLATE_VERBOSE=1 prints it


# --- pictures as people see them ------------------------------------------------------------------------------

def upright_picture():
    """A picture whose top is white and bottom black, wider than tall."""
    picture = np.zeros((40, 60, 3), dtype=np.uint8)
    picture[:10] = 255
    return picture


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation, stored_as", [
    (3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270),
    (2, Image.Transpose.FLIP_LEFT_RIGHT), (5, Image.Transpose.TRANSPOSE)])
def test_an_exif_oriented_image_decodes_upright(fmt, orientation, stored_as):
    """A camera held sideways stores the picture turned and says so in EXIF tag 0x0112."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encoded(Image.fromarray(upright_picture()).transpose(stored_as), fmt, exif=exif)
    decoded = decode_image(data, "sideways")
    assert decoded.shape == (40, 60, 3)
    assert decoded[:8].min() > 200 and decoded[12:].max() < 60


def test_an_exif_oriented_grey_png_decodes_upright_too():
    """8-bit grey PNGs usually take OpenCV's path, which would not turn them."""
    exif = Image.Exif()
    exif[0x0112] = 6
    grey = upright_picture()[:, :, 0]
    data = encoded(Image.fromarray(grey).transpose(Image.Transpose.ROTATE_90), "PNG", exif=exif)
    assert np.array_equal(decode_image(data, "sideways.png")[:, :, 0], grey)


def rgba_png(colour, alpha):
    return encoded(Image.fromarray(np.dstack([colour, alpha]), "RGBA"), "PNG")


def test_two_transparent_pngs_that_differ_only_under_alpha_0_decode_the_same_and_white_there():
    rng = np.random.default_rng(0)
    alpha = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    alpha[:10] = 0
    colour = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    hidden_black, hidden_white = colour.copy(), colour.copy()
    hidden_black[:10], hidden_white[:10] = 0, 255
    black, white = decode_image(rgba_png(hidden_black, alpha), "a.png"), decode_image(rgba_png(hidden_white, alpha),
                                                                                     "b.png")
    assert np.array_equal(black, white) and black.shape == (30, 40, 3)
    assert (black[:10] == 255).all()


def test_alpha_is_painted_over_white_with_pillows_rounding_for_every_colour_and_alpha():
    colour, alpha = (grid.astype(np.uint8) for grid in np.meshgrid(np.arange(256), np.arange(256)))
    decoded = decode_image(rgba_png(np.dstack([colour] * 3), alpha), "grid.png").astype(int)
    expected = np.floor((colour * alpha.astype(int) + 255 * (255 - alpha.astype(int))) / 255 + 0.5)
    assert np.array_equal(decoded, np.dstack([expected] * 3))


def test_a_grey_image_with_alpha_stays_one_channel():
    grey = np.arange(120, dtype=np.uint8).reshape(10, 12)
    alpha = np.where(np.arange(12) < 6, 0, 255).astype(np.uint8)[None].repeat(10, 0)
    decoded = decode_image(encoded(Image.fromarray(np.dstack([grey, alpha]), "LA"), "PNG"), "la.png")
    assert decoded.shape == (10, 12, 1)
    assert (decoded[:, :6] == 255).all() and np.array_equal(decoded[:, 6:, 0], grey[:, 6:])


@pytest.mark.parametrize("fmt", ["GIF", "PNG"])
def test_a_palette_image_with_a_transparent_entry_is_white_there(fmt):
    indices = np.arange(4, dtype=np.uint8).repeat(5)[None].repeat(6, 0)  # four bands of 5 columns
    picture = Image.fromarray(indices, "P")
    picture.putpalette([10, 20, 30, 200, 0, 0, 0, 200, 0, 0, 0, 200])
    decoded = decode_image(encoded(picture, fmt, transparency=0), f"bands.{fmt.lower()}")
    assert decoded.shape == (6, 20, 3)
    assert (decoded[:, :5] == 255).all() and (decoded[:, 5:10] == [200, 0, 0]).all()


def test_a_grey_png_with_a_transparent_grey_key_is_white_there():
    grey = np.full((8, 8), 40, dtype=np.uint8)
    grey[:, 4:] = 90
    decoded = decode_image(encoded(Image.fromarray(grey), "PNG", transparency=40), "key.png")
    assert (decoded[:, :4] == 255).all() and (decoded[:, 4:] == 90).all()


def test_an_animated_gif_decodes_its_first_frame():
    first, second = (Image.fromarray(np.full((6, 8, 3), value, np.uint8)).quantize(2) for value in (30, 220))
    decoded = decode_image(encoded(first, "GIF", save_all=True, append_images=[second]), "moving.gif")
    assert decoded.shape == (6, 8, 3) and decoded.max() < 100


# --- the SavedModel's graph paints transparency as decode_image does ----------------------------------------

def transparent_files():
    rng = np.random.default_rng(4)
    colour = photo(12, 16, seed=4)
    alpha = rng.integers(0, 256, (12, 16), dtype=np.uint8)
    alpha[:3], alpha[3:5] = 0, 255
    palette = Image.fromarray(colour).quantize(6)
    return {"rgba png": rgba_png(colour, alpha),
            "grey+alpha png": encoded(Image.fromarray(np.dstack([colour[:, :, 1], alpha]), "LA"), "PNG"),
            "palette png with a transparent entry": encoded(palette, "PNG", transparency=1),
            "rgba webp": encoded(Image.fromarray(np.dstack([colour, alpha]), "RGBA"), "WEBP", lossless=True)}


@pytest.mark.parametrize("channels", [1, 3])
def test_the_saved_models_pixels_equal_decode_image_and_prepare_for_transparent_files(channels, tmp_path):
    """A SavedModel of a model that returns its input pixels (scaled) shows exactly what its graph prepared."""
    import keras
    import tensorflow as tf
    from support import saved_model_export

    shape = (12, 16, channels)
    model = keras.Sequential([keras.Input(shape), keras.layers.Flatten(), keras.layers.Rescaling(1 / 255)])
    path = str(tmp_path / "saved_model" / "1")
    saved_model_export.export(model, [f"pixel {n}" for n in range(int(np.prod(shape)))], path)
    serving = tf.saved_model.load(path).signatures["serving_default"]
    for name, data in transparent_files().items():
        served = serving(image_bytes=tf.constant([data]))["probabilities"].numpy()[0] * 255
        expected = prepare(decode_image(data, name), shape[:2], channels)
        assert np.array_equal(np.round(served).reshape(shape), expected), name
