"""Fallback chain, stale answers and the durable queue, against the fake server."""

import json
import logging
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import closing

import pytest

from week04_lib import ClientConfig, LLMClient, Timeouts, errors
from week04_lib.degrade import DrainReport, DurableQueue, first_success, stale_answer
from week04_lib.fakeserver import FakeLLMServer
from week04_lib.transport import Transport

from .conftest import HELLO


def ask(transport):
    return lambda model: transport.chat({"model": model, "messages": HELLO})


def test_primary_down_the_fallback_answers(caplog):
    caplog.set_level(logging.INFO, logger="week04_lib.degrade")
    with FakeLLMServer(model_faults={"big": "503"}, latency=0) as srv, Transport(srv.url) as t:
        model, answer = first_success(["big", "small"], ask(t), request_id="r1")
    assert model == "small" and answer.model == "small"
    assert [a.body["model"] for a in srv.attempts] == ["big", "small"]
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "fallback"]
    assert (record.model, record.error_type, record.request_id) == ("big", "server_error", "r1")


def test_a_permanent_error_stops_the_chain():
    with FakeLLMServer(model_faults={"big": "401"}, latency=0) as srv, Transport(srv.url) as t:
        with pytest.raises(errors.AuthError):
            first_success(["big", "small"], ask(t))
    assert len(srv.attempts) == 1


def test_an_open_circuit_moves_on():
    def call(model):
        if model == "big":
            raise errors.CircuitOpen("open", model=model)
        return "answer"

    assert first_success(["big", "small"], call) == ("small", "answer")


def test_all_down_raises_every_error_chained():
    with FakeLLMServer(model_faults={"big": "503", "small": "reset"}, latency=0) as srv, Transport(srv.url) as t:
        with pytest.raises(errors.AllModelsFailed) as caught:
            first_success(["big", "small"], ask(t), request_id="r2")
    e = caught.value
    assert [type(x) for x in e.errors] == [errors.ServerError, errors.ConnectionFailed]
    assert e.__cause__ is e.errors[-1] and e.request_id == "r2"
    assert "big: ServerError" in str(e) and "small: ConnectionFailed" in str(e)


def test_no_models_is_bad_input():
    with pytest.raises(ValueError):
        first_success([], lambda m: m)


def test_stale_answer_from_any_store():
    assert stale_answer({"k": "earlier"}, "k") == "earlier"
    assert stale_answer({}, "k") is None and stale_answer(None, "k") is None


def test_queue_keeps_order_and_one_copy_per_request_id(tmp_path):
    q = DurableQueue(tmp_path / "q.sqlite")
    assert q.enqueue("a", {"n": 1}) and q.enqueue("b", {"n": 2})
    assert not q.enqueue("a", {"n": 3})
    assert [(p.request_id, p.request) for p in q.pending()] == [("a", {"n": 1}), ("b", {"n": 2})]
    assert len(q) == 2
    with pytest.raises(TypeError):
        q.enqueue("c", {"n": object()})
    assert len(q) == 2


def test_a_failed_send_stays_queued_with_its_error(tmp_path):
    q = DurableQueue(tmp_path / "q.sqlite")
    q.enqueue("a", {"model": "m", "messages": HELLO})
    with FakeLLMServer(["503", "ok"], latency=0) as srv, Transport(srv.url) as t:
        first = q.drain(lambda rid, req: t.chat(req, request_id=rid))
        assert first.sent == [] and "ServerError" in first.failed["a"]
        [item] = q.pending()
        assert item.tries == 1 and "ServerError" in item.last_error
        second = q.drain(lambda rid, req: t.chat(req, request_id=rid))
    assert second.sent == ["a"] and len(q) == 0 and second.results["a"].text


ENQUEUE_AND_DIE = textwrap.dedent("""
    import os, sys
    from week04_lib.degrade import DurableQueue
    q = DurableQueue(sys.argv[1])
    for i in range(3):
        q.enqueue(f"req-{i}", {"model": "m", "messages": [{"role": "user", "content": f"job {i}"}]})
    os._exit(0)  # no clean shutdown: only what enqueue made durable survives
""")


def test_queued_requests_survive_the_process_and_drain_exactly_once(tmp_path):
    path = tmp_path / "q.sqlite"
    subprocess.run([sys.executable, "-c", ENQUEUE_AND_DIE, str(path)], check=True, timeout=60)
    q = DurableQueue(path)
    assert [p.request_id for p in q.pending()] == ["req-0", "req-1", "req-2"]
    with FakeLLMServer(latency=0) as srv, Transport(srv.url) as t:
        report = q.drain(lambda rid, req: t.chat(req, request_id=rid))
        again = q.drain(lambda rid, req: t.chat(req, request_id=rid))
    assert report.sent == ["req-0", "req-1", "req-2"] and again.sent == []
    assert srv.billed_requests == 3 and len(srv.attempts) == 3


