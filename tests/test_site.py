"""The book as readers see it: the real jupyter-book build, its internal links, and the pages in a real browser.

The site is built once (offline, warnings as errors) into a temporary folder, served on 127.0.0.1,
and opened in headless Chromium driven by Playwright. Chromium comes from the system (Debian's
``chromium`` package, installed here with apt when missing and when we may); Playwright never
downloads a browser. Screenshots of the landing page and of one chapter are kept in
``_build/screenshots`` for a person to look at.
"""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "_build" / "screenshots"


def _chapters() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [c["file"] for part in toc["parts"] for c in part["chapters"] if c["file"].startswith("notebooks/")]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("book")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run([str(jb), "build", str(ROOT), "--path-output", str(out), "--warningiserror", "--keep-going"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    html = out / "_build" / "html"
    assert (html / "index.html").exists()
    return html


# -- links and images -------------------------------------------------------------------------------

class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        for key in ("href", "src"):
            if a.get(key) and not (tag == "link" and a.get("rel") in ("canonical",)):
                self.refs.append((tag, a[key]))


def _parse(path: Path) -> _Refs:
    p = _Refs()
    p.feed(path.read_text(errors="replace"))
    return p


def test_every_internal_link_and_image_resolves(site):
    # the pages (not the theme's template fragments under _static)
    pages = sorted(p for p in site.rglob("*.html") if p.relative_to(site).parts[0] not in ("_static", "_sources"))
    parsed = {p: _parse(p) for p in pages}
    missing, bad_anchor = [], []
    for page, refs in parsed.items():
        for tag, ref in refs.refs:
            url = urlparse(ref)
            if url.scheme or ref.startswith(("//", "mailto:", "data:", "javascript:")):
                continue  # external: not ours to check offline
            path, frag = unquote(url.path), url.fragment  # without ?v=... cache-busting queries
            target = page if not path else (page.parent / path).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                missing.append(f"{page.relative_to(site)}: <{tag}> {ref}")
            elif frag and target.suffix == ".html" and target in parsed and frag not in parsed[target].ids:
                bad_anchor.append(f"{page.relative_to(site)}: {ref}")
    assert not missing, "broken internal links or images:\n" + "\n".join(missing[:30])
    assert not bad_anchor, "links to anchors that do not exist:\n" + "\n".join(bad_anchor[:30])


def test_every_chapter_and_back_matter_page_is_built(site):
    for chapter in _chapters() + ["book/models", "book/api", "book/bibliography"]:
        assert (site / f"{chapter}.html").exists(), chapter
    api = (site / "book" / "api.html").read_text()
    for name in ("psst_helpers.solvers.tf_solver.Integrator", "psst_helpers.distributed.LocalCluster",
                 "psst_helpers.partition.run_partitioned"):
        assert name in api, f"{name} missing from the API reference"


# -- the model reference -----------------------------------------------------------------------------

#: Section labels (MyST targets) that docstrings and chapters link to; renaming one breaks those links.
MODEL_LABELS = ("models-hh", "models-a-current", "models-synapses", "models-gabab", "models-memory",
                "models-locust", "models-distributed", "models-benchmarks")


def _text(fragment: str) -> str:
    import html as _html
    import re
    plain = _html.unescape(re.sub(r"<[^>]+>", "", fragment))
    return " ".join(plain.replace("\u2013", "-").replace("\u2014", "-").replace("\u00b6", "").split())


def test_model_reference_page(site):
    """book/models.md: its labelled sections, well-formed math, resolved citations, and every section that a
    docstring of psst_helpers names (section "...") exists as a heading."""
    import html as _html
    import re
    page = (site / "book" / "models.html").read_text()
    ids = _parse(site / "book" / "models.html").ids
    assert not [label for label in MODEL_LABELS if label not in ids], "model reference labels missing"
    # math: the build leaves TeX for MathJax (loaded from a CDN when the page is viewed): check it is well-formed
    maths = [_html.unescape(m) for m in re.findall(r'class="math[^"]*"[^>]*>(.*?)</(?:span|div)>', page, re.S)]
    assert len(maths) > 100, len(maths)
    bad = [m for m in maths if m.count("{") != m.count("}") or m.count("\\begin") != m.count("\\end")
           or m.count("\\left") != m.count("\\right")]
    assert not bad, bad[:5]
    # citations resolved to the bibliography (an unknown key would have failed the build, a missing page here)
    assert page.count('href="bibliography.html#') >= 15
    for key_words in ("Hodgkin", "Traub", "Destexhe", "Huguenard", "Bazhenov"):
        assert key_words in page, key_words
    # the sections docstrings point readers to
    headings = [_text(h) for h in re.findall(r"<h[1-4][^>]*>(.*?)</h[1-4]>", page, re.S)]
    cited = set()
    for path in (ROOT / "psst_helpers").rglob("*.py"):
        source = path.read_text()
        if "models.md" not in source and "model reference" not in source:
            continue
        for names in re.findall(r'sections?\s+((?:"[^"\n]+"[\s#:,]*(?:and\s+)?)+)', source):
            cited.update(re.findall(r'"([^"\n]+)"', names))
    assert cited, "no docstring names a section of the model reference"
    missing = [c for c in sorted(cited) if not any(h.startswith(_text(c)) for h in headings)]
    assert not missing, f"docstrings name sections the model reference does not have: {missing}; headings: {headings}"


# -- the browser -------------------------------------------------------------------------------------

def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if shutil.which("apt-get") and os.geteuid() == 0:
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "timeout": 900}
        subprocess.run(["apt-get", "update"], **quiet)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"], **quiet)
        return shutil.which("chromium")
    return None


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    if executable is None:
        pytest.skip("no Chromium: install Debian's 'chromium' package (apt-get install chromium) to run the browser test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (in requirements.txt)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def served(site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _visit(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(url, wait_until="load")
    return page, failed


def test_landing_page(browser, served):
    page, failed = _visit(browser, served + "/index.html")  # redirects to the intro page
    page.wait_for_url("**/book/intro.html", timeout=20000)
    page.wait_for_load_state("load")
    assert "PSST" in page.title()
    body = page.inner_text("body")
    for words in ("Who this book is for", "What you need", "How the book is organised"):
        assert words in body
    figure = page.locator("figure img").first
    assert figure.evaluate("img => img.complete && img.naturalWidth > 0"), "the landing figure did not load"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "landing.png"), full_page=False)
    assert not [f for f in failed if "127.0.0.1" in f], failed
    page.close()


