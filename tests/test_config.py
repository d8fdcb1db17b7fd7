import pytest

from week04_lib import ClientConfig, Timeouts
from week04_lib.errors import InvalidRequest


@pytest.mark.parametrize(
    "name, expected",
    [("quick_chat", (3, 15, 18)), ("standard", (5, 30, 35)), ("long_form", (5, 90, 95)), ("embedding", (3, 10, 13))],
)
def test_presets_match_the_course_table(name, expected):
    t = Timeouts.preset(name)
    assert (t.connect, t.read, t.total) == expected


def test_stream_limits_fit_inside_each_preset_and_a_shorter_call():
    for name in ("quick_chat", "standard", "long_form"):
        t = Timeouts.preset(name)
        assert 0 < t.idle < t.first_token < t.total
    assert Timeouts.preset("embedding").first_token is None  # an embedding is never streamed
    short = Timeouts.preset("standard").within(4)
    assert (short.connect, short.read, short.total, short.first_token, short.idle) == (4, 4, 4, 4, 4)


@pytest.mark.parametrize("bad", [{"first_token": 0}, {"idle": -1}, {"idle": "5"}, {"first_token": float("inf")}])
def test_stream_limits_are_none_or_positive(bad):
    with pytest.raises(InvalidRequest, match=next(iter(bad))):
        Timeouts(**bad)


def test_unknown_preset_names_the_choices():
    with pytest.raises(InvalidRequest, match="quick_chat"):
        Timeouts.preset("fast")


@pytest.mark.parametrize("bad", [0, -1, "5", None, float("nan")])
def test_timeouts_must_be_positive_numbers(bad):
    with pytest.raises(ValueError):
        Timeouts(connect=bad)


def test_repr_hides_the_key():
    config = ClientConfig(base_url="http://127.0.0.1:1/v1", api_key="sk-live-very-secret")
    assert "sk-live-very-secret" not in repr(config)
    assert "***" in repr(config)


def test_from_env_reads_week04_variables():
    env = {
        "WEEK04_BASE_URL": "http://127.0.0.1:9/v1/",
        "WEEK04_API_KEY": "k1",
        "WEEK04_MODEL": "fake-mini",
        "WEEK04_FALLBACK_MODELS": "fake-large, other",
        "WEEK04_TIMEOUT_PRESET": "quick_chat",
        "WEEK04_READ_TIMEOUT": "7.5",
        "WEEK04_IDLE_TIMEOUT": "4",
        "WEEK04_EMBEDDING_MODEL": "fake-embed",
        "WEEK04_MAX_ATTEMPTS": "2",
        "WEEK04_SERVE_STALE": "yes",
        "WEEK04_CACHE": "sqlite:/tmp/x.sqlite",
        "WEEK04_RETRY_BUDGET": "off",
    }
    config = ClientConfig.from_env(env)
    assert config.base_url == "http://127.0.0.1:9/v1"
    assert config.api_key == "k1" and config.model == "fake-mini"
    assert config.fallback_models == ("fake-large", "other")
    assert config.timeouts == Timeouts(3, 7.5, 18, first_token=10, idle=4)
    assert config.embedding_model == "fake-embed"
    assert config.max_attempts == 2 and config.serve_stale is True
    assert config.cache == "sqlite:/tmp/x.sqlite"
    assert config.retry_budget is None and ClientConfig().retry_budget is None  # adaptive throttling instead
    assert ClientConfig().throttle_k == 2.0
    assert ClientConfig.from_env({"WEEK04_RETRY_BUDGET": "0.2"}).retry_budget == 0.2


def test_from_env_falls_back_to_openai_variables_and_overrides_win():
    config = ClientConfig.from_env({"OPENAI_API_KEY": "sk-o", "OPENAI_BASE_URL": "https://example.invalid/v1"})
    assert config.api_key == "sk-o" and config.base_url == "https://example.invalid/v1"
    assert ClientConfig.from_env({"WEEK04_API_KEY": "mine", "OPENAI_API_KEY": "theirs"}).api_key == "mine"
    assert ClientConfig.from_env({}, model="m2").model == "m2"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"WEEK04_MAX_ATTEMPTS": "many"}, "WEEK04_MAX_ATTEMPTS"),
        ({"WEEK04_SERVE_STALE": "maybe"}, "WEEK04_SERVE_STALE"),
        ({"WEEK04_TOTAL_TIMEOUT": "soon"}, "WEEK04_TOTAL_TIMEOUT"),
        ({"WEEK04_TIMEOUT_PRESET": "x"}, "preset"),
    ],
)
def test_bad_environment_values_say_which_variable(env, message):
    with pytest.raises(InvalidRequest, match=message):
        ClientConfig.from_env(env)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_url": "localhost:8000"},
        {"model": ""},
        {"max_attempts": 0},
        {"backoff_base": 2, "backoff_cap": 1},
        {"rpm": 0},
        {"cache": "mongodb://x"},
        {"timeouts": (1, 2, 3)},
    ],
)
def test_bad_config_is_a_clear_value_error(kwargs):
    with pytest.raises(ValueError):
        ClientConfig(**kwargs)
