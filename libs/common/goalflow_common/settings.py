"""Settings shared by every service, read from the environment once at start-up.

Each service subclasses :class:`ServiceSettings` with its own fields. Field docstrings are
the documentation (``use_attribute_docstrings``); the README lists the variables.

TLS is optional and off by default: ``tls_cert_file`` + ``tls_key_file`` make this
service's servers (gRPC, and the export service's download HTTP server) serve TLS only, and
``tls_ca_file`` makes its calls to the other services use TLS, verified against that CA.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from goalflow_common.tokens import TokenAuthority, parse_token_keys


class ServiceSettings(BaseSettings):
    """What every goalflow server needs."""

    model_config = SettingsConfigDict(
        env_prefix="GOALFLOW_", use_attribute_docstrings=True, extra="ignore", frozen=True
    )

    mongodb_uri: str = Field(
        default="mongodb://127.0.0.1:27117", validation_alias="MONGODB_URI"
    )
    """MongoDB connection string (env ``MONGODB_URI``): the embedded nx-27017 server by
    default, or a real replica set."""

    auth_db_name: str = "goalflow_auth"
    """Database holding accounts and hashed API keys, read by every service."""

    grpc_host: str = "127.0.0.1"
    """Interface the gRPC server binds to."""

    log_level: str = "INFO"
    """Minimum log level: DEBUG, INFO, WARNING or ERROR."""

    shutdown_grace_s: float = 10.0
    """On SIGTERM: seconds in-flight RPCs get to finish after streams are told to end."""

    key_cache_ttl_s: float = 30.0
    """Seconds a verified API key is trusted before it is looked up again (revocation delay)."""

    max_message_bytes: int = 8 * 1024 * 1024
    """Largest gRPC message accepted or sent, in bytes."""

    mongo_connect_attempts: int = 8
    """How many times start-up tries to reach MongoDB before giving up (exponential backoff)."""

    service_api_key: str = ""
    """Platform service key this service uses to call the others (``service`` role)."""

    token_keys: SecretStr = SecretStr("")
    """Keys that sign and verify browser tokens (:mod:`goalflow_common.tokens`):
    ``kid:secret`` pairs, comma separated, each secret at least 32 bytes. The first signs,
    all verify (rotation). Empty (the default): tokens are neither minted nor accepted."""

    token_ttl_s: int = Field(default=900, gt=0)
    """Lifetime of a minted token when the caller asks for none (15 minutes)."""

    token_max_ttl_s: int = Field(default=3600, gt=0)
    """Longest lifetime a caller may ask for."""

    tls_cert_file: str = ""
    """PEM certificate (chain) this service's servers present. Set together with
    ``tls_key_file``: the gRPC port then serves TLS only (and the export service's download
    server HTTPS only). Empty (the default): plaintext. The certificate must name the host
    clients dial (DNS name or IP address)."""

    tls_key_file: str = ""
    """PEM private key of ``tls_cert_file``."""

    tls_ca_file: str = ""
    """PEM CA certificate(s) this service trusts when it calls the other services (config and
    tracker calling each other, export calling both): set, those calls use TLS and verify the
    peer against it; empty (the default), they are plaintext."""

    @model_validator(mode="after")
    def _tls_pair(self) -> ServiceSettings:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file: set both or neither")
        return self

    @model_validator(mode="after")
    def _token_keys(self) -> ServiceSettings:
        parse_token_keys(self.token_keys.get_secret_value())  # fail at start-up, not per call
        if self.token_ttl_s > self.token_max_ttl_s:
            raise ValueError("token_ttl_s: at most token_max_ttl_s")
        return self

    def token_authority(self) -> TokenAuthority:
        """The minter and verifier of browser tokens these settings describe."""
        return TokenAuthority(
            parse_token_keys(self.token_keys.get_secret_value()),
            default_ttl_s=self.token_ttl_s, max_ttl_s=self.token_max_ttl_s,
        )

    @property
    def tls_enabled(self) -> bool:
        """Whether this service's servers serve TLS."""
        return bool(self.tls_cert_file)

    def grpc_server_credentials(self) -> grpc.ServerCredentials | None:
        """Credentials for the gRPC port, or None for plaintext."""
        context = self.http_ssl_context()  # checks that the files are a usable pair
        if context is None:
            return None
        key = read_pem("tls_key_file", self.tls_key_file)
        cert = read_pem("tls_cert_file", self.tls_cert_file)
        return grpc.ssl_server_credentials([(key, cert)])

    def grpc_channel_credentials(self) -> grpc.ChannelCredentials | None:
        """Credentials for calls to the other services, or None for plaintext."""
        if not self.tls_ca_file:
            return None
        return grpc.ssl_channel_credentials(read_pem("tls_ca_file", self.tls_ca_file))

    def http_ssl_context(self) -> ssl.SSLContext | None:
        """TLS context for an HTTP server of this service, or None for plain HTTP."""
        if not self.tls_enabled:
            return None
        read_pem("tls_cert_file", self.tls_cert_file)  # a clear error naming the setting
        read_pem("tls_key_file", self.tls_key_file)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        except ssl.SSLError as exc:
            raise ValueError(f"tls_key_file: not the key of tls_cert_file ({exc})") from None
        return context


def read_pem(setting: str, path: str) -> bytes:
    """The PEM file a TLS setting names; ValueError naming the setting if it is unusable."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{setting}: cannot read {path!r}: {exc.strerror}") from None
    if b"-----BEGIN " not in data:
        raise ValueError(f"{setting}: {path!r} is not a PEM file")
    return data
