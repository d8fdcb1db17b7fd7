"""The notebooks' exercise machinery: load a check or a solution from its file, and
grade the student's function with it.

Every exercise in notebooks 01-05 is graded the same way: the check (in
``notebooks/checks/``) runs on the student's function; while that function still
returns None (not attempted), the reference solution (``notebooks/solutions/``) stands
in, and the verdict says so instead of "passed". ``tests/test_checks_0N.py`` load the same
files to prove that every check fails on wrong answers.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

NOT_ATTEMPTED = "reference used, yours not attempted yet"


def load_file(path: str | Path, name: str | None = None) -> ModuleType:
    """The module in the file at ``path``, read afresh (an edited file is read again)."""
    path = Path(path)
    name = name or f"{path.parent.name}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}: is it a .py file?")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while a class is built
    spec.loader.exec_module(module)
    return module


class StandIn:
    """Your function; from its first answer on, the reference instead if that answer was
    None (not attempted yet)."""

    def __init__(self, yours: Callable[..., Any], reference: Callable[..., Any]) -> None:
        self.yours, self.reference = yours, reference
        self.reference_used: bool | None = None  # decided by the first call

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.reference_used is None:
            answer = self.yours(*args, **kwargs)
            self.reference_used = answer is None
            if not self.reference_used:
                return answer
        return (self.reference if self.reference_used else self.yours)(*args, **kwargs)


def grade(
    check: Callable[[Callable[..., Any]], str | None],
    yours: Callable[..., Any],
    reference: Callable[..., Any],
    stars: str = "★",
) -> str:
    """Run ``check`` on your function (on the reference while yours returns None) and say
    what happened: "★ passed" only when your own function passed. A wrong answer raises
    the check's AssertionError, which says what is wrong. What the check measured, if it
    returns anything, follows the verdict."""
    fn = StandIn(yours, reference)
    evidence = check(fn)
    if fn.reference_used is False:
        verdict = f"{stars} passed"
    else:
        verdict = f"{stars} {NOT_ATTEMPTED} ({yours.__name__} returns None)"
    return f"{verdict}: {evidence}" if evidence else verdict