SEND_THEN_DIE = textwrap.dedent("""
    import os, sys
    from week04_lib.degrade import DurableQueue
    from week04_lib.transport import Transport
    path, url, lease_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
    transport = Transport(url)
    def send_then_die(rid, request):
        transport.chat(request, request_id=rid)  # answered and billed ...
        os._exit(0)  # ... then the process dies holding the claim, before marking it done
    DurableQueue(path, lease_s=lease_s).drain(send_then_die)
""")


def test_a_claimer_that_dies_mid_send_is_sent_again_once_its_lease_ends(tmp_path):
    path, lease_s = tmp_path / "q.sqlite", 0.3
    q = DurableQueue(path)
    q.enqueue("req-x", {"model": "m", "messages": HELLO})
    before = time.time()
    with FakeLLMServer(latency=0) as srv, Transport(srv.url) as t:
        subprocess.run([sys.executable, "-c", SEND_THEN_DIE, str(path), srv.url, str(lease_s)], check=True, timeout=60)
        died = time.time()
        send = lambda rid, req: t.chat(req, request_id=rid)  # noqa: E731
        # while the dead claimer's lease lasts (a clock stopped before the claim: no race)
        held = DurableQueue(path, clock=lambda: before).drain(send)
        assert (held.sent, held.failed, held.dead, len(q)) == ([], {}, {}, 1)
        time.sleep(max(0.0, died + lease_s - time.time()) + 0.05)  # the lease runs out
        report = q.drain(send)
    assert report.sent == ["req-x"] and len(q) == 0
    assert len(srv.attempts) == 2 and srv.billed_requests == 1  # sent again, replayed, billed once


DRAIN_ONE_OF_FOUR = textwrap.dedent("""
    import json, os, sys, time
    from week04_lib.degrade import DurableQueue
    path, log_path, gate = sys.argv[1:4]
    def send(rid, request):
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, f"{rid}\\n".encode())  # one append per send, whoever sends it
        finally:
            os.close(fd)
        time.sleep(0.01)  # a send takes a while, so the four drains overlap
        return rid
    queue = DurableQueue(path)
    print("ready", flush=True)
    while not os.path.exists(gate):  # all four start draining at once
        time.sleep(0.001)
    print(json.dumps(queue.drain(send).sent), flush=True)
""")


