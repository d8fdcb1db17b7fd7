"""Fallback chain, stale answers and the durable queue, against the fake server."""

import logging
import subprocess
import sys
import textwrap
import threading

import pytest

from week04_lib import errors
from week04_lib.degrade import DurableQueue, first_success, stale_answer
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


def test_a_crash_between_send_and_mark_is_replayed_not_rebilled(tmp_path):
    q = DurableQueue(tmp_path / "q.sqlite")
    q.enqueue("req-x", {"model": "m", "messages": HELLO})

    class Crash(Exception):
        pass

    with FakeLLMServer(latency=0) as srv, Transport(srv.url) as t:

        def send_then_die(rid, req):
            t.chat(req, request_id=rid)
            raise Crash  # the answer arrived, the process died before marking it done

        with pytest.raises(Crash):
            q.drain(send_then_die)
        assert len(q) == 1
        report = q.drain(lambda rid, req: t.chat(req, request_id=rid))
    assert report.sent == ["req-x"] and len(srv.attempts) == 2 and srv.billed_requests == 1


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
