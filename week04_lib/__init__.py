"""week04_lib: call LLM APIs reliably and cheaply.

Timeouts, typed errors, retries with backoff, rate limiting, caching, structured logs,
a circuit breaker and cost tracking, and a local fake server that misbehaves on request.
"""

from . import errors
from .client import ChatResult, LLMClient
from .config import ClientConfig, Timeouts
from .embed import EmbeddingResult
from .stream import ChatStream

__all__ = ["ChatResult", "ChatStream", "ClientConfig", "EmbeddingResult", "LLMClient", "Timeouts", "errors"]
__version__ = "0.1.0"
