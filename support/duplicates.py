"""Copies in a data set, grouped: every connected set of copies is one group, each member described against the
group's first item.

Four kinds, strongest first:
- exact_bytes: the same file;
- exact_pixels: other bytes, the same decoded pixels (a PNG saved again);
- near_copy: the same picture resized or re-encoded: 32×32 grey thumbnails, mean removed, correlate >= 0.99. On
  the shared photos a copy 85-95 % the size at JPEG quality 60-90 kept >= 0.998, while distinct photos stayed
  <= 0.984 (hazy mountain gradients; scenes), 0.952 (grocery), 0.87 (cats vs dogs, 99.9th percentile);
- near_twin: another shot of the same thing: pretrained features at cosine >= 0.95. There, distinct views of the
  same shelf, forest path or glacier front, taken moments apart (grocery holds bursts); the features of a small
  photo move too much with resizing (a 150 px scene and its 90 % copy: cosine 0.73-0.99) to find copies alone.
"""
import cv2
import numpy as np

THUMBNAIL_SIDE = 32
COPY_CORRELATION = 0.99
TWIN_COSINE = 0.95
KINDS = ("exact_bytes", "exact_pixels", "near_copy", "near_twin")
BLOCK = 1024  # rows of the similarity matrix computed at a time


def thumbnail(image):
    """The picture's 32×32 grey thumbnail as a unit vector with its mean removed (zeros for a uniform image)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.shape[2] == 3 else image[:, :, 0]
    vector = cv2.resize(grey, (THUMBNAIL_SIDE, THUMBNAIL_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    if vector.std() < 1.0:  # a uniform picture has no shape to match
        return np.zeros_like(vector)
    vector -= vector.mean()
    return vector / np.linalg.norm(vector)


def unit_rows(vectors):
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def similar_pairs(vectors, threshold):
    """(i, j) with i < j whose unit vectors' dot product is >= threshold, a block of rows at a time."""
    pairs = []
    for start in range(0, len(vectors), BLOCK):
        similarity = vectors[start:start + BLOCK] @ vectors.T
        rows, columns = np.nonzero(similarity >= threshold)
        keep = columns > rows + start
        pairs += zip((rows[keep] + start).tolist(), columns[keep].tolist())
    return pairs


def equal_pairs(keys):
    """(first, i): each item whose key an earlier item has, with that first item (None keys match nothing)."""
    first, pairs = {}, []
    for i, key in enumerate(keys):
        if key is None:
            continue
        if key in first:
            pairs.append((first[key], i))
        else:
            first[key] = i
    return pairs


def connected_sets(pairs):
    """The connected sets of items that `pairs` link, each sorted, in the order of their first items."""
    parent = {}

    def root(item):
        parent.setdefault(item, item)
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    sets = {}
    for item in parent:
        sets.setdefault(root(item), []).append(item)
    return [sorted(members) for _, members in sorted(sets.items())]


def find(bytes_keys, pixel_keys, thumbnails, features):
    """[(member, first, kind)] for every copy: items linked by any kind, in groups, each member but the first
    described by its strongest kind against the first (near_twin when only other members link them).
    `features` rows may be all zero where an item has none."""
    thumbnails, features = unit_rows(thumbnails), unit_rows(features)
    pairs = (equal_pairs(bytes_keys) + equal_pairs(pixel_keys) + similar_pairs(thumbnails, COPY_CORRELATION)
             + similar_pairs(features, TWIN_COSINE))
    found = []
    for group in connected_sets(pairs):
        first = group[0]
        for member in group[1:]:
            if bytes_keys[member] is not None and bytes_keys[member] == bytes_keys[first]:
                kind = "exact_bytes"
            elif pixel_keys[member] is not None and pixel_keys[member] == pixel_keys[first]:
                kind = "exact_pixels"
            elif thumbnails[member] @ thumbnails[first] >= COPY_CORRELATION:
                kind = "near_copy"
            else:
                kind = "near_twin"
            found.append((member, first, kind))
    return found
