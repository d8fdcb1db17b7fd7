import pytest

from week04_lib import errors


@pytest.mark.parametrize(
    "cls",
    [
        errors.LLMTimeout,
        errors.ConnectTimeout,
        errors.ReadTimeout,
        errors.DeadlineExceeded,
        errors.ConnectionFailed,
        errors.RateLimited,
        errors.ServerError,
        errors.InvalidResponse,
    ],
)
def test_transient_errors_are_retryable(cls):
    assert issubclass(cls, errors.TransientError) and not issubclass(cls, errors.PermanentError)


@pytest.mark.parametrize("cls", [errors.AuthError, errors.NotFound, errors.BadRequest])
def test_permanent_errors_are_not(cls):
    assert issubclass(cls, errors.PermanentError) and not issubclass(cls, errors.TransientError)


def test_every_error_type_is_distinct():
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.LLMError)]
    assert len({c.error_type for c in classes}) == len(classes)


def test_context_is_kept_and_shown():
    e = errors.RateLimited("slow down", retry_after=2.0, request_id="r-1", model="m", attempt=3, status_code=429)
    assert (e.retry_after, e.request_id, e.model, e.attempt, e.status_code) == (2.0, "r-1", "m", 3, 429)
    assert str(e) == "slow down (model=m, status=429, attempt=3, request_id=r-1)"


def test_invalid_request_is_a_value_error():
    assert issubclass(errors.InvalidRequest, ValueError)
