"""docs/suites.md is generated from the suites' metric declarations and must not go stale."""

from __future__ import annotations

from pathlib import Path

from harness.docs import DOC_PATH, main, render_suites_doc
from harness.registry import describe_suites

ROOT = Path(__file__).resolve().parents[1]


def test_docs_suites_md_is_regenerated_identically():
    assert main(["--check"]) == 0, "docs/suites.md is stale: run `python -m harness.docs`"


def test_the_check_fails_on_a_stale_file(tmp_path):
    stale = tmp_path / "suites.md"
    stale.write_text(render_suites_doc().replace("mean_nll", "mean_nl", 1), encoding="utf-8")
    assert main(["--check", "--out", str(stale)]) == 1


def test_every_declared_metric_is_documented():
    text = DOC_PATH.read_text(encoding="utf-8")
    for info in describe_suites():
        assert f"## {info.name}" in text
        for spec in info.metrics:
            assert f"`{spec.key}`" in text, (info.name, spec.key)


def test_readme_links_the_generated_docs_and_code_names_no_missing_design_file():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/suites.md" in readme and "docs/design.md" in readme and (ROOT / "docs" / "design.md").is_file()
    stray = [str(p.relative_to(ROOT)) for folder in ("harness", "suites", "tests", "benchmarks")
             for p in (ROOT / folder).rglob("*.py") if "DESIGN.md" in p.read_text(encoding="utf-8")
             and p.name != "test_docs.py"]
    assert stray == []
