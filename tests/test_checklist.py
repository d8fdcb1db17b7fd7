import contextlib
import io

import pytest

from week04_lib import checklist, errors

FLAKY = "30% of requests fail (200 calls)"


@pytest.fixture(scope="module")
def demo():
    """One ``make demo`` (``checklist.main([])``, ~10 s) for the whole file: its exit code,
    what it printed, and the rows it printed them from (``run_checks`` is watched, not
    replaced), so that tests about LLMClient's rows read them instead of running them again."""
    real, rows = checklist.run_checks, []

    def watched(*args, **kwargs):
        made = real(*args, **kwargs)
        rows.extend(made)
        return made

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setattr(checklist, "run_checks", watched)
        code = checklist.main([])
    return code, out.getvalue(), {row.scenario: row for row in rows}


def test_every_row_passes(demo):
    code, out, rows = demo
    assert code == 0, out
    assert "FAIL" not in out and out.count("PASS") == len(checklist.all_checks()) == len(rows) >= 20, out


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


def test_the_flaky_service_row_catches_a_fixed_retry_budget(demo, monkeypatch):
    """The row guards issue 12: with the old fixed 10 % budget and no throttle, it fails."""
    assert demo[2][FLAKY].passed  # today's LLMClient passes it
    row = {check.scenario: check for check in checklist.all_checks()}[FLAKY]
    plain = checklist.client_for
    monkeypatch.setattr(checklist, "client_for", lambda url, **s: plain(url, **s, retry_budget=0.1, throttle_k=None))
    [old] = checklist.run_checks([row])
    assert not old.passed, old.observed


class OneShot:
    """A plain client, no LLMClient: one Transport attempt per call, no retries, no cache."""

    def __init__(self, base_url, **settings):
        from week04_lib.transport import Transport

        self.settings = settings
        self.transport = Transport(base_url)

    def chat(self, messages, **params):
        payload = {"model": self.settings["model"], "messages": messages, **params}
        return self.transport.chat(payload, timeouts=self.settings["timeouts"])

    def close(self):
        self.transport.close()


def _rows(*scenarios):
    return [check for check in checklist.all_checks() if check.scenario in scenarios]


def test_any_object_with_chat_is_graded_and_llmclient_only_rows_are_not_applicable():
    made = []

    def make_client(url, **settings):
        made.append(settings)
        return OneShot(url, **settings)

    checks = _rows("503 then ok", "401 (bad key): not retried", "primary model down (503)", "3 x 503: breaker")
    rows = checklist.run_checks(checks, make_client=make_client)
    assert [r.result for r in rows] == ["FAIL", "PASS", "n/a", "n/a"], checklist.format_rows(rows)
    assert rows[0].observed == "ServerError after 1 request(s)"  # no retries: the row says so
    assert "fallback_models" in rows[2].observed and "breaker_failures" in rows[3].observed
    assert all(set(s) <= set(checklist.PLAIN_SETTINGS) for s in made) and len(made) == 2
    table = checklist.format_rows(rows)
    assert "n/a" in table and table.count("FAIL") == 1


def test_llmclient_rows_are_unchanged_by_the_plain_path(demo):
    """The same rows through LLMClient (no factory: the demo's run) all apply and pass."""
    rows = [demo[2][scenario] for scenario in ("503 then ok", "primary model down (503)", "3 x 503: breaker")]
    assert [r.result for r in rows] == ["PASS", "PASS", "PASS"]
