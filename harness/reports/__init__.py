"""Reports rendered from a scorecard alone, so an old run can be re-rendered at any time.

`RENDERERS` is the one registry of file formats: the runner writes `RUN_FORMATS` into every run directory and
`ppeval report --format` renders any of them, with the same inputs (samples and sign-off trail beside the
scorecard when present), so a re-rendered report equals the one the run wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.reports.markdown import render_markdown
from harness.reports.terminal import print_table
from harness.scorecard import Scorecard


@dataclass(frozen=True)
class RenderInput:
    """What a renderer may use: the scorecard, samples.jsonl's records and annotations.jsonl's entries."""

    scorecard: Scorecard
    samples: list[dict[str, Any]] | None = None
    annotations: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Renderer:
    filename: str
    render: Callable[[RenderInput], str]


def _html(inputs: RenderInput) -> str:
    from harness.reports.html import render_html

    return render_html(inputs.scorecard, inputs.samples, inputs.annotations)


def _annex(inputs: RenderInput) -> str:
    from harness.reports.annex import render_annex_markdown

    return render_annex_markdown(inputs.scorecard)


RENDERERS: dict[str, Renderer] = {
    "md": Renderer("scorecard.md", lambda inputs: render_markdown(inputs.scorecard)),
    "html": Renderer("report.html", _html),
    "annex": Renderer("annex.md", _annex),
}
RUN_FORMATS = ("md", "html", "annex")


def render_files(inputs: RenderInput, formats: tuple[str, ...] = RUN_FORMATS) -> dict[str, str]:
    """file name -> text for each format."""
    return {RENDERERS[f].filename: RENDERERS[f].render(inputs) for f in formats}


__all__ = ["RENDERERS", "RUN_FORMATS", "RenderInput", "Renderer", "print_table", "render_files", "render_markdown"]
