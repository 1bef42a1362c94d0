"""The web console as the edge serves it: the built files of one directory, read once at
start-up and answered from memory.

Contract of :class:`Site`: :meth:`Site.load` reads every regular file under the directory
(web/dist/console, ``make web``) into a table keyed by URL path (``/`` is ``index.html``);
:meth:`Site.find` answers only paths in that table, so nothing outside the directory (not
through a symbolic link either), no dot-file and nothing added after start-up can ever be
served. Each file carries its type, an ETag, and a gzip copy when that is smaller; the
console's page forbids framing and loading code from anywhere but this origin
(:data:`SECURITY_HEADERS`).

Why in memory: the build is a few files of 6.5 MB in all (measured: console.js 816 KB,
270 KB gzipped; the embed 150 KB; 5.6 MB of source maps, served so that a browser's
developer tools show the TypeScript; the source is no secret), about 8 MB with the gzip
copies, so a table costs little and makes path traversal impossible by construction rather
than by checks on each request."""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# The console's own code only (no inline script, nothing from elsewhere); calls go to this
# origin. Styles may be inline: the chart library sets element styles. The embed's example
# page is framed by nobody either; the embed script itself is loaded by other origins.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'; object-src 'none'")
SECURITY_HEADERS = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
)
CACHE_CONTROL = "no-cache"  # revalidated each time (ETag): file names carry no hash


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str


@dataclass(frozen=True, slots=True)
class Site:
    assets: dict[str, Asset]

    @classmethod
    def load(cls, directory: Path) -> Site:
        """Every file under ``directory``; ValueError if it has no ``index.html``."""
        assets: dict[str, Asset] = {}
        root = directory.resolve()
        for path in sorted(directory.rglob("*")):
            relative = path.relative_to(directory)
            if not path.is_file() or any(part.startswith(".") for part in relative.parts):
                continue
            target = path.resolve()
            if not target.is_relative_to(root) or any(
                    part.startswith(".") for part in target.relative_to(root).parts):
                continue  # a symbolic link out of the directory, or to a dot-file in it
            body = path.read_bytes()
            assets["/" + relative.as_posix()] = _asset(path.suffix, body)
        if "/index.html" not in assets:
            raise ValueError(f"console_dir: {directory} has no index.html "
                             "(build the console with `make web`)")
        assets["/"] = assets["/index.html"]
        return cls(assets)

    def find(self, path: str) -> Asset | None:
        return self.assets.get(path)


def _asset(suffix: str, body: bytes) -> Asset:
    content_type = TYPES.get(suffix) or mimetypes.guess_type(f"x{suffix}")[0] or \
        "application/octet-stream"
    packed = gzip.compress(body, compresslevel=9, mtime=0)
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Asset(body, packed if len(packed) < len(body) else None, content_type, etag)


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether ``Accept-Encoding`` allows gzip (``gzip;q=0`` does not)."""
    for entry in (accept_encoding or "").split(","):
        name, _, params = entry.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            quality = params.strip().removeprefix("q=")
            try:
                return float(quality or "1") > 0
            except ValueError:
                return False
    return False
