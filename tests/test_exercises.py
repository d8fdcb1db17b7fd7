"""The notebooks' exercise machinery: "passed" only for the student's own function, the
reference named when it stands in, a wrong answer raises, and files load afresh."""

from __future__ import annotations

from pathlib import Path

import pytest

from week04_lib.exercises import NOT_ATTEMPTED, grade, load_file

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"
checks = load_file(NOTEBOOKS / "checks" / "checks_04.py")
solutions = load_file(NOTEBOOKS / "solutions" / "04_solutions.py")


def untouched(request, endpoint=""):
    return None  # the exercise as handed out


def without_endpoint(request, endpoint=""):
    return solutions.stable_key(request)  # a wrong answer: two servers share a key


def test_the_reference_stands_in_for_an_untouched_exercise_and_says_so():
    verdict = grade(checks.check_stable_key, untouched, solutions.stable_key, "★")
    assert NOT_ATTEMPTED in verdict and "untouched returns None" in verdict and "passed" not in verdict


def test_passed_only_for_your_own_function():
    assert grade(checks.check_stable_key, solutions.stable_key, solutions.stable_key, "★★").startswith("★★ passed")


def test_a_wrong_answer_raises_the_checks_assertion():
    with pytest.raises(AssertionError):
        grade(checks.check_stable_key, without_endpoint, solutions.stable_key)


def test_what_a_check_measured_follows_the_verdict():
    assert grade(lambda fn: f"measured {fn(2)}", lambda x: x * 10, lambda x: x) == "★ passed: measured 20"
    assert grade(lambda fn: None if fn(1) else "?", lambda x: x, lambda x: x) == "★ passed"
    # a check that never called the function cannot say it passed
    assert NOT_ATTEMPTED in grade(lambda fn: None, lambda x: x, lambda x: x)


def test_a_file_is_read_afresh(tmp_path):
    path = tmp_path / "answer.py"
    path.write_text("VALUE = 1\n")
    assert load_file(path).VALUE == 1
    path.write_text("VALUE = 2\n")
    assert load_file(path).VALUE == 2
    with pytest.raises(ImportError, match="cannot load"):
        load_file(tmp_path / "notes.txt")
