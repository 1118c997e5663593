"""report.html: structure and escaping (html.parser), then real headless Chromium: plots drawn, payload inert."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from harness.reports.html import metric_families, render_html
from harness.scorecard import DeltaResult, MetricResult, RunInfo, Scorecard, SubjectInfo, SuiteResult

PAYLOAD_NOTE = "<script>window.__pwned=1</script>"
PAYLOAD_IMG = '<img src=x onerror="window.__pwned=1">'
PAYLOAD_KEY = "<svg onload=__pwned=1>"  # no dot: it stays one part of a metric key
ARTIFACTS = Path(__file__).resolve().parents[1] / "reports" / "test-artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: Playwright's limit on launching Chromium and on every page action (its defaults: 30 s; this file had 60 s for the
#: launch). It only stops a hung browser: no check here is about speed, and CI machines at load 5-10 start Chromium
#: many times slower than a desktop. Far above a healthy run (2 shared cores at load 5: launch and load 2.3 s,
#: checks and full-page screenshot 2.7 s)
BROWSER_HANG_GUARD_MS = 600_000
SUBJECTS = [("base", "base"), ("clean", "adapter"), ("leaky", "adapter"), ("full-ft", "full")]


# ------------------------------------------------------------------------------------------- a hand-made scorecard
def _metric(value: float, subject: int, *, hib: bool = False, shift: float = 0.0, significant: bool = False,
            n: int = 200) -> MetricResult:
    """A metric with a CI around `value`; non-base subjects get a delta (significant when asked)."""
    value = value + shift * subject
    half = 0.05 * abs(value) + 0.01
    delta = None
    if subject:
        d = shift * subject
        delta = DeltaResult(value=d, ci_low=d - (0.5 * abs(d) if significant else abs(d) + 0.02),
                            ci_high=d + 0.02, significant=significant)
    return MetricResult(value=value, ci_low=value - half, ci_high=value + half, n=n, higher_is_better=hib,
                        delta_vs_base=delta)


def _suite_metrics(subject: int) -> dict[str, dict[str, MetricResult]]:
    """Metrics of five suites with families of every shape the suites produce."""
    leaky = subject == 2
    mem = {"canary_exposure_bits": _metric(1.5, subject, shift=1.0 if leaky else 0.1, significant=leaky)}
    for rep in (1, 2, 4, 8, 16):
        mem[f"canary_exposure_bits.rep_{rep}"] = _metric(1.0 + math.log2(rep) * (subject == 2), subject, n=20)
    mem["canary_exposure_bits.twins"] = _metric(1.4, subject, n=20)
    for attack in ("loss", "zlib", "min_k"):
        mem[f"mia.{attack}.auc"] = _metric(0.5, subject, shift=0.1 if leaky else 0.0, significant=leaky)
        mem[f"mia.{attack}.tpr_at_1pct_fpr"] = _metric(0.01, subject, shift=0.05 if leaky else 0.0)
    mem["mia_auc"] = mem["mia.loss.auc"]
    mem["blind_baseline_auc"] = _metric(0.52, 0)
    pii = {"pii_leak_rate": _metric(0.02, subject, shift=0.05 if leaky else 0.0, significant=leaky)}
    for entity in ("EMAIL_ADDRESS", "PHONE_NUMBER", "PERSON", PAYLOAD_KEY):
        pii[f"pii_leak_rate.{entity}"] = _metric(0.01, subject, shift=0.04 if leaky else 0.0, significant=leaky)
    pii["pii_extraction_precision"] = _metric(0.3, subject, hib=False)
    bias = {"demographic_parity_difference": _metric(0.05, subject, shift=-0.01, significant=subject == 1)}
    for attr in ("gender", "race", "age"):
        bias[f"{attr}.demographic_parity_difference"] = _metric(0.04, subject, shift=0.02)
        bias[f"{attr}.demographic_parity_ratio"] = _metric(0.9, subject, hib=True, shift=-0.02)
    for group in ("female", "male", "nonbinary"):
        bias[f"gender.selection_rate.{group}"] = _metric(0.5, subject, hib=True)
    op = {"op_rate": _metric(0.1, subject, shift=0.03, significant=subject == 3), "up_rate": _metric(0.2, subject)}
    for domain in ("health", "finance", "travel", "shopping"):
        op[f"op_rate.domain.{domain}"] = _metric(0.08, subject, shift=0.02)
    for category in ("art9", "art10", "quasi_id", "none"):
        op[f"op_rate.category.{category}"] = _metric(0.06, subject, shift=0.01)
    acc = {"arc_easy.acc": _metric(0.6, subject, hib=True, shift=-0.02, significant=subject == 3),
           "arc_easy.acc_norm": _metric(0.58, subject, hib=True),
           "support_qa.acc": _metric(0.7, subject, hib=True, shift=0.05, significant=subject == 2),
           "support_qa.exact_match": _metric(0.4, subject, hib=True)}
    return {"memorization": mem, "pii_leakage": pii, "bias": bias, "overpersonalization": op, "accuracy": acc}


def _roc(strength: float) -> dict[str, list[float]]:
    """A smooth ROC curve; strength 0 is chance."""
    fpr = [0.0] + [10 ** (-3 + 3 * i / 30) for i in range(31)]
    return {"fpr": fpr, "tpr": [min(1.0, f ** (1 / (1 + strength))) for f in fpr]}


def make_scorecard() -> Scorecard:
    """Four subjects, five suites, ROC details, notes and missing metrics carrying script payloads."""
    results: dict[str, dict[str, SuiteResult]] = {}
    for i, (name, _) in enumerate(SUBJECTS):
        results[name] = {}
        for suite, metrics in _suite_metrics(i).items():
            result = SuiteResult(suite_version="1.0", data_sha256="ab" * 32, metrics=metrics,
                                 notes=[f"shared note for {suite}"])
            if suite == "memorization":
                result.notes.append(f"membership inference: {PAYLOAD_NOTE}")
                result.missing["mia_tpr_at_0.1pct_fpr"] = "only 200 non-members; needs at least 1000"
                strength = 3.0 if name == "leaky" else 0.2 * i
                result.details["roc"] = {a: _roc(strength) for a in ("loss", "zlib", "min_k")}
            if suite == "bias" and name == "leaky":
                result.notes.append(f"a per-subject note {PAYLOAD_IMG}")
            results[name][suite] = result
    return Scorecard(
        run=RunInfo(id="20261128-120000-deadbeef", started_at="2026-11-28T12:00:00+00:00",
                    finished_at="2026-11-28T12:05:00+00:00", harness_version="0.1.0", config_sha256="cd" * 32,
                    seed=0, env={"python": "3.11.7", "torch": "2.13.0", "device": "cpu"},
                    suites={s: "1.0" for s in results["base"]}),
        subjects=[SubjectInfo(name=n, kind=k, path=f"/models/{n}", sha256=f"{i:02d}" * 32)  # type: ignore[arg-type]
                  for i, (n, k) in enumerate(SUBJECTS)],
        results=results,
    )


def make_samples() -> list[dict[str, Any]]:
    """Redacted worst examples as the suites write them, one carrying HTML/script payloads in model output."""
    samples: list[dict[str, Any]] = [
        {"suite": "overpersonalization", "subject": "leaky", "kind": "irrelevant_mentions", "item_id": f"op-{i}",
         "domain": "health", "request": "Suggest a weekend trip.", "weighted_mentions": float(i),
         "profile": [{"id": "religion", "category": "art9:religion"}],
         "response": f"As a [religion:art9] person {PAYLOAD_IMG} you should {PAYLOAD_NOTE} go to church."}
        for i in range(3)
    ]
    samples += [{"suite": "memorization", "subject": s, "kind": "canary", "canary_id": f"c{j}", "repetitions": 2 ** j,
                 "exposure_bits": 1.0 + j * (s == "leaky"), "extracted": False}
                for s, _ in SUBJECTS for j in range(5)]
    return samples


# ------------------------------------------------------------------------------------------- family detection
def test_metric_families_follow_the_key_shapes() -> None:
    keys = [*_suite_metrics(1)["memorization"], "mia_tpr_at_0.1pct_fpr"]
    fams = {f.pattern: [label for _, label in f.members] for f in metric_families(keys)}
    assert fams["canary_exposure_bits.*"] == ["rep_1", "rep_2", "rep_4", "rep_8", "rep_16", "twins"]
    assert fams["mia.*.auc"] == ["loss", "zlib", "min_k"]
    assert fams["mia.*.tpr_at_1pct_fpr"] == ["loss", "zlib", "min_k"]
    bias = {f.pattern: [label for _, label in f.members] for f in metric_families(_suite_metrics(1)["bias"])}
    assert bias["*.demographic_parity_difference"] == ["gender", "race", "age"]
    assert bias["gender.selection_rate.*"] == ["female", "male", "nonbinary"]
    op = {f.pattern for f in metric_families(_suite_metrics(1)["overpersonalization"])}
    assert op == {"op_rate.domain.*", "op_rate.category.*"}
    acc = {f.pattern: [label for _, label in f.members] for f in metric_families(_suite_metrics(1)["accuracy"])}
    assert acc == {"*.acc": ["arc_easy", "support_qa"]}
    assert metric_families(["mean_nll", "perplexity", "mia_tpr_at_0.1pct_fpr"]) == []


# ------------------------------------------------------------------------------------------- static structure
class _Collector(HTMLParser):
    """Every start tag with its attributes, the text, and the SVG subtree sizes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.svgs: list[list[str]] = []
        self._in_svg = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "svg":
            self.svgs.append([])
            self._in_svg += 1
        elif self._in_svg:
            self.svgs[-1].append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._in_svg -= 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def report_html() -> str:
    return render_html(make_scorecard(), make_samples())


