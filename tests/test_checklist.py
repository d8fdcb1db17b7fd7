from week04_lib import checklist, errors


def test_every_row_passes(capsys):
    assert checklist.main([]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and out.count("PASS") == len(checklist.all_checks()) >= 20


def test_a_wrong_expectation_fails_the_row_and_the_exit_code(monkeypatch, capsys):
    wrong = checklist.one_call("503 taken for a bad key", ["503"], errors.AuthError, max_attempts=1)
    monkeypatch.setattr(checklist, "all_checks", lambda: [wrong])
    assert checklist.main([]) == 1
    assert "ServerError" in capsys.readouterr().out


def test_a_crashing_check_is_a_failed_row():
    def boom():
        raise RuntimeError("no")

    [row] = checklist.run_checks([checklist.Check("boom", "nothing", boom)])
    assert not row.passed and "RuntimeError" in row.observed


def test_the_wire_rows_catch_what_they_guard(monkeypatch):
    """A client that stops asking for gzip, or sends ``req_<hex>`` ids, fails its row."""
    rows = {check.scenario: check for check in checklist.all_checks()}
    gzip_row, uuid_row = rows["gzip-compressed reply"], rows["server takes UUID request ids only"]
    assert [r.passed for r in checklist.run_checks([gzip_row, uuid_row])] == [True, True]
    monkeypatch.setattr("week04_lib.transport.http.ACCEPT_ENCODING", "identity")
    monkeypatch.setattr("week04_lib.client.new_request_id", lambda: "req_0123abcd")
    [gzip, ids] = checklist.run_checks([gzip_row, uuid_row])
    assert not gzip.passed and gzip.observed.startswith("plain body")
    assert not ids.passed and "BadRequest" in ids.observed


def test_the_flaky_service_row_catches_a_fixed_retry_budget(monkeypatch):
    """The row guards issue 12: with the old fixed 10 % budget and no throttle, it fails."""
    row = {check.scenario: check for check in checklist.all_checks()}["30% of requests fail (200 calls)"]
    assert checklist.run_checks([row])[0].passed
    plain = checklist.client_for
    monkeypatch.setattr(checklist, "client_for", lambda url, **s: plain(url, **s, retry_budget=0.1, throttle_k=None))
    [old] = checklist.run_checks([row])
    assert not old.passed, old.observed
