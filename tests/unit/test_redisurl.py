"""REDIS_URL and the URL settings: every mistake refused when settings are read, one line that
says what to write, and never the URL itself (it may carry a password)."""

from __future__ import annotations

import pytest

from vidgo_stems.errors import ConfigError
from vidgo_stems.redisconn import BoundedHandshakeSSLConnection, connect
from vidgo_stems.settings import Settings, load_settings

SECRET = "s3cr3t-pw-77"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"redis://:{SECRET}@localhost:notaport/0", "port of localhost is not a number"),
        (f"redis://:{SECRET}@localhost:99999/0", "port of localhost is not a number"),
        (f"redis://:{SECRET}@localhost:0/0", "from 1 to 65535"),
        (f"redis://:{SECRET}@localhost:/0", "port of localhost is not a number"),
        (f"redis://:{SECRET}@h:6379/0?socket_timeout=abc", "socket_timeout must be a number"),
        (f"redis://:{SECRET}@h:6379/0?socket_timeout=-1", "socket_timeout must be a number"),
        (f"redis://:{SECRET}@h:6379/0?socket_keepalive=maybe", "must be true or false"),
        (f"redis://:{SECRET}@h:6379/0?foo=1", "knows no option 'foo'"),
        (f"redis://:{SECRET}@h:6379/0?{SECRET}", "name=value pairs"),
        (f"redis://:{SECRET}@h:6379/0?db=2", "after the last /"),
        (f"redis://:{SECRET}@h:6379/0?ssl_cert_reqs=none", "write rediss://"),
        (f"redis://:{SECRET}@h:6379/abc", "database (after the last /) must be a whole number"),
        (f"redis://:{SECRET}@h:6379/-1", "must be a whole number"),
        ("redis://", "names no host"),
        (f"redis://:{SECRET}@/0", "names no host"),
        (f"rediss://:{SECRET}@h:6380/0", "needs ?ssl_cert_reqs=required"),
        (f"rediss://:{SECRET}@h:6380/0?ssl_cert_reqs=sometimes", "required, optional or none"),
        ("unix://", "names no socket"),
        (f"{SECRET}://h", "must start with redis://"),
        (f"sentinel://:{SECRET}@/0;sentinel://s2:26379", "address 1 is not a sentinel://"),
        (f"sentinel://:{SECRET}@s1:port", "port that is not a number"),
        (f"sentinel://:{SECRET}@s1:26379/zero", "the database must be a number"),
    ],
)
def test_redis_url_mistakes_are_refused_with_one_line_that_never_shows_the_url(url, says):
    with pytest.raises(ConfigError, match="REDIS_URL") as caught:
        load_settings(redis_url=url)
    message = caught.value.message
    assert says in message and "\n" not in message
    assert SECRET not in message


@pytest.mark.parametrize(
    "url",
    [
        "redis://redis-host:6379/0",
        "redis://:p%40ss@redis-host/15",
        "redis://user:pw@10.0.0.5:6380",
        "redis://h:6379/0?socket_timeout=5&socket_keepalive=true&health_check_interval=10",
        "rediss://h:6380/0?ssl_cert_reqs=required",
        "rediss://h:6380/0?ssl_cert_reqs=CERT_NONE&ssl_ca_certs=/etc/ca.pem",
        "unix:///run/redis.sock",
        "unix:///run/redis.sock?db=3",
        "sentinel://:pw@s1:26379/0;sentinel://s2:26379;sentinel://s3",
        "redis://[::1]:6379/0",
    ],
)
def test_redis_urls_every_client_reads_alike_are_accepted(url):
    assert Settings(redis_url=url).redis_url == url


@pytest.mark.parametrize("field", ["vidgo_base_url", "public_base_url", "default_webhook_url"])
@pytest.mark.parametrize(
    "url",
    [
        f"ftp://admin:{SECRET}@host/",
        f"https://admin:{SECRET}@",
        f"https://admin:{SECRET}@host:port/",
        f"{SECRET}",
    ],
)
def test_url_settings_never_echo_what_was_given(field, url):
    with pytest.raises(ConfigError) as caught:
        load_settings(**{field: url})
    assert SECRET not in caught.value.message
    assert "must be an http(s) URL" in caught.value.message or "port" in caught.value.message


@pytest.mark.parametrize(
    ("field", "name"), [("stems_dir", "STEMS_DIR"), ("scratch_dir", "SCRATCH")]
)
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_folder_setting_is_refused_not_read_as_the_current_folder(field, name, value):
    with pytest.raises(ConfigError, match=f"{name}.*is empty: name a folder"):
        load_settings(**{field: value})


def test_an_empty_stems_dir_in_the_environment_is_refused(monkeypatch):
    monkeypatch.setenv("STEMS_DIR", "")
    with pytest.raises(ConfigError, match="STEMS_DIR: is empty"):
        load_settings()


def test_tls_clients_bound_the_handshake_and_plain_ones_the_connect():
    tls = connect(Settings(redis_url="rediss://h:6380/0?ssl_cert_reqs=none"))
    assert tls.connection_pool.connection_class is BoundedHandshakeSSLConnection
    plain = connect(Settings(redis_url="redis://h:6379/0", redis_socket_timeout_s=2.5))
    assert plain.connection_pool.connection_kwargs["socket_connect_timeout"] == 2.5
