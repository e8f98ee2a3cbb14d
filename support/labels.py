"""labels.txt, the class names of a deploy folder or of TFRecords: one name per line, or `0 -> apple` lines."""
import os

LABELS = "labels.txt"


def read_labels_txt(folders):
    """Class names from a labels.txt beside the records."""
    for folder in folders:
        path = os.path.join(folder, LABELS)
        if os.path.isfile(path):
            with open(path) as f:
                return labels_from_text(f.read())
    return None


def labels_from_text(text):
    """The names in a labels.txt: `0 -> apple` lines or one name per line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return [line.split("->", 1)[1].strip() if "->" in line else line for line in lines]