@pytest.mark.parametrize("chapter", _chapters())
def test_chapter_page_in_the_browser(browser, served, chapter):
    page, failed = _visit(browser, f"{served}/{chapter}.html")
    nb = __import__("nbformat").read(ROOT / f"{chapter}.ipynb", as_version=4)
    title = nb.cells[0].source.lstrip("# ").strip()
    heading = page.locator("h1").first.inner_text()
    assert title.split(". ", 1)[-1] in heading, (title, heading)
    assert title.split(". ", 1)[-1] in page.title()
    # figures: at least one rendered image with a real size
    sizes = page.locator("img").evaluate_all(
        "imgs => imgs.filter(i => !i.closest('.navbar-brand, .navbar-header-items, .bd-sidebar-primary'))"
        ".map(i => [i.complete, i.naturalWidth, i.getBoundingClientRect().width])")
    assert any(ok and w > 0 and shown > 0 for ok, w, shown in sizes), f"no rendered figure on {chapter}"
    text = page.inner_text("article")
    assert "Traceback (most recent call last)" not in text, f"a traceback is shown on {chapter}"
    # math: rendered by MathJax when its script is reachable, otherwise present as math markup
    has_math = page.evaluate("() => document.querySelectorAll('.math, mjx-container, span.math').length")
    source_has_math = any("$" in c.source for c in nb.cells if c.cell_type == "markdown")
    if source_has_math:
        assert has_math > 0, f"{chapter}: math in the notebook but none on the page"
    if chapter.endswith(("ch01_numerical_integration", "ch06_locust_antennal_lobe")):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{Path(chapter).name}.png"), full_page=False)
    assert not [f for f in failed if "127.0.0.1" in f], failed
    page.close()


def test_navigation_between_consecutive_chapters(browser, served):
    chapters = _chapters()
    page, _ = _visit(browser, f"{served}/{chapters[0]}.html")
    for nxt in chapters[1:]:
        page.locator("a.right-next").first.click()
        page.wait_for_load_state("load")
        assert page.url.endswith(f"{nxt}.html"), (page.url, nxt)
    for prev in reversed(chapters[:-1]):
        page.locator("a.left-prev").first.click()
        page.wait_for_load_state("load")
        assert page.url.endswith(f"{prev}.html"), (page.url, prev)
    page.close()


def test_search_page_finds_a_chapter(browser, served):
    page, _ = _visit(browser, f"{served}/search.html?q=Hodgkin")
    page.wait_for_selector("#search-results li", timeout=20000)
    results = page.locator("#search-results li").all_inner_texts()
    assert any("cells in silicon" in r.lower() or "hodgkin" in r.lower() for r in results), results[:5]
    page.close()


def test_solutions_are_hidden_until_the_reader_asks(browser, served):
    """A worked solution (cell tag 'solution' + 'hide-input') shows its output but not its code until clicked."""
    page, _ = _visit(browser, f"{served}/{_chapters()[0]}.html")
    solutions = page.locator("div.cell.tag_solution")
    assert solutions.count() >= 1, "no solution cell on the first chapter's page"
    for k in range(solutions.count()):
        cell = solutions.nth(k)
        toggle = cell.locator("details").first
        assert toggle.count() == 1, "a solution without a show/hide toggle"
        assert not toggle.evaluate("d => d.open"), "a solution shown open"
        code = cell.locator("details .highlight").first
        assert not code.is_visible(), "the solution's code is visible before the reader asks for it"
        toggle.locator("summary").click()
        assert code.is_visible(), "clicking the toggle does not show the solution"
    page.close()
