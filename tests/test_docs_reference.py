"""The reference pages are complete: every rule tag the code cites has an entry in docs/behaviour.md,
every public name is listed in docs/api.md, and no file points outside the repository."""

from __future__ import annotations

import importlib
import io
import re
import shutil
import subprocess
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BEHAVIOUR = ROOT / "docs" / "behaviour.md"
API = ROOT / "docs" / "api.md"

# --- rule tags: `# ES4`, "(F1-F18)", "L1.3.7", "reference §14", test_mc7_... --------------------------
FAMILIES = "CSV|ES|MC|RL|LS|TN|BR|LC|LO|ME|SC|F|D|L|G|H|E|P|B|C|M|X"
TAG = re.compile(
    rf"(?<![\w.§])({FAMILIES})(\d{{1,2}})((?:\.\d+)*)(?!\w)"  # a tag, with sub-steps (ES3.2)
    r"(?:\s*[-–]\s*\1(\d{1,2})(?![\w.]))?"  # the end of a range in the same family (F1-F18)
    r"|§(\d+)"  # a section
)
TEST_NAME_TAG = re.compile(rf"(?<=_)({FAMILIES.lower()})(\d{{1,2}})(?=_|$)")  # test_mc7_fix_... cites MC7
NOQA = re.compile(r"noqa(?::\s*[A-Z]+\d+(?:\s*,\s*[A-Z]+\d+)*)?")  # ruff codes (E402, F401) are not tags


def _texts(path: Path):
    """(line, text) of the comments, strings and test-function names of a Python file: where tags are
    cited (code such as a variable ``P4`` is not a citation)."""
    previous = None
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline):
        kind = tokenize.tok_name[tok.type]
        if kind == "COMMENT":
            yield tok.start[0], NOQA.sub("", tok.string)
        elif kind in ("STRING", "FSTRING_MIDDLE"):
            yield tok.start[0], tok.string
        elif kind == "NAME" and previous == "def" and tok.string.startswith("test_"):
            yield tok.start[0], " ".join(f.upper() + n for f, n in TEST_NAME_TAG.findall(tok.string))
        previous = tok.string


def tags_in(text: str) -> list[str]:
    out = []
    for family, number, sub, end, section in TAG.findall(text):
        if section:
            out.append(f"§{section}")
        elif end:
            out += [f"{family}{i}" for i in range(int(number), int(end) + 1)]
        else:
            out.append(f"{family}{number}{sub}")
    return out


def cited_tags() -> dict[str, list[str]]:
    """Every tag cited in src/ and tests/, with where it is cited."""
    found: dict[str, list[str]] = {}
    for folder in ("src", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line, text in _texts(path):
                for tag in tags_in(text):
                    found.setdefault(tag, []).append(f"{path.relative_to(ROOT)}:{line}")
    return found


def anchor(tag: str) -> str:
    """The id of a tag's entry: ``ES4`` -> ``es4``, ``L1.3.7`` -> ``l1.3.7``, ``§14`` -> ``s14``."""
    return tag.replace("§", "s").lower()


def entries(text: str) -> set[str]:
    """Ids defined on the page: headings ``### ... {#es4}`` and inline ``<a id="es3.2"></a>``."""
    return set(re.findall(r"\{#([\w.-]+)\}", text)) | set(re.findall(r'\bid="([\w.-]+)"', text))


def test_the_tag_pattern_reads_citations():
    assert tags_in("# ES3.2, RL3, MC6 (rules F1-F3; reference §14)") == [
        "ES3.2", "RL3", "MC6", "F1", "F2", "F3", "§14"
    ]  # fmt: skip
    assert tags_in("FSDP2, SHA256, HDF5 and val-P4x are not tags") == []
    assert tags_in("F13-F15 and LO6-LO8") == ["F13", "F14", "F15", "LO6", "LO7", "LO8"]


def test_every_cited_tag_has_an_entry_in_behaviour_md():
    found = cited_tags()
    assert len(found) > 100, "the tag scan found almost nothing: has the citation style changed?"
    defined = entries(BEHAVIOUR.read_text(encoding="utf-8"))
    missing = {tag: where[:3] for tag, where in sorted(found.items()) if anchor(tag) not in defined}
    assert not missing, (
        "rules cited in code or tests without an entry in docs/behaviour.md (add a heading "
        f"'### TAG · ... {{#tag}}' or an inline anchor there): {missing}"
    )


# --- docs/api.md lists every public name ---------------------------------------------------------------
PUBLIC_MODULES = [
    "epochwise",
    "epochwise.callbacks",
    "epochwise.losses",
    "epochwise.metrics",
    "epochwise.optimizers",
    "epochwise.schedules",
    "epochwise.explore",
    "epochwise.plotting",
    "epochwise.distributed",
    "epochwise.datasets",
]


def public_names() -> list[str]:
    """``module.name`` for every name in the ``__all__`` of the public modules, both as imported and as
    the attribute of ``epochwise`` (``ew.losses`` may be another module object than ``epochwise.losses``)."""
    import epochwise

    names = []
    for module_name in PUBLIC_MODULES:
        modules = [importlib.import_module(module_name)]
        short = module_name.rpartition(".")[2]
        attribute = getattr(epochwise, short, None) if module_name != "epochwise" else None
        if attribute is not None and hasattr(attribute, "__all__"):
            modules.append(attribute)
        for module in modules:
            for name in module.__all__:
                if f"{module_name}.{name}" not in names:
                    names.append(f"{module_name}.{name}")
    return names


def test_every_public_name_is_listed_in_api_md():
    names = public_names()
    assert len(names) > 100
    text = API.read_text(encoding="utf-8")
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, (
        f"docs/api.md lacks a line for {missing} (a table row: | `module.name` | what it is |)"
    )


# --- nothing points outside the repository -------------------------------------------------------------
OUTSIDE = ["../" + "shared", "keras-fit-" + "semantics", "DEVELOPERS" + ".md", "/work/" + "shared"]


def test_no_file_refers_outside_the_repository():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    args = ["git", "grep", "-n", "-I", "--untracked", "-F"]
    for pattern in OUTSIDE:
        args += ["-e", pattern]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode in (0, 1), proc.stderr
    assert proc.returncode == 1, (
        "these lines refer to files outside the repository; cite docs/behaviour.md instead:\n" + proc.stdout
    )
