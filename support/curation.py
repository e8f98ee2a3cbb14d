"""--exclude and --split_groups: the items a run leaves out, and the copies it keeps on one side of the split.

Both read what doctor.py writes. --exclude FILE takes the `path` column of its label_issues.csv or duplicates.csv
(duplicates.csv names every copy but the first of its group, so one of each stays), or a list of paths or ids, one
a line: those items leave training and validation alike. --split_groups FILE takes its duplicates.csv, whose rows
link each copy to the first of its group: every connected set of copies then splits as one item, by its first
member's hash, so no near twin validates what its twin trained on.

A setting's value is what its file names, each path that exists made absolute (a list of names; a list of groups):
config.json records that, so deploy.py, evaluate.py and --resume rebuild the same items and split from any folder.
An entry names an item by its file's path (image folders) or by its id (TFRecords, .npy), as doctor.py writes it;
one that names no item is an error.
"""
import argparse
import csv
import io
import os

from support.duplicates import connected_sets
from support.errors import UserError, first_of

PATH, DUPLICATE_OF = "path", "duplicate_of"


def read_table(path):
    """(the file's non-empty rows as CSV cells, its text); an unreadable file is the flag's one-line error."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise argparse.ArgumentTypeError(f"cannot read {path}: not a text file ({error.reason})") from error
    return [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)], text


def entry(name):
    """An item's name as recorded: a path that exists made absolute, anything else (an id) as it is."""
    name = name.strip()
    return os.path.abspath(name) if os.path.exists(name) else name


def read_exclude(path):
    """--exclude: the `path` column of a CSV whose first line names one (doctor.py's), else every line."""
    table, text = read_table(path)
    if table and PATH in table[0]:
        column = table[0].index(PATH)
        names = [row[column] for row in table[1:] if len(row) > column]
    else:
        names = [line for line in text.splitlines() if line.strip()]
    return [entry(name) for name in names]


def read_groups(path):
    """--split_groups: the connected sets of items that a duplicates.csv's (path, duplicate_of) rows link."""
    table, _ = read_table(path)
    if not table or PATH not in table[0] or DUPLICATE_OF not in table[0]:
        raise argparse.ArgumentTypeError(f"{path} is not doctor.py's duplicates.csv: its first line names no "
                                         f"{PATH} and {DUPLICATE_OF} columns")
    a, b = table[0].index(PATH), table[0].index(DUPLICATE_OF)
    return connected_sets((entry(row[a]), entry(row[b])) for row in table[1:] if len(row) > max(a, b))


def names(value):
    """A list of item names as given (config.json, Python), checked."""
    if isinstance(value, (list, tuple)) and all(isinstance(name, str) for name in value):
        return list(value)
    raise argparse.ArgumentTypeError(f"must be a file or a list of item names, got {value!r}")


def excluded(value):
    """The --exclude setting: the items a file names (read_exclude), or a list of them."""
    return read_exclude(value) if isinstance(value, str) else names(value)


def groups(value):
    """The --split_groups setting: the groups a duplicates.csv links (read_groups), or a list of them."""
    if isinstance(value, str):
        return read_groups(value)
    if isinstance(value, (list, tuple)):
        return [names(group) for group in value]
    raise argparse.ArgumentTypeError(f"must be a duplicates.csv or a list of groups of item names, got {value!r}")


def item_names(reader):
    """How doctor.py names each item, and these flags find it: its file's path (image folders), else its id."""
    return reader.source.files if reader.fmt == "image_folder" else reader.ids


def item_index(readers):
    """{name: (reader position, item)}: every item by its id, and an image file also by its absolute path."""
    index = {}
    for r, reader in enumerate(readers):
        index.update({item_id: (r, i) for i, item_id in enumerate(reader.ids)})
        if reader.fmt == "image_folder":
            index.update({os.path.abspath(path): (r, i) for i, path in enumerate(reader.source.files)})
    return index


def look_up(entries, index, flag, where):
    missing = [name for name in entries if name not in index]
    if missing:
        raise UserError(f"--{flag} names {len(missing)} item(s) that are not in {where}: {first_of(missing, 3)}; "
                        f"name items by their file's path or their id, as doctor.py writes them")
    return [index[name] for name in entries]


def apply(settings, train_reader, val_reader=None):
    """Leave out of every split what settings.exclude names (DataReader.left_out), and give each of
    settings.split_groups one split key: its first member's."""
    readers = [train_reader] + ([val_reader] if val_reader is not None else [])
    if settings.exclude:
        where = "--data or --val_data" if val_reader is not None else "--data"
        for r, i in look_up(settings.exclude, item_index(readers), "exclude", where):
            readers[r].left_out[i] = True
    if settings.split_groups:
        if val_reader is not None:
            raise UserError("--split_groups keeps copies on one side of the split of --data, and --val_data replaces "
                            "that split; give one of them")
        index, keys = item_index([train_reader]), train_reader.id_keys.copy()
        for group in settings.split_groups:
            members = [i for _, i in look_up(group, index, "split_groups", "--data")]
            keys[members] = keys[members[0]]
        train_reader.id_keys = keys
