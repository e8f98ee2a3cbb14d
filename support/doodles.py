"""A small synthetic doodle set in the QuickDraw numpy_bitmap format: the template's default data.

It lets `python train.py` run on a fresh machine with no download. The drawings are generated shapes
(circles, stars, zigzags...) with random position, size, rotation and stroke width, drawn as white strokes
on black at 28×28 like QuickDraw. They are synthetic: real drawings are far more varied (see README for
downloading real QuickDraw classes). The same seed always writes the same files.

    python -m support.doodles --save_to data/doodles --per_class 300
"""
import math
import os

import numpy as np
from PIL import Image, ImageDraw

from support.errors import ArgumentParser, UserError, reports_user_errors

FOLDER = "data/doodles"  # where train.py writes the sample on first use when --data is not given
SIDE, SCALE = 28, 4  # drawn 4× larger, then downsampled: smooth strokes like QuickDraw's


def polygon(corners, start=0.0):
    return [(math.cos(start + 2 * math.pi * k / corners), math.sin(start + 2 * math.pi * k / corners))
            for k in range(corners + 1)]


def star(points=5):
    return [((1.0 if k % 2 == 0 else 0.4) * math.cos(math.pi * k / points - math.pi / 2),
             (1.0 if k % 2 == 0 else 0.4) * math.sin(math.pi * k / points - math.pi / 2))
            for k in range(2 * points + 1)]


def spiral():
    return [(t / 12 * math.cos(t), t / 12 * math.sin(t)) for t in np.linspace(0, 12, 60)]


def heart():
    return [(16 * math.sin(t) ** 3 / 17, -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t)
                                           - math.cos(4 * t)) / 17) for t in np.linspace(0, 2 * math.pi, 50)]


# Each class is a list of strokes; each stroke a list of points in [-1, 1]².
SHAPES = {
    "circle": [polygon(40)],
    "square": [polygon(4, math.pi / 4)],
    "triangle": [polygon(3, -math.pi / 2)],
    "star": [star()],
    "cross": [[(-1, -1), (1, 1)], [(-1, 1), (1, -1)]],
    "plus": [[(0, -1), (0, 1)], [(-1, 0), (1, 0)]],
    "zigzag": [[(-1 + k / 2, -0.5 if k % 2 else 0.5) for k in range(5)]],
    "spiral": [spiral()],
    "heart": [heart()],
    "arrow": [[(-1, 0), (1, 0)], [(0.4, -0.6), (1, 0), (0.4, 0.6)]],
}


def draw(strokes, rng):
    """One 28×28 uint8 drawing of `strokes`, randomly placed, scaled, rotated, wobbled and thickened."""
    size = SIDE * SCALE
    picture = Image.new("L", (size, size), 0)
    pen = ImageDraw.Draw(picture)
    angle = rng.uniform(-0.35, 0.35)
    radius = rng.uniform(0.28, 0.42) * size
    centre = size / 2 + rng.uniform(-0.08, 0.08, size=2) * size
    stretch = rng.uniform(0.8, 1.2, size=2)
    width = int(rng.integers(SCALE * 1, SCALE * 2 + 1))
    cos, sin = math.cos(angle), math.sin(angle)
    for stroke in strokes:
        points = np.array(stroke, dtype=float) * stretch + rng.normal(0, 0.04, size=(len(stroke), 2))
        xy = [(centre[0] + radius * (x * cos - y * sin), centre[1] + radius * (x * sin + y * cos)) for x, y in points]
        pen.line(xy, fill=255, width=width, joint="curve")
    return np.asarray(picture.resize((SIDE, SIDE), Image.BILINEAR), dtype=np.uint8)


def write(save_to, per_class=300, seed=0):
    """Write `<class>.npy` (per_class × 784 uint8) for every shape; returns the class names."""
    if per_class < 1:
        raise UserError(f"per_class must be a positive integer, got {per_class}")
    os.makedirs(save_to, exist_ok=True)
    for index, (name, strokes) in enumerate(SHAPES.items()):
        rng = np.random.default_rng([seed, index])
        drawings = np.stack([draw(strokes, rng).reshape(-1) for _ in range(per_class)])
        np.save(os.path.join(save_to, f"{name}.npy"), drawings)
    return list(SHAPES)


def write_if_default(data):
    """The default --data of train.py is this sample: write it on first use, when `data` names it and it is missing."""
    if list(data) == [FOLDER] and not os.path.isdir(FOLDER):
        write(FOLDER)
        print(f"wrote the synthetic doodle sample to {FOLDER}")


@reports_user_errors
def main(argv=None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--save_to", default=FOLDER, help="folder for the .npy files (default: %(default)s)")
    parser.add_argument("--per_class", type=int, default=300, help="drawings per class (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    args = parser.parse_args(argv)
    names = write(args.save_to, args.per_class, args.seed)
    print(f"wrote {len(names)} classes × {args.per_class} synthetic drawings to {args.save_to}")


if __name__ == "__main__":
    main()
