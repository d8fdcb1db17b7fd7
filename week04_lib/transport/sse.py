"""Server-sent events of a streamed chat completion: the events' data, and the chunks
put back together into one chat completion.

Taught in notebook 01, section 1.7. A stream is ``data: {chunk}`` events separated by
blank lines, lines starting with ``:`` are comments (keep-alives), and ``data: [DONE]``
ends it. Each chunk carries a ``delta``: a few characters of text, a piece of a tool
call, or the ``finish_reason``; with ``stream_options.include_usage`` a last chunk
carries the ``usage``. Nothing here touches time: ``stream.py`` reads within the limits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .body import CHUNK, _Decoder

__all__ = ["DONE", "Assembler", "sse_data"]

DONE = "[DONE]"


def sse_data(read1: Callable[[int], bytes], content_encoding: str = "", max_line: int = 2**22) -> Iterator[str]:
    """The data of each event, as text, until the connection ends. Comments and the
    other fields (``event:``, ``id:``, ``retry:``) are skipped; a line longer than
    ``max_line`` bytes is a ValueError (a server that never ends its line)."""
    decoder = _Decoder(content_encoding) if content_encoding in ("gzip", "x-gzip", "deflate") else None
    buffer = b""
    data: list[str] = []
    while chunk := read1(CHUNK):
        if decoder is not None:
            chunk = decoder.decode(chunk, max_line)[0]
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        if len(buffer) > max_line:
            raise ValueError(f"an event line is longer than {max_line} bytes")
        for line in lines:
            line = line.rstrip(b"\r")
            if not line and data:  # a blank line ends the event
                yield "\n".join(data)
                data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append((value[1:] if value.startswith(b" ") else value).decode("utf-8", "replace"))


class Assembler:
    """Puts chunks back together: ``add(chunk)`` returns the first choice's new text;
    ``completion_json()`` is the chat completion the chunks add up to."""

    def __init__(self) -> None:
        self.id: str | None = None
        self.model = ""
        self.created = 0
        self.usage: Any = None
        self._choices: dict[int, dict[str, Any]] = {}

    @property
    def text(self) -> str:
        return "".join(self._choice(0)["content"])

    @property
    def started(self) -> bool:
        """A first token: text, a tool call or a finish reason (an empty answer)."""
        return any(c["content"] or c["tool_calls"] or c["finish_reason"] for c in self._choices.values())

    @property
    def finished(self) -> bool:
        return self._choice(0)["finish_reason"] is not None

    def _choice(self, index: int) -> dict[str, Any]:
        return self._choices.setdefault(index, {"content": [], "tool_calls": {}, "finish_reason": None})

    def add(self, chunk: Any) -> str:
        """Take one chunk; ValueError if it is not the shape of one."""
        if not isinstance(chunk, dict) or not isinstance(chunk.get("choices"), list):
            raise ValueError("a chunk must be an object with a 'choices' list")
        self.id = self.id or chunk.get("id")
        self.model = self.model or str(chunk.get("model") or "")
        self.created = self.created or chunk.get("created") or 0
        if chunk.get("usage") is not None:
            self.usage = chunk["usage"]
        new = ""
        for choice in chunk["choices"]:
            if not isinstance(choice, dict) or not isinstance(choice.get("delta", {}), dict):
                raise ValueError("a choice must be an object with a 'delta' object")
            index = choice.get("index", 0)
            state = self._choice(index if isinstance(index, int) else 0)
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content is not None and not isinstance(content, str):
                raise ValueError(f"delta.content is {type(content).__name__}, not text")
            if content:
                state["content"].append(content)
                new += content if index == 0 else ""
            for call in delta.get("tool_calls") or []:
                _merge_tool_call(state["tool_calls"], call)
            if choice.get("finish_reason"):
                state["finish_reason"] = str(choice["finish_reason"])
        return new

    def completion_json(self) -> dict[str, Any]:
        """A ``chat.completion`` object, as the same request without streaming returns it."""
        choices = []
        for index in sorted(self._choices):
            state = self._choices[index]
            message: dict[str, Any] = {"role": "assistant", "content": "".join(state["content"])}
            if state["tool_calls"]:
                message["tool_calls"] = [state["tool_calls"][i] for i in sorted(state["tool_calls"])]
                message["content"] = message["content"] or None
            choices.append({"index": index, "message": message, "finish_reason": state["finish_reason"]})
        reply = {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model}
        return {**reply, "choices": choices, "usage": self.usage}


def _merge_tool_call(calls: dict[int, dict[str, Any]], piece: Any) -> None:
    """A tool call arrives in pieces: its id and name first, its arguments a few
    characters at a time, all under one ``index``."""
    if not isinstance(piece, dict):
        raise ValueError("a tool call delta must be an object")
    index = piece.get("index", len(calls))
    call = calls.setdefault(index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    call["id"] = piece.get("id") or call["id"]
    call["type"] = piece.get("type") or call["type"]
    function = piece.get("function") or {}
    call["function"]["name"] += function.get("name") or ""
    call["function"]["arguments"] += function.get("arguments") or ""