def test_four_processes_draining_one_queue_send_each_item_once(tmp_path):
    path, log_path, gate = tmp_path / "q.sqlite", tmp_path / "sent.log", tmp_path / "go"
    q = DurableQueue(path)
    ids = [f"req-{i:02d}" for i in range(20)]
    for rid in ids:
        q.enqueue(rid, {"model": "m", "messages": HELLO})
    drains = [
        subprocess.Popen(
            [sys.executable, "-c", DRAIN_ONE_OF_FOUR, str(path), str(log_path), str(gate)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for drain in drains:
            assert drain.stdout.readline().strip() == "ready"
        gate.touch()
        outputs = [drain.communicate(timeout=60)[0] for drain in drains]
    finally:
        for drain in drains:
            drain.kill()
            drain.wait()
    assert [drain.returncode for drain in drains] == [0, 0, 0, 0]
    reports = [json.loads(out) for out in outputs]
    assert sorted(log_path.read_text().split()) == ids  # every item sent, and only once
    assert sorted(rid for sent in reports for rid in sent) == ids
    assert sum(1 for sent in reports if sent) >= 2  # the drains really ran side by side
    assert len(q) == 0 and q.dead() == []


def test_a_permanent_failure_is_dead_lettered_reported_and_never_sent_again(tmp_path):
    q = DurableQueue(tmp_path / "q.sqlite")
    for rid in "abc":
        q.enqueue(rid, {"n": rid})
    refusals = {"a": errors.AuthError("bad key", status_code=401), "c": errors.InvalidRequest("no messages")}
    sent = []

    def send(rid, req):
        sent.append(rid)
        if rid in refusals:
            raise refusals[rid]
        return rid

    report = q.drain(send)
    assert report.sent == ["b"] and report.failed == {}
    assert report.dead == {"a": "AuthError: bad key (status=401)", "c": "InvalidRequest: no messages"}
    assert [(d.request_id, d.tries, d.last_error) for d in q.dead()] == [
        ("a", 1, report.dead["a"]),
        ("c", 1, report.dead["c"]),
    ]
    assert len(q) == 0 and q.pending() == []
    again = q.drain(send)
    assert sent == ["a", "b", "c"] and again == DrainReport()
    assert not q.enqueue("a", {"n": "a"})  # a dead letter is not queued a second time


def test_an_unexpected_error_in_one_send_does_not_stop_the_rest(tmp_path):
    q = DurableQueue(tmp_path / "q.sqlite")
    for rid in "abc":
        q.enqueue(rid, {"n": rid})

    def send(rid, req):
        if rid == "a":
            raise KeyError("params")  # a bug in send, not the service
        return rid.upper()

    report = q.drain(send)
    assert report.sent == ["b", "c"] and report.results == {"b": "B", "c": "C"}
    assert report.failed == {"a": "KeyError: 'params'"} and report.dead == {}
    [item] = q.pending()  # kept for a later drain, its try counted
    assert (item.request_id, item.tries, item.last_error) == ("a", 1, "KeyError: 'params'")
    assert q.drain(lambda rid, req: rid).sent == ["a"] and len(q) == 0


def test_max_tries_dead_letters_an_item_that_never_passes(tmp_path):
    q = DurableQueue(tmp_path / "q.sqlite")
    q.enqueue("a", {"n": 1})

    def down(rid, req):
        raise errors.ServerError("overloaded", status_code=503)

    first = q.drain(down, max_tries=2)
    assert list(first.failed) == ["a"] and first.dead == {} and len(q) == 1
    second = q.drain(down, max_tries=2)
    assert second.failed == {} and second.dead["a"].endswith("(gave up after 2 tries)")
    assert [d.request_id for d in q.dead()] == ["a"] and len(q) == 0


OLD_SCHEMA = (  # the queue table as the first release wrote it
    "CREATE TABLE IF NOT EXISTS queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "request_id TEXT UNIQUE NOT NULL, request TEXT NOT NULL, enqueued_at REAL NOT NULL, "
    "tries INTEGER NOT NULL DEFAULT 0, last_error TEXT, done_at REAL)"
)


def test_a_queue_file_written_by_the_old_code_opens_and_drains(tmp_path):
    path = tmp_path / "q.sqlite"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(OLD_SCHEMA)
        db.executemany(
            "INSERT INTO queue (request_id, request, enqueued_at, tries, last_error, done_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                ("old-done", '{"n": 0}', 1.0, 1, None, 2.0),
                ("old-1", '{"n": 1}', 1.0, 2, "ServerError: 503", None),
                ("old-2", '{"n": 2}', 1.5, 0, None, None),
            ],
        )
    q = DurableQueue(path)
    assert [(p.request_id, p.request, p.tries, p.last_error) for p in q.pending()] == [
        ("old-1", {"n": 1}, 2, "ServerError: 503"),
        ("old-2", {"n": 2}, 0, None),
    ]
    report = q.drain(lambda rid, req: req["n"])
    assert report.sent == ["old-1", "old-2"] and report.results == {"old-1": 1, "old-2": 2}
    assert q.dead() == [] and len(q) == 0 and not q.enqueue("old-done", {"n": 0})
    assert len(DurableQueue(path)) == 0  # opening it again adds nothing twice


def test_drain_queue_reports_a_permanent_failure_as_dead(tmp_path):
    with FakeLLMServer(["503", "401"], latency=0) as srv:
        config = ClientConfig(
            base_url=srv.url,
            model="fake-mini",
            max_attempts=1,
            timeouts=Timeouts(connect=1, read=1, total=2),
            queue_path=str(tmp_path / "q.sqlite"),
        )
        with LLMClient(config) as client:
            with pytest.raises(errors.QueuedForLater) as caught:
                client.chat(HELLO)
            rid = caught.value.request_id
            report = client.drain_queue()  # the key was revoked meanwhile: 401
            again = client.drain_queue()
    assert report.sent == [] and report.failed == {} and list(report.dead) == [rid]
    assert report.dead[rid].startswith("AuthError") and again == DrainReport()
    assert len(srv.attempts) == 2 and [d.request_id for d in client.queue.dead()] == [rid]


def test_threads_enqueue_at_once_without_loss(tmp_path):
    q = DurableQueue(tmp_path / "q.sqlite")
    workers = [
        threading.Thread(target=lambda i=i: [q.enqueue(f"{i}-{j}", {"j": j}) for j in range(10)]) for i in range(8)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(q) == 80
