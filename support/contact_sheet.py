"""A contact sheet: pictures in a grid, each with a few lines of text under it, as PNG bytes, for a person to look at
before deleting or relabelling anything (doctor.py's suspects, "given -> suggested")."""
import io

from PIL import Image, ImageDraw, ImageFont

CELL = 128  # each picture fits in a square of this side
LINE = 14  # pixels per line of text
FONT_SIZE = 11


def render(pictures, captions, columns=6):
    """PNG bytes of the uint8 H×W×C `pictures` in rows of `columns`, each over its caption lines."""
    lines = max((len(caption) for caption in captions), default=0)
    rows = max(1, -(-len(pictures) // columns))
    height = CELL + lines * LINE + 6
    sheet = Image.new("RGB", (columns * (CELL + 4), rows * height), "white")
    pen = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=FONT_SIZE)
    for n, (picture, caption) in enumerate(zip(pictures, captions)):
        left, top = (n % columns) * (CELL + 4) + 2, (n // columns) * height + 2
        image = Image.fromarray(picture[:, :, 0] if picture.shape[2] == 1 else picture).convert("RGB")
        image.thumbnail((CELL, CELL))
        sheet.paste(image, (left + (CELL - image.width) // 2, top + (CELL - image.height) // 2))
        for k, text in enumerate(caption):
            pen.text((left, top + CELL + 2 + k * LINE), fitted(pen, text, font), fill="black", font=font)
    buffer = io.BytesIO()
    sheet.quantize(256).save(buffer, "PNG", optimize=True)  # 256 colours: a quarter of the bytes, enough to judge by
    return buffer.getvalue()


def fitted(pen, text, font):
    """The text, cut at the front with '…' until it fits under a picture (a long path keeps its file name)."""
    while len(text) > 1 and pen.textlength(text, font=font) > CELL:
        text = "…" + text[2:]
    return text
