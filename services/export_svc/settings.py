"""Settings of the export service (env prefix ``GOALFLOW_``)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from goalflow_common.settings import ServiceSettings


class ExportSettings(ServiceSettings):
    """The export service: zipped CSV exports, signed links, e-mail."""

    grpc_port: int = 50053
    """Port of the export gRPC server (0 picks a free one)."""

    http_port: int = 8083
    """Port of the HTTP server that serves signed download links (0 picks a free one)."""

    http_header_timeout_s: float = Field(default=5.0, gt=0)
    """Seconds a download connection gets to send its request head (and, with TLS, to
    finish the handshake); also how long an idle connection is kept open after a response."""

    http_max_connections: int = Field(default=256, ge=1)
    """Download connections open at once; more are answered 503 and closed."""

    public_base_url: str = "http://127.0.0.1:8083"
    """Base of the download links put in e-mails, as recipients reach the HTTP server; must
    be ``https://`` when ``tls_cert_file`` is set (the download server then serves HTTPS)."""

    export_db_name: str = "goalflow_export"
    """Database of the export service (jobs and files)."""

    tracker_address: str = "127.0.0.1:50052"
    """Tracker gRPC address: conversions are read with StreamConversions."""

    config_address: str = "127.0.0.1:50051"
    """Config gRPC address: the goal's name is read with GetGoal when a job is requested."""

    link_secret: SecretStr = SecretStr("")
    """HMAC key that signs download links; required, at least 32 bytes."""

    smtp_host: str = "127.0.0.1"
    """SMTP server that sends export e-mails."""

    smtp_port: int = 8025
    """Its port."""

    mail_from: str = "goalflow@localhost"
    """Sender address of export e-mails."""

    lease_s: float = 30.0
    """How long a worker's claim on a job lasts without renewal (a crashed worker's job is
    picked up after this)."""

    workers: int = 2
    """Jobs built at once by one export replica."""

    export_retry_deadline_s: float = Field(default=3600.0, ge=0)
    """How long a job keeps being retried while the tracker is unreachable, counted from its
    first failed try; then it fails with a reason saying so."""

    tracker_read_timeout_s: float = Field(default=30.0, gt=0)
    """Seconds a build waits for the tracker's next chunk of conversions before it counts
    the tracker as unreachable (a frozen tracker answers nothing)."""

    @model_validator(mode="after")
    def _links_match_tls(self) -> ExportSettings:
        if self.tls_enabled and not self.public_base_url.startswith("https://"):
            raise ValueError(
                "public_base_url: must start with https:// when tls_cert_file is set "
                "(the download server then serves HTTPS only)"
            )
        return self
