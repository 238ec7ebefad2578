"""The documentation site: built in strict mode (a broken link, a missing page or picture, or a docstring
reference that does not resolve fails), and its pages rendered in a real headless Chromium."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "build" / "test-artifacts" / "docs"  # the screenshots, kept for a person to look at
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    return out


def test_site_builds_with_every_page_and_the_cli_from_the_parser(site):
    from mobilenets.cli.parser import COMMANDS, build_parser

    pages = {p.relative_to(site).as_posix() for p in site.rglob("index.html")}
    for page in ("index.html", "tasks/int8/index.html", "reference/api/index.html", "benchmarks/index.html"):
        assert page in pages, sorted(pages)
    cli = (site / "reference" / "cli" / "index.html").read_text()
    for name in COMMANDS:
        assert f"mobilenets {name}" in cli
    export = next(a for a in build_parser()._actions if hasattr(a, "choices") and a.choices)
    for option in export.choices["export"]._option_string_actions:  # every option of a command, as parsed
        assert option in cli, option
    assert "create_model" in (site / "reference" / "api" / "index.html").read_text()


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
@pytest.mark.parametrize("page", ["", "tasks/detection-segmentation/"])
def test_pages_render_in_chromium(site, page):
    """Title, navigation, a code block and a loaded picture on the home page and a task page, and no
    console error; screenshots in build/test-artifacts/docs."""
    sync_api = pytest.importorskip("playwright.sync_api")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    errors: list[str] = []
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-quic", "--no-first-run"]  # fmt: skip
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=flags)
            tab = browser.new_page(viewport={"width": 1280, "height": 1000})
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.goto(f"http://127.0.0.1:{server.server_address[1]}/{page}", wait_until="networkidle")
            assert "mobilenets" in tab.title()
            assert tab.locator("nav.md-nav").count() > 0 and tab.locator("pre code").count() > 0
            images = tab.locator("article img")
            assert images.count() > 0
            loaded = images.evaluate_all("imgs => imgs.map(i => i.complete && i.naturalWidth > 0)")
            assert all(loaded), loaded
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(ARTIFACTS / f"{page.strip('/').replace('/', '_') or 'home'}.png"), full_page=False)
            browser.close()
    finally:
        server.shutdown()
    assert not errors, errors
