"""Sentinel URLs and the Celery options they turn into (no server needed)."""

from __future__ import annotations

import pytest

from vidgo_stems.celeryconfig import celery_config
from vidgo_stems.errors import ConfigError
from vidgo_stems.redisconn import client_options, connect, is_sentinel, parse_sentinel_url
from vidgo_stems.settings import Settings

URL = "sentinel://:p%40ss@s1:26379/2;sentinel://s2:26380;sentinel://s3"


def test_a_sentinel_url_lists_every_sentinel_and_the_data_nodes_login_and_db():
    service = parse_sentinel_url(URL)
    assert service.sentinels == (("s1", 26379), ("s2", 26380), ("s3", 26379))
    assert service.db == 2 and service.password == "p@ss" and service.username is None
    assert is_sentinel(URL) and not is_sentinel("redis://r:6379/0")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sentinel://s1:26379;redis://r:6379", "is not a sentinel://host:port address"),
        ("sentinel://s1:port", "port that is not a number"),
        ("sentinel://s1:26379/zero", "the database must be a number"),
    ],
)
def test_a_malformed_sentinel_url_is_one_line_saying_what_to_write(url, says):
    with pytest.raises(ConfigError, match=says) as caught:
        parse_sentinel_url(url)
    assert "\n" not in caught.value.message


def test_sentinel_needs_the_service_name_and_says_where_it_comes_from():
    settings = Settings(redis_url=URL)
    with pytest.raises(ConfigError, match="VIDGO_STEMS_REDIS_SENTINEL_MASTER"):
        connect(settings)
    with pytest.raises(ConfigError, match="VIDGO_STEMS_REDIS_SENTINEL_MASTER"):
        celery_config(settings)


def test_celery_gets_the_master_name_and_failover_options_for_broker_and_results():
    settings = Settings(
        redis_url=URL, redis_sentinel_master="vidgo", redis_sentinel_password="sentinel-pw"
    )
    config = celery_config(settings)
    assert config["broker_url"] == config["result_backend"] == URL
    assert config["broker_channel_error_retry"] is True
    assert config["redis_socket_timeout"] == settings.redis_socket_timeout_s
    assert config["redis_socket_keepalive"] is True
    assert config["result_backend_always_retry"] is True
    for key in ("broker_transport_options", "result_backend_transport_options"):
        options = config[key]
        assert options["master_name"] == "vidgo"
        assert options["sentinel_kwargs"]["password"] == "sentinel-pw"
        assert options["socket_timeout"] == settings.redis_socket_timeout_s
        assert options["socket_keepalive"] is True
        assert options["visibility_timeout"] == settings.visibility_timeout_s


def test_a_plain_redis_url_keeps_the_plain_configuration():
    config = celery_config(Settings(redis_url="redis://r:6379/0"))
    assert "master_name" not in config["broker_transport_options"]


def test_ledger_clients_retry_through_a_failover_on_connection_timeout_and_readonly():
    from redis.exceptions import ConnectionError, ReadOnlyError, TimeoutError

    from vidgo_stems.redisconn import NoReplicasError

    options = client_options(Settings(redis_retries=7))
    retried = {ConnectionError, TimeoutError, ReadOnlyError, NoReplicasError}
    assert set(options["retry_on_error"]) == retried
    assert options["retry"]._retries == 7
    assert options["socket_keepalive"] is True and options["health_check_interval"] > 0


def test_login_and_database_come_from_the_first_address_as_celery_reads_them():
    service = parse_sentinel_url("sentinel://s1:26379/1;sentinel://:later@s2:26379/5")
    assert service.db == 1 and service.password is None


@pytest.mark.parametrize(
    "reply",
    [
        "NOREPLICAS Not enough good replicas to write.",  # Redis 7, and any plain write
        "ERR Error running script (call to f_1): @user_script:31: @user_script: 31: "
        "-NOREPLICAS Not enough good replicas to write.",  # Redis 6, a script's write
    ],
)
def test_noreplicas_is_its_own_error_however_the_server_words_it(reply):
    from vidgo_stems.redisconn import NoReplicasError, _Parser

    error = _Parser.parse_error(reply)
    assert isinstance(error, NoReplicasError) and "Not enough good replicas" in str(error)
    assert not isinstance(_Parser.parse_error("ERR Error running script: oops"), NoReplicasError)
