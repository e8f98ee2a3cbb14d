"""Which of a data set's classes is which of a run's: so a model trained on Kaggle's flat `cat.1.jpg` files
(classes cat, dog) can score a folder of `cats/` and `dogs/`, and a run's `cat` selects a validation folder's
`cats/`. Used by the readers' class selection (--classes, --val_data) and evaluate.py --data.
"""
from support.errors import UserError


def plural_forms(name):
    """The plurals an English noun may take: cat -> cats, box -> boxes, puppy -> puppies."""
    return {name + "s", name + "es"} | ({name[:-1] + "ies"} if name.endswith("y") else set())


def same_name(data, run):
    return data == run


def same_ignoring_case(data, run):
    return data.lower() == run.lower()


def singular_or_plural(data, run):
    data, run = data.lower(), run.lower()
    return data in plural_forms(run) or run in plural_forms(data)


def match_classes(data_names, run_names, overrides=None):
    """{data class: run class} for the data's classes that name one of the run's.

    Every data class is matched one to one, by the same name, then ignoring case, then as singular/plural;
    a data set that names its classes by index only (TFRecords without a labels.txt) is taken by index.
    `overrides` ({data: run}) settle the rest, and may send several data classes to one run class. Classes
    that match nothing are left out (the caller says what that means). The mapping is printed in one line
    whenever it is more than the same names."""
    overrides = dict(overrides or {})
    for data, run in overrides.items():
        if data not in data_names:
            raise UserError(f"--class_map: '{data}' is not a class of the data; it has: {', '.join(data_names)}")
        if run not in run_names:
            raise UserError(f"--class_map: '{run}' is not a class of the run; it has: {', '.join(run_names)}")
    mapping = {}
    for same in (same_name, same_ignoring_case, singular_or_plural):
        free = [run for run in run_names if run not in mapping.values()]
        pairs = [(data, run) for data in data_names if data not in mapping and data not in overrides
                 for run in free if same(data, run)]
        tied = [f"{d} -> {r}" for d, r in pairs if sum(d == e or r == s for e, s in pairs) > 1]
        if tied:
            raise UserError(f"class names match more than one way ({', '.join(tied)}); give the pairs "
                            f"explicitly (evaluate.py --class_map DATA=RUN,...) or rename the classes")
        mapping.update(pairs)
    if all(n.isdigit() and int(n) < len(run_names) for n in data_names) and not any(r.isdigit() for r in run_names):
        mapping.update((n, run_names[int(n)]) for n in data_names if n not in mapping)
    mapping.update(overrides)
    mapping = {data: mapping[data] for data in data_names if data in mapping}
    renamed = [f"{data} -> {run}" for data, run in mapping.items() if data != run]
    if renamed:
        unchanged = len(mapping) - len(renamed)
        print(f"classes matched: {', '.join(renamed)}" + (f" (and {unchanged} by the same name)" if unchanged else ""))
    return mapping
