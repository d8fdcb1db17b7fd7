"""week04_lib: call LLM APIs reliably and cheaply.

Timeouts, typed errors, retries with backoff, rate limiting, caching, structured logs,
a circuit breaker and cost tracking, and a local fake server that misbehaves on request.
"""

from . import errors
from .client import ChatResult, LLMClient
from .config import ClientConfig, Timeouts

__all__ = ["ChatResult", "ClientConfig", "LLMClient", "Timeouts", "errors"]
__version__ = "0.1.0"
