"""The layout a template user copies, held as properties of the imports: the top level holds the commands and what they
are built from; support/ and models/ import nothing above them; nothing imports in a circle; and support/__init__.py
names each of its modules, so the index a newcomer reads first stays the whole story."""
import ast
import os
import pkgutil

import config
import support
from conftest import ROOT

TOP_LEVEL = {name[:-3] for name in os.listdir(ROOT) if name.endswith(".py")}
PACKAGES = ("support", "models")


def modules():
    """{module name: its file} of the template: the top level and the two packages."""
    found = {name: os.path.join(ROOT, f"{name}.py") for name in TOP_LEVEL}
    for package in PACKAGES:
        for name in os.listdir(os.path.join(ROOT, package)):
            if name.endswith(".py"):
                module = package if name == "__init__.py" else f"{package}.{name[:-3]}"
                found[module] = os.path.join(ROOT, package, name)
    return found


def imports(path):
    """The template's modules that a file imports, anywhere in it (a function's own imports too)."""
    known, found = modules(), set()
    for node in ast.walk(ast.parse(open(path).read())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found |= {name for name in names if name in known}
    return found


GRAPH = {module: imports(path) - {module} for module, path in modules().items()}


def is_command(path):
    return 'if __name__ == "__main__":' in open(path).read()


def test_the_top_level_holds_the_commands_and_what_they_are_built_from():
    commands = {name for name in TOP_LEVEL if is_command(os.path.join(ROOT, f"{name}.py"))}
    named = {path.split(".")[0] for path in [*config.LOSSES.values(), *config.OPTIMIZERS.values()]}  # imported by name
    used = {module for command in commands for module in GRAPH[command]} | named
    assert {"train", "deploy", "evaluate", "predict", "serve", "tune"} <= commands
    assert TOP_LEVEL <= commands | used, f"neither a command nor used by one: {sorted(TOP_LEVEL - commands - used)}"


def test_support_and_models_import_nothing_above_them():
    for module, imported in GRAPH.items():
        if module.split(".")[0] == "support":
            assert not {name for name in imported if name.split(".")[0] != "support"}, module
        if module.split(".")[0] == "models":
            assert not {name for name in imported if name.split(".")[0] not in PACKAGES}, module


def test_nothing_imports_in_a_circle():
    def reaches(start, target, seen):
        return any(name == target or (name not in seen and not seen.add(name) and reaches(name, target, seen))
                   for name in GRAPH[start])

    circles = sorted(module for module in GRAPH if reaches(module, module, set()))
    assert not circles, f"in an import circle: {circles}"


def test_the_support_docstring_names_each_of_its_modules():
    listed = {line.split()[0] for line in support.__doc__.splitlines()[2:] if line.strip()}
    present = {module.name for module in pkgutil.iter_modules(support.__path__)}
    assert present <= listed, f"support/__init__.py does not name {sorted(present - listed)}"
    assert "third_party/" in listed