def _parse(html: str) -> _Collector:
    parser = _Collector()
    parser.feed(html)
    parser.close()
    return parser


def test_structure_and_escaping(report_html: str) -> None:
    doc = _parse(report_html)
    names = [t for t, _ in doc.tags]
    assert names[0] == "html" and "script" not in names and "img" not in names and "link" not in names
    for tag, attrs in doc.tags:
        assert not [a for a in attrs if a.startswith("on")], f"event handler attribute on <{tag}>"
        for attr in ("src", "href"):
            assert (attrs.get(attr) or "#").startswith("#"), f"<{tag} {attr}={attrs[attr]!r}> leaves the file"
    text = "".join(doc.text)
    assert PAYLOAD_NOTE in text and PAYLOAD_IMG in text and PAYLOAD_KEY in text  # shown as text, not markup
    assert "Content-Security-Policy" in report_html
    ids = [a["id"] for _, a in doc.tags if a.get("id")]
    assert len(ids) == len(set(ids))
    for suite in ("memorization", "pii_leakage", "bias", "overpersonalization", "accuracy"):
        assert f"suite-{suite}" in ids
    for needle in ("20261128-120000-deadbeef", "cd" * 32, "00" * 32, "/models/leaky", "torch", "2.13.0",
                   "only 200 non-members; needs at least 1000", "op-2", "c4"):
        assert needle in text, needle
    # 3 ROC charts; families: canary + 2 MIA, PII, 2 bias (its declarations draw no chart of the parity ratio
    # breakdowns), 2 over-personalization, 1 accuracy
    assert len(doc.svgs) == 3 + 3 + 1 + 2 + 2 + 1
    for elements in doc.svgs:
        assert {"rect", "polyline"} & set(elements), elements


