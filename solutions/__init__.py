"""Worked solutions to the lessons' code exercises, for instructors (one module per lesson).

Each module holds the functions and classes the lesson asks the student to write, under the
same names; ``effnet_lab.exercises.check`` accepts every one of them, and the notebook tests
run every lesson with these filled in. Keep this folder out of what students receive.
"""

import ast
import importlib
import inspect


def fill_in(notebook, lesson: str) -> list[str]:
    """Replace, in an nbformat notebook, each function or class the student is asked to write
    (a definition that still raises NotImplementedError) by the worked solution of the same
    name, preceded by the imports of its solution module; the rest of the cell stays.
    Returns the names filled in (none for a lesson without a solutions module)."""
    try:
        module = importlib.import_module(f"{__name__}.lesson{lesson}")
    except ModuleNotFoundError:
        return []
    module_tree = ast.parse(inspect.getsource(module))
    imports = [ast.unparse(node) for node in module_tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    filled = []
    for cell in notebook.cells:
        if cell.cell_type != "code" or "NotImplementedError" not in cell.source:
            continue
        lines = cell.source.splitlines()
        for node in reversed(ast.parse(cell.source).body):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and hasattr(module, node.name):
                solution = imports + inspect.getsource(getattr(module, node.name)).splitlines()
                lines[node.lineno - 1 - len(node.decorator_list): node.end_lineno] = solution
                filled.append(node.name)
        cell.source = "\n".join(lines)
    return filled
