"""Reports rendered from a scorecard alone, so an old run can be re-rendered at any time."""

from harness.reports.markdown import render_markdown
from harness.reports.terminal import print_table

__all__ = ["print_table", "render_markdown"]