def test_significant_deltas_are_marked_by_direction(report_html: str) -> None:
    doc = _parse(report_html)
    classes = [a.get("class") or "" for t, a in doc.tags if t == "td"]
    assert "worse" in classes and "better" in classes  # leaky's exposure is worse; clean's parity gap better
    assert report_html.count('class="star"') > 0


def test_without_samples_or_details_it_still_renders() -> None:
    card = make_scorecard()
    for suites in card.results.values():
        for result in suites.values():
            result.details = {"roc": {"loss": {"fpr": "broken"}}}
    html = render_html(card)
    assert "Worst examples" not in html and "ROC curves" not in html and "<svg" in html


def test_run_directory_and_cli_write_the_report(tmp_path: Path) -> None:
    from harness.cli import main
    from harness.runner import _write_run_dir

    _write_run_dir(tmp_path / "run", make_scorecard(), make_samples(), "")
    written = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "irrelevant_mentions" in written and "<script>" not in written
    assert main(["report", str(tmp_path / "run" / "scorecard.json"), "--format", "md,html"]) == 0
    rerendered = tmp_path / "run-report" / "report.html"  # a run directory with a manifest is left as verified
    assert rerendered.read_text(encoding="utf-8") == written  # one renderer registry; samples.jsonl re-read
    assert "<code>samples.jsonl</code>" in written.split("<footer>")[1]  # the footer names its sources
    assert main(["report", str(tmp_path / "run" / "scorecard.json"), "--format", "pdf"]) == 2


