from week04_lib import checklist, errors


def test_every_part01_row_passes(capsys):
    assert checklist.main([]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and out.count("PASS") == len(checklist.all_checks())


def test_a_wrong_expectation_fails_the_row_and_the_exit_code(monkeypatch, capsys):
    wrong = checklist.expect_error("503 as auth", "503", errors.AuthError)
    monkeypatch.setattr(checklist, "all_checks", lambda: [wrong])
    assert checklist.main([]) == 1
    assert "ServerError" in capsys.readouterr().out


def test_a_crashing_check_is_a_failed_row():
    def boom():
        raise RuntimeError("no")

    [row] = checklist.run_checks([checklist.Check("boom", "nothing", boom)])
    assert not row.passed and "RuntimeError" in row.observed
