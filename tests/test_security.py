"""Kafka TLS/SASL and Redis TLS/ACL settings reach the clients exactly as configured.

A hospital's platform team configures security through VITALWATCH_* variables only; these
tests hold the path from those settings to the credentials aiokafka (through Faust) and
redis-py are given, and check that an incomplete combination stops the worker at start with
the variable's name rather than connecting without authentication.

Tansu 0.6 (the embedded broker) cannot serve as a SASL or TLS peer: with ``--authentication``
its memory storage starts with no users and refuses the user-creation request itself (it needs
authentication), without it every SASL handshake is answered UnsupportedSaslMechanism, and its
``--cert``/``--key`` options conflict with each other (a certificate alone leaves the listener
in plaintext). So the end-to-end check here is the one Tansu can give: a worker configured
for SASL refuses to talk to a broker that does not authenticate, instead of downgrading.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from worker.stream.app import VitalwatchApp, faust_options, kafka_credentials
from worker.operations.config import ENV_PREFIX, load_settings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throw-away CA and a client certificate/key signed by nobody (self-signed), in PEM."""
    root = tmp_path_factory.mktemp("pki")
    for name in ("ca", "client"):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN=vw-{name}",
             "-keyout", str(root / f"{name}.key"), "-out", str(root / f"{name}.pem")],
            check=True, capture_output=True,
        )
    return {"ca": root / "ca.pem", "cert": root / "client.pem", "key": root / "client.key"}


def aiokafka_auth(**settings: object) -> dict[str, object]:
    """What Faust hands aiokafka for these settings (its own conversion, not a copy of it)."""
    return dict(credentials_to_aiokafka_auth(kafka_credentials(load_settings(**settings))))


def test_plaintext_is_the_default_and_carries_no_credentials() -> None:
    assert kafka_credentials(load_settings()) is None
    assert aiokafka_auth() == {"security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext_passes_mechanism_user_and_password(mechanism: str) -> None:
    auth = aiokafka_auth(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism=mechanism,
                         kafka_sasl_username="vitalwatch", kafka_sasl_password="s3cret")
    assert auth == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism, "sasl_plain_username": "vitalwatch",
        "sasl_plain_password": "s3cret", "ssl_context": None,
    }


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_adds_a_verifying_tls_context(mechanism: str, pki: dict[str, Path]) -> None:
    auth = aiokafka_auth(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism=mechanism, kafka_sasl_username="u",
                         kafka_sasl_password="p", kafka_ssl_cafile=pki["ca"])
    assert (auth["security_protocol"], auth["sasl_mechanism"], auth["sasl_plain_username"]) == ("SASL_SSL", mechanism, "u")
    context = auth["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any(c["subject"] == ((("commonName", "vw-ca"),),) for c in context.get_ca_certs()), "the site's CA is trusted"


def test_ssl_with_client_certificate_for_mutual_tls(pki: dict[str, Path]) -> None:
    auth = aiokafka_auth(kafka_security_protocol="SSL", kafka_ssl_cafile=pki["ca"],
                         kafka_ssl_certfile=pki["cert"], kafka_ssl_keyfile=pki["key"])
    assert auth["security_protocol"] == "SSL"
    context = auth["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    assert "sasl_mechanism" not in auth


def test_the_faust_app_is_built_with_those_credentials() -> None:
    settings = load_settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-512",
                             kafka_sasl_username="svc", kafka_sasl_password="pw")
    app = VitalwatchApp("security-test", **faust_options(settings))
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert (auth["security_protocol"], auth["sasl_mechanism"], auth["sasl_plain_username"]) == ("SASL_PLAINTEXT", "SCRAM-SHA-512", "svc")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_PASSWORD": "pw"}, "VITALWATCH_KAFKA_SASL_USERNAME: required with SASL_SSL"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "svc"}, "VITALWATCH_KAFKA_SASL_PASSWORD: required"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "svc", "KAFKA_SASL_PASSWORD": "pw",
          "KAFKA_SASL_MECHANISM": "GSSAPI"}, "VITALWATCH_KAFKA_SASL_MECHANISM: must be one of"),
    ],
)
def test_an_incomplete_security_setting_stops_the_worker_at_start_naming_the_variable(env: dict[str, str], named: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "worker"], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**clean, **{ENV_PREFIX + k: v for k, v in env.items()}},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert named in result.stderr
    assert "pw" not in result.stderr.replace("password", ""), "the password is never echoed"


@pytest.mark.integration
def test_a_sasl_client_refuses_a_broker_that_does_not_authenticate(broker) -> None:
    """No silent downgrade: SASL settings against the (non-authenticating) embedded broker fail
    the connection instead of talking to it in plaintext."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError

    auth = aiokafka_auth(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-256",
                         kafka_sasl_username="svc", kafka_sasl_password="pw")

    async def connect() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=5000, **auth)
        try:
            with pytest.raises(KafkaConnectionError):
                await asyncio.wait_for(producer.start(), 20)
        finally:
            await producer.stop()

    asyncio.run(connect())


def test_redis_url_credentials_and_tls_reach_redis_py() -> None:
    """The worker's Redis client (worker.stream.app.Runtime) takes user, password, TLS and database
    from VITALWATCH_REDIS_URL alone."""
    import redis.asyncio as aioredis

    from worker.stream.app import Runtime, app
    from worker.operations.metrics import Metrics

    tls = Runtime(app, load_settings(redis_url="rediss://vitalwatch:s%40cret@redis.ward.example:6380/3"), Metrics())
    pool = tls.redis.connection_pool
    assert pool.connection_class is aioredis.SSLConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["host"], kwargs["port"], kwargs["db"]) == (
        "vitalwatch", "s@cret", "redis.ward.example", 6380, 3)
    plain = Runtime(app, load_settings(redis_url="redis://:only-password@127.0.0.1:6379/0"), Metrics())
    assert plain.redis.connection_pool.connection_class is aioredis.Connection
    assert plain.redis.connection_pool.connection_kwargs["password"] == "only-password"
