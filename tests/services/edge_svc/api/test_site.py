"""The console's files as the edge holds them (services/edge_svc/api/site.py), without HTTP:
what is served, under which path, and when gzip is offered."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from edge_svc.api.site import Site, accepts_gzip

INDEX = b"<!doctype html><title>goalflow</title><div id=\"console\"></div>\n"
SCRIPT = b"console.log('goalflow');\n" * 400  # compresses well


@pytest.fixture
def built(tmp_path: Path) -> Path:
    """A console build: index, a script, a nested file, a dot-file and a dot-directory."""
    (tmp_path / "index.html").write_bytes(INDEX)
    (tmp_path / "console.js").write_bytes(SCRIPT)
    (tmp_path / "embed").mkdir()
    (tmp_path / "embed" / "example.html").write_bytes(b"<p>example</p>")
    (tmp_path / ".env").write_bytes(b"GOALFLOW_SERVICE_API_KEY=gf_secret")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_bytes(b"[core]")
    (tmp_path / "embed" / ".hidden.js").write_bytes(b"secret()")
    return tmp_path


def test_a_directory_without_index_html_is_refused_naming_the_setting(tmp_path: Path):
    (tmp_path / "console.js").write_bytes(SCRIPT)
    with pytest.raises(ValueError, match=r"console_dir: .* has no index\.html"):
        Site.load(tmp_path)
    with pytest.raises(ValueError, match="console_dir"):
        Site.load(tmp_path / "missing")
    (tmp_path / "index.html").mkdir()  # not a file
    with pytest.raises(ValueError, match=r"has no index\.html"):
        Site.load(tmp_path)


def test_an_index_html_linked_from_outside_is_no_index(tmp_path: Path):
    (tmp_path / "page.html").write_bytes(INDEX)
    console = tmp_path / "console"
    console.mkdir()
    (console / "index.html").symlink_to(tmp_path / "page.html")
    with pytest.raises(ValueError, match=r"has no index\.html"):
        Site.load(console)


def test_root_is_index_html_and_files_are_found_by_their_url_path(built: Path):
    site = Site.load(built)
    root, index = site.find("/"), site.find("/index.html")
    assert root is not None and root == index
    assert root.body == INDEX
    assert root.content_type == "text/html; charset=utf-8"
    script = site.find("/console.js")
    assert script is not None and script.content_type == "text/javascript; charset=utf-8"
    nested = site.find("/embed/example.html")
    assert nested is not None and nested.body == b"<p>example</p>"


def test_dot_files_and_dot_directories_are_never_served(built: Path):
    site = Site.load(built)
    for path in ("/.env", "/.git/config", "/embed/.hidden.js"):
        assert site.find(path) is None, path
    assert not [p for p in site.assets if "/." in p]


@pytest.mark.parametrize("path", [
    "/../index.html", "/embed/../index.html", "/./index.html", "//index.html",
    "/%2e%2e/index.html", "index.html", "/embed/", "/embed", "/etc/passwd",
    "/console.js/", "/CONSOLE.JS", "",
])
def test_only_the_exact_paths_of_the_table_are_answered(built: Path, path: str):
    assert Site.load(built).find(path) is None


def test_files_outside_the_directory_are_never_read(tmp_path: Path):
    """Not a sibling, and not through a symbolic link out of the directory (a link to a
    file or a directory elsewhere): the table holds the directory's own files only."""
    (tmp_path / "secret.txt").write_bytes(b"outside")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "key.pem").write_bytes(b"outside")
    console = tmp_path / "console"
    console.mkdir()
    (console / "index.html").write_bytes(INDEX)
    (console / "inside.js").write_bytes(b"inside()")
    (console / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (console / "dir").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (console / "alias.js").symlink_to(console / "inside.js")
    (console / ".env").write_bytes(b"outside")  # a dot-file, reached through a link
    (console / "env.txt").symlink_to(console / ".env")
    site = Site.load(console)
    assert all(asset.body != b"outside" for asset in site.assets.values())
    assert site.find("/leak.txt") is None
    assert site.find("/dir/key.pem") is None
    assert site.find("/env.txt") is None
    assert set(site.assets) <= {"/", "/index.html", "/inside.js", "/alias.js"}
    assert {"/", "/index.html", "/inside.js"} <= set(site.assets)


def test_files_added_after_loading_are_not_served(built: Path):
    site = Site.load(built)
    (built / "late.js").write_bytes(b"late()")
    assert site.find("/late.js") is None


def test_gzip_copy_only_when_smaller(built: Path):
    (built / "tiny.css").write_bytes(b"a{}")
    site = Site.load(built)
    script, tiny = site.find("/console.js"), site.find("/tiny.css")
    assert script is not None and tiny is not None
    assert script.gzipped is not None and len(script.gzipped) < len(script.body)
    assert gzip.decompress(script.gzipped) == SCRIPT
    assert tiny.gzipped is None  # gzip's own header makes 3 bytes larger


def test_etag_follows_the_content(built: Path):
    first = Site.load(built).find("/console.js")
    (built / "console.js").write_bytes(SCRIPT + b"// changed\n")
    second = Site.load(built).find("/console.js")
    again = Site.load(built).find("/console.js")
    assert first is not None and second is not None and again is not None
    assert first.etag != second.etag
    assert second.etag == again.etag
    assert second.etag.startswith('"') and second.etag.endswith('"')


def test_unknown_suffixes_get_a_type_never_a_guess_from_the_content(built: Path):
    (built / "data.bin").write_bytes(b"\x00\x01")
    (built / "console.js.map").write_bytes(b"{}")
    site = Site.load(built)
    binary, source_map = site.find("/data.bin"), site.find("/console.js.map")
    assert binary is not None and binary.content_type == "application/octet-stream"
    assert source_map is not None and source_map.content_type == "application/json"


@pytest.mark.parametrize(("header", "expected"), [
    (None, False),
    ("", False),
    ("gzip", True),
    ("GZIP", True),
    ("gzip, deflate, br", True),
    ("br, gzip;q=0.5", True),
    ("deflate, br", False),
    ("identity", False),
    ("*", True),
    ("gzip;q=0", False),
    ("gzip; q=0", False),
    ("gzip;q=0.0", False),
    ("gzip;q=0.001", True),
    ("gzip;q=1", True),
    ("gzip;q=abc", False),
    ("*;q=0", False),
    ("x-gzip", False),
])
def test_accepts_gzip(header: str | None, expected: bool):
    assert accepts_gzip(header) is expected
