"""Notebook hygiene: what readers see on GitHub, nbviewer, Colab and the site must come from a clean full run,
show nothing of the test machinery, and end the way every chapter of the book ends.

Executing the notebooks is nbval's job (``make test`` passes them to pytest with ``--nbval-lax`` and
``PSST_QUICK=1``, and tests/conftest.py then runs ``QUICK = True`` after each chapter's cell tagged
"parameters"); these checks read the stored files. The conventions they enforce (headings, cell tags
of exercises, checks and solutions) are listed in the module docstring of each test below.
"""
import ast
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ENDING = ["Exercises", "Summary", "Further reading"]   # the last three level-2 sections, in this order
# a tqdm progress bar line, e.g. "simulated: 100%|##########| 1000/1000 [00:13<00:00, 75.2ms/s]"
PROGRESS_LINE = re.compile(r"^[^\n|]*\d+%\|[^\n]*\|[^\n]*$")
# words about how the book is tested or was planned, which its reader has no use for
MACHINERY = [re.compile(p, re.IGNORECASE) for p in
             (r"NBVAL", r"test suite", r"PSST_FAST", r"PSST_QUICK", r"the issue that", r"/proc/", r"zombie",
              r"stored run", r"set_cpu_threads", r"bench threads")]
# the size switch: the reader's line, alone in a cell tagged "parameters" (tests/conftest.py sets it for tests)
QUICK_LINE = "QUICK = False  # True: smaller sizes for a quick first run"
# reading the environment, in a chapter's code (setting a variable, os.environ.setdefault, is not reading)
READS_ENVIRONMENT = re.compile(r"os\.environ\.get\(|os\.getenv\(|os\.environ\[[^\]]+\](?!\s*=)")
# measuring or killing processes in a way one system only has: the package's psst_helpers.memory and
# Popen.kill() work on Linux, macOS and Windows
ONE_SYSTEM_ONLY = re.compile(r"\bimport resource\b|\bresource\.getrusage|ru_maxrss|signal\.SIGKILL|/proc/")


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]


def tags(cell) -> list:
    return list(cell.metadata.get("tags", []))


def sections(nb):
    """(level-2 heading, cell) for every cell; a markdown cell is split at its own level-2 headings."""
    out, current = [], None
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            out.append((current, cell))
            continue
        chunk = []
        for line in cell.source.splitlines():
            if line.startswith("## "):
                if chunk:
                    out.append((current, nbformat.v4.new_markdown_cell("\n".join(chunk))))
                current, chunk = line[3:].strip(), []
            else:
                chunk.append(line)
        out.append((current, nbformat.v4.new_markdown_cell("\n".join(chunk))))
    return out


def section_cells(nb, name):
    return [c for s, c in sections(nb) if s == name]


def has_ellipsis(source: str) -> bool:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return "..." in source
    return any(isinstance(n, ast.Constant) and n.value is Ellipsis for n in ast.walk(tree))