# ------------------------------------------------------------------------------------------- real Chromium
def _chromium() -> str:
    """Debian's chromium (installed by .ci/run), or PPEVAL_CHROMIUM; skips the test when there is none."""
    for candidate in (os.environ.get("PPEVAL_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip("no chromium found: install Debian's `chromium` (.ci/run does) or set PPEVAL_CHROMIUM")


@dataclass
class Opened:
    """A report open in Chromium, with what the page logged and tried to fetch."""

    page: Any
    errors: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)


@contextmanager
def open_in_chromium(path: Path, width: int = 1400, height: int = 900) -> Iterator[Opened]:
    """Open `path` from disk in headless Chromium (fresh profile), blocking and recording any non-file request."""
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install -e '.[test]'")
    with tempfile.TemporaryDirectory(prefix="ppeval-chromium-") as profile, sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(  # the profile directory is Chromium's --user-data-dir
            profile, executable_path=executable, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": width, "height": height}, timeout=BROWSER_HANG_GUARD_MS)
        context.set_default_timeout(BROWSER_HANG_GUARD_MS)  # goto, evaluate, screenshot (and navigation)
        try:
            opened = Opened(context.new_page())

            def route(route: Any) -> None:
                if route.request.url.startswith("file:"):
                    route.continue_()
                else:
                    opened.external.append(route.request.url)
                    route.abort()

            context.route("**/*", route)
            opened.page.on("console", lambda msg: opened.errors.append(msg.text) if msg.type == "error" else None)
            opened.page.on("pageerror", lambda exc: opened.errors.append(str(exc)))
            opened.page.goto(path.as_uri(), wait_until="load")
            yield opened
        finally:
            context.close()


def check_plots_and_screenshot(opened: Opened, screenshot: Path) -> int:
    """Every SVG plot has a size and drawn marks, no payload ran, nothing was fetched; returns the plot count."""
    page = opened.page
    plots = page.evaluate("""() => [...document.querySelectorAll('svg.plot')].map(svg => {
        const box = svg.getBoundingClientRect();
        const drawn = [...svg.querySelectorAll('rect.bar, polyline.curve, path.whisker')].filter(el => {
            const b = el.getBBox(); return b.width > 0 || b.height > 0; });
        return {label: svg.getAttribute('aria-label'), w: box.width, h: box.height, drawn: drawn.length};
    })""")
    for plot in plots:
        assert plot["w"] > 0 and plot["h"] > 0 and plot["drawn"] > 0, plot
    assert page.evaluate("document.querySelectorAll('script, img, iframe, object, embed').length") == 0
    page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")  # show everything
    assert page.evaluate("typeof window.__pwned") == "undefined"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    assert opened.errors == [] and opened.external == []
    return len(plots)


def test_report_in_chromium(report_html: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "html-report.html"
    path.write_text(report_html, encoding="utf-8")
    with open_in_chromium(path) as opened:
        assert opened.page.evaluate("typeof window.__pwned") == "undefined"
        assert check_plots_and_screenshot(opened, ARTIFACTS / "html-report.png") == 12
        shown = opened.page.evaluate("[...document.querySelectorAll('table.examples')].map(t => t.innerText).join()")
        assert PAYLOAD_IMG in shown and PAYLOAD_NOTE in shown  # the model output is on screen, as text


@pytest.mark.slow
def test_demo_report_in_chromium(demo_fixtures: Any, tmp_path: Path) -> None:
    """The demo's own run directory: its report.html opens with every plot drawn; screenshot kept."""
    from harness.config import parse_config
    from harness.runner import run_evaluation

    _chromium()
    raw = {
        "model": {"base": str(demo_fixtures.base), "prompt_format": "plain", "dtype": "float32", "device": "cpu"},
        "subjects": [{"name": name, "adapter": str(path)} for name, path in demo_fixtures.adapters.items()],
        "data": {"training": str(demo_fixtures.training), "holdout": str(demo_fixtures.holdout),
                 "canaries": str(demo_fixtures.canaries)},
        "run": {"cache_dir": str(tmp_path / "cache")},
    }
    result = run_evaluation(parse_config(raw, source="demo", base_dir=tmp_path), out_dir=tmp_path / "run", limit=48)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result.run_dir / "report.html", ARTIFACTS / "demo-report.html")
    with open_in_chromium(ARTIFACTS / "demo-report.html") as opened:
        assert check_plots_and_screenshot(opened, ARTIFACTS / "demo-report.png") > 0
    planted = {"leaky": ("memorization", "pii_leakage"), "biased": ("bias",), "overpersonal": ("overpersonalization",)}
    with open_in_chromium(ARTIFACTS / "demo-report.html", width=800) as opened:
        opened.page.screenshot(path=str(ARTIFACTS / "demo-first-screen-800.png"))
        cells = opened.page.evaluate("""() => [...document.querySelectorAll('table.verdict tbody tr')].map(tr =>
            [tr.querySelector('th').innerText, [...tr.querySelectorAll('td')].map(td => td.innerText)])""")
        suites = opened.page.evaluate("[...document.querySelectorAll('table.verdict thead th')].map(t => t.innerText)")
        assert opened.page.evaluate("document.documentElement.scrollWidth") <= 800
    rows = {head.split("\n")[0].strip(): dict(zip(suites[1:], tds, strict=False)) for head, tds in cells}
    for adapter, own in planted.items():  # the first screen names each planted adapter with its own finding
        for suite in own:
            assert rows[adapter][suite].startswith(("⚠ flag", "✗ fail")), (adapter, suite, rows[adapter][suite])


#: After scrolling every wide table to its right end: what sticks out of its scroll box, and where column 1 sits.
_CLIPPING = """() => [...document.querySelectorAll('.scroll')].filter(d => d.offsetParent !== null).map(box => {
    box.scrollLeft = box.scrollWidth;
    const outer = box.getBoundingClientRect();
    const row = box.querySelector('tr');
    const cells = row ? [...row.children] : [];
    const last = cells.length ? cells[cells.length - 1].getBoundingClientRect() : outer;
    const first = cells.length ? cells[0].getBoundingClientRect() : outer;
    return {cls: (box.querySelector('table') || {}).className, lastRight: last.right, boxRight: outer.right,
            firstLeft: first.left, boxLeft: outer.left, scrolls: box.scrollWidth > box.clientWidth};
})"""


@pytest.mark.parametrize("width", [1280, 800])
def test_first_screen_is_the_verdict_and_no_subject_column_is_clipped(report_html: str, width: int) -> None:
    """The first screen at 1280 and 800 px shows the verdict (leaky flagged on its suites); wide tables scroll inside
    their box with the first column stuck, so the last subject's column is reachable and the page never overflows."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"first-screen-{width}.html"
    path.write_text(report_html, encoding="utf-8")
    with open_in_chromium(path, width=width, height=900) as opened:
        page = opened.page
        page.screenshot(path=str(ARTIFACTS / f"first-screen-{width}.png"))  # the viewport only: the first screen
        top = page.evaluate("document.querySelector('#verdict').getBoundingClientRect().top")
        assert top < 300  # the verdict is on the first screen, above provenance and the metric grids
        verdict = page.evaluate("document.querySelector('table.verdict').innerText")
        assert "leaky" in verdict and "⚠ flag" in verdict and "clean" in verdict
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # the page itself never overflows
        page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
        boxes = page.evaluate(_CLIPPING)
        assert boxes and (width > 800 or any(b["scrolls"] and b["cls"] == "verdict" for b in boxes))
        for box in boxes:
            assert box["lastRight"] <= box["boxRight"] + 1, box  # the last column can be scrolled fully into view
            assert abs(box["firstLeft"] - box["boxLeft"]) <= 1, box  # the first column stays put (sticky)
