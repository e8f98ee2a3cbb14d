"""Odd images, from their pixels alone: tiny, blank, very dark or bright, blurry. A person looks at them; nothing
here decides to drop one.

Measured on the grey image. Blur is the variance of its Laplacian (edges make it large) on the image scaled down,
never up, to a shorter side of at most 256 px, so that a large photo is not called blurry for its pixel count: on
the shared scenes, grocery and cats-vs-dogs photos, what falls below BLURRY (4 of 1,627 grocery photos, 8 of 2,002
cats and dogs, none of 2,158 scenes) is out of focus. Light and blur are checks for photos (3 channels); a 1-channel
drawing is a few strokes on a plain ground, so it is checked for size and blankness only.
"""
import cv2
import numpy as np

TINY_SHARE = 0.25  # tiny: a shorter side under a quarter of the data set's median shorter side
BLANK_STD = 4.0  # near-uniform: grey values spread less than this (0..255)
DARK_MEAN, BRIGHT_MEAN = 20.0, 235.0  # very dark / very bright: mean grey value below / above
BLURRY = 25.0  # variance of the Laplacian below this
SHARPNESS_SIDE = 256


def measure(image):
    """(shorter side, mean grey, spread of grey, sharpness or NaN for a drawing) of a uint8 H×W×C image."""
    photo = image.shape[2] == 3
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if photo else image[:, :, 0]
    side = min(grey.shape)
    sharpness = np.nan
    if photo:
        scale = min(1.0, SHARPNESS_SIDE / side)
        small = grey if scale == 1.0 else cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        sharpness = float(cv2.Laplacian(small, cv2.CV_64F).var())
    return side, float(grey.mean()), float(grey.std()), sharpness


def issues(measures):
    """[(item position, issue, value)] for rows of measure(): tiny, blank, dark, bright, blurry (an item may have
    several; a blank image is not also called dark, bright or blurry)."""
    measures = np.asarray(measures, dtype=np.float64).reshape(-1, 4)
    found = []
    if not len(measures):
        return found
    tiny_below = TINY_SHARE * np.median(measures[:, 0])
    for n, (side, mean, spread, sharpness) in enumerate(measures):
        if side < tiny_below:
            found.append((n, "tiny", int(side)))
        if spread < BLANK_STD:
            found.append((n, "blank", round(spread, 2)))
            continue
        if np.isnan(sharpness):
            continue
        if mean < DARK_MEAN:
            found.append((n, "dark", round(mean, 1)))
        if mean > BRIGHT_MEAN:
            found.append((n, "bright", round(mean, 1)))
        if sharpness < BLURRY:
            found.append((n, "blurry", round(sharpness, 1)))
    return found