def clean_progress(text: str) -> str:
    """What a terminal shows: text overwritten by a carriage return is gone."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def test_there_are_chapters():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_are_a_clean_top_to_bottom_run(path):
    nb = nbformat.read(path, as_version=4)
    counts = []
    for cell in code_cells(nb):
        assert cell.execution_count is not None, f"unexecuted cell: {cell.source[:60]!r}"
        counts.append(cell.execution_count)
        for out in cell.outputs:
            assert out.output_type != "error", f"stored error in cell {cell.execution_count}: {out.get('ename')}"
            if out.output_type == "stream" and out.name == "stderr":
                # progress bars are the only thing allowed on stderr: a warning or a log line is not
                lines = [ln for ln in clean_progress(out.text).splitlines() if ln.strip()]
                bad = [ln for ln in lines if not PROGRESS_LINE.match(ln)]
                assert not bad, f"stored stderr in cell {cell.execution_count}: {bad[0][:200]!r}"
    assert counts == list(range(1, len(counts) + 1)), f"execution counts out of order: {counts}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_cell_downloads_code(path):
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(c.source for c in code_cells(nb))
    assert "no-check-certificate" not in text and "wget " not in text and "curl " not in text
    assert "verify=False" not in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_test_machinery_in_view(path):
    """No nbval markers, no words about tests or planning, no PSST_FAST, in any source or stored output."""
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        texts = [cell.source]
        for out in cell.get("outputs", []):
            texts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
        for text in texts:
            for pattern in MACHINERY:
                found = pattern.search(text)
                assert not found, f"cell {i} shows {found.group(0)!r}: {text[max(0, found.start() - 60):found.end() + 60]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_size_switch_is_one_reader_line(path):
    """A chapter with smaller sizes for quick runs has the reader's line ``QUICK = False  # True: ...`` alone in
    one code cell tagged "parameters", before QUICK is first used, and sets QUICK nowhere else; no chapter reads
    the environment (the tests set QUICK through that tag: tests/conftest.py)."""
    nb = nbformat.read(path, as_version=4)
    cells = code_cells(nb)
    for cell in cells:
        found = READS_ENVIRONMENT.search(cell.source)
        assert not found, f"a chapter does not read the environment: {found.group(0)!r} in {cell.source[:80]!r}"
    tagged = [i for i, c in enumerate(cells) if "parameters" in tags(c)]
    uses = [i for i, c in enumerate(cells) if re.search(r"\bQUICK\b", c.source)]
    if not uses:
        assert not tagged, "a cell tagged 'parameters' in a chapter that has no size switch"
        return
    assert len(tagged) == 1, f"one cell tagged 'parameters' holds the size switch, found {len(tagged)}"
    switch = cells[tagged[0]]
    assert switch.source.strip() == QUICK_LINE, \
        f"the cell tagged 'parameters' is the reader's line alone: {QUICK_LINE!r}, found {switch.source[:120]!r}"
    assert uses[0] == tagged[0], "QUICK is used before the cell tagged 'parameters' sets it"
    for i in uses[1:]:
        assigned = re.search(r"^\s*QUICK\s*=", cells[i].source, re.MULTILINE)
        assert not assigned, f"QUICK is set again after its switch: {cells[i].source[:80]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_measurements_work_on_every_system(path):
    """Memory and process kills through the package (psst_helpers.memory) or the standard library's portable
    calls (Popen.kill()): no ``resource``, ``ru_maxrss``, ``signal.SIGKILL`` or /proc, Linux's or Unix's only."""
    nb = nbformat.read(path, as_version=4)
    for cell in code_cells(nb):
        found = ONE_SYSTEM_ONLY.search(cell.source)
        assert not found, f"{found.group(0)!r} works on one system only: {cell.source[:80]!r}"


def test_tensorflow_settings_are_explained_once():
    """TF_CPP_MIN_LOG_LEVEL and TF_ENABLE_ONEDNN_OPTS are explained in chapter 2, where TensorFlow is introduced,
    and in the benchmark appendix, which measures NumPy against TensorFlow with oneDNN off and on; other chapters
    set them in their first code cell without prose."""
    explained = [p.name for p in NOTEBOOKS for c in nbformat.read(p, as_version=4).cells
                 if c.cell_type == "markdown" and re.search(r"TF_ENABLE_ONEDNN_OPTS|TF_CPP_MIN_LOG_LEVEL", c.source)]
    assert sorted(set(explained)) == ["appendix_benchmarks.ipynb", "ch02_tensors_flow.ipynb"], f"explained in {explained}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_duplicate_imports(path):
    nb = nbformat.read(path, as_version=4)
    seen, dup = set(), []
    for cell in code_cells(nb):
        if "solution" in tags(cell) or "psst-install" in tags(cell):
            # a solution may repeat an import so that it runs on its own; the install cell is the same
            # template in every chapter, and a chapter must not rely on what it happens to import
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in tree.body:      # top-level imports only: an import inside a function is local
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    key = (getattr(node, "module", None), alias.name, alias.asname)
                    (dup.append(key) if key in seen else seen.add(key))
    assert not dup, f"imported more than once: {dup}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_ends_with_exercises_summary_further_reading(path):
    nb = nbformat.read(path, as_version=4)
    headings = [s for s, _ in sections(nb) if s is not None]
    order = list(dict.fromkeys(headings))
    assert order[-3:] == ENDING, f"the last level-2 sections must be {ENDING}, found {order[-5:]}"
    exercises = "\n".join(c.source for c in section_cells(nb, "Exercises") if c.cell_type == "markdown")
    n_exercises = len(re.findall(r"^(### |\*\*\d+\.)", exercises, re.MULTILINE))
    assert n_exercises >= 2, f"at least two exercises (### headings or **1. ...), found {n_exercises}"
    summary = "\n".join(c.source for c in section_cells(nb, "Summary") if c.cell_type == "markdown")
    items = re.findall(r"^[-*] \S", summary, re.MULTILINE)
    assert len(items) == 5, f"the Summary has five key takeaways as a list, found {len(items)}"
    reading = "\n".join(c.source for c in section_cells(nb, "Further reading") if c.cell_type == "markdown")
    assert "{cite" in reading, "Further reading cites from book/references.bib with {cite}`key`"


def _bib_keys():
    return set(re.findall(r"^@\w+\{([^,\s]+),", (ROOT / "book" / "references.bib").read_text(), re.MULTILINE))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_citation_is_in_the_bibliography(path):
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    cited = {k.strip() for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text) for k in group.split(",")}
    assert cited <= _bib_keys(), f"not in book/references.bib: {sorted(cited - _bib_keys())}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercises_have_blanks_a_check_and_a_hidden_solution(path):
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in section_cells(nb, "Exercises") if c.cell_type == "code"]
    kinds = {k: [c for c in cells if k in tags(c)] for k in ("exercise", "check", "solution")}
    assert kinds["exercise"], "no coding exercise: a code cell tagged 'exercise' with ... blanks"
    for cell in kinds["exercise"]:
        assert has_ellipsis(cell.source), f"an 'exercise' cell without ... blanks: {cell.source[:80]!r}"
    assert kinds["check"], "no check cell (tag 'check') that tells the reader whether the answer is right"
    assert kinds["solution"], "no worked solution (tag 'solution')"
    for cell in cells:
        first = cell.source.lstrip().splitlines()[0] if cell.source.strip() else ""
        if first.startswith("#") and "solution" in first.lower():
            assert "solution" in tags(cell), f"a solution cell without the 'solution' tag: {first!r}"
    for cell in kinds["solution"]:
        assert "hide-input" in tags(cell) or "hide-cell" in tags(cell), \
            f"solution not hidden in the site (tag 'hide-input'): {cell.source[:60]!r}"
        assert cell.metadata.get("jupyter", {}).get("source_hidden") is True, \
            f'solution not collapsed in Colab/Jupyter (metadata "jupyter": {{"source_hidden": true}}): {cell.source[:60]!r}'


def test_locust_chapter_derives_the_model_by_hand():
    """Chapter 6 writes the antennal lobe's derivatives itself and checks them against the package."""
    path = ROOT / "notebooks" / "ch06_locust_antennal_lobe.ipynb"
    nb = nbformat.read(path, as_version=4)
    cells = code_cells(nb)
    defined = [i for i, c in enumerate(cells) if re.search(r"^def locust_derivatives_by_hand\(", c.source, re.MULTILINE)]
    assert defined, "chapter 6 has no hand-written `def locust_derivatives_by_hand(...)`"
    compared = [i for i, c in enumerate(cells) if i > defined[0]
                and "locust_derivatives_by_hand" in c.source and "locust_antennal_lobe" in c.source]
    assert compared, "chapter 6 never compares locust_derivatives_by_hand with the package's locust_antennal_lobe"
    shown = "\n".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in cells[compared[0]].outputs)
    found = re.search(r"\|ΔV\|\s*=?\s*([-+0-9.eE]+)", shown)
    assert found, f"the comparison cell should print 'max |ΔV| = <number> mV'; it shows {shown[:200]!r}"
    assert float(found.group(1)) < 1e-6, f"the hand-written derivative and the package disagree: {found.group(0)}"


def test_badges_and_install_cells_match_the_template():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "notebook_header.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_notebook_is_in_the_book():
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = {c["file"] for part in toc["parts"] for c in part["chapters"]}
    on_disk = {p.relative_to(ROOT).with_suffix("").as_posix() for p in NOTEBOOKS}
    assert on_disk <= listed, f"notebooks missing from _toc.yml: {sorted(on_disk - listed)}"
