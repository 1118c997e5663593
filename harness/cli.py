"""The `ppeval` command line. Exit statuses: 0 ok, 1 a gate failed, 2 bad input, 3 runtime failure."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from harness.errors import InputError, PPEvalError
from harness.pii import showing_pii

if TYPE_CHECKING:
    from harness.config import RunConfig
    from harness.scorecard import GateResult, Scorecard

EXIT_OK, EXIT_GATE, EXIT_INPUT, EXIT_RUNTIME = 0, 1, 2, 3
SHOW_PII_HELP = "show raw PII in samples.jsonl and the report's examples (default <TYPE:hash>; never in the scorecard)"
WORKERS_HELP = "shard the subjects over N Ray workers (needs `pip install 'ppeval[ray]'`; default: [execution])"
OUT_HELP = "run directory: a new path (default reports/<run-id>)"
OVERWRITE_HELP = "replace the earlier ppeval run at --out (refused if it holds other files or a sign-off trail)"
ATTEST_HELP = "write an in-toto test-result statement (a DSSE envelope signed with --sign-key when given)"
CACHE_DIR_HELP = "result cache directory (default: the config's run.cache_dir, else ~/.cache/ppeval/results)"
FULL_HELP = "print every metric (breakdowns too) and every note, not only the verdict and headline metrics"
SIGN_KEY_HELP = "Ed25519 private key (PEM, unencrypted) to sign manifest.json (writes manifest.json.sig)"


def _suite_list(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    from harness.config import load_config
    from harness.reports import print_table
    from harness.runner import run_evaluation

    config = _with_cache_dir(load_config(args.config), args.cache_dir)
    _preflight(args, config)
    sign_key = _sign_key(args)
    with showing_pii(args.show_pii):
        result = run_evaluation(config, out_dir=args.out, suites=_suite_list(args.suites), limit=args.limit,
                                sign_key=sign_key, workers=args.workers, overwrite=args.overwrite)
    print_table(result.scorecard, console, full=args.full)
    console.print(f"run directory: {result.run_dir}")
    _write_gate_outputs(args, result.scorecard, result.scorecard.gates, result.run_dir / "scorecard.json",
                        sign_key=sign_key)
    if result.failures:  # the other suites' results are in the run directory; this one's metrics are missing
        _print_failures(result.failures, console)
        return EXIT_RUNTIME
    return EXIT_OK if result.scorecard.passed else EXIT_GATE


def _print_failures(failures: dict[str, str], console: Console) -> None:
    for suite, error in failures.items():
        console.print(Text.assemble(("failed: ", "bold red"), f"suite {suite} raised while scoring: {error} "
                                    "(its metrics are missing; the other suites' results were kept)"),
                      highlight=False, soft_wrap=True)


def _cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from harness.demo.config import demo_config
    from harness.reports import print_table
    from harness.runner import run_evaluation

    sign_key = _sign_key(args)
    if args.out is not None:  # before the demo fixtures are built
        from harness.io import check_output_dir

        check_output_dir(args.out, overwrite=args.overwrite)
    config = demo_config(seed=args.seed, progress=lambda msg: console.print(f"[dim]demo:[/] {msg}"))
    with showing_pii(args.show_pii):
        result = run_evaluation(config, out_dir=args.out, suites=_suite_list(args.suites), limit=args.limit,
                                sign_key=sign_key, workers=args.workers, overwrite=args.overwrite)
    print_table(result.scorecard, console, full=args.full)
    console.print(f"run directory: {result.run_dir}")
    if result.failures:
        _print_failures(result.failures, console)
        return EXIT_RUNTIME
    return EXIT_OK


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ppeval")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0.0.0+source"


def _with_cache_dir(config: RunConfig, cache_dir: Path | None) -> RunConfig:
    """The config with `--cache-dir` as its `run.cache_dir`."""
    if cache_dir is None:
        return config
    return config.model_copy(update={"run": config.run.model_copy(update={"cache_dir": cache_dir.resolve()})})


def _preflight(args: argparse.Namespace, config: RunConfig) -> list[str]:
    """`ppeval check`'s checks (harness/preflight.py): everything that can fail before a model loads."""
    from harness.preflight import preflight

    policy, policy_source = None, ""
    if getattr(args, "policy", None) is not None:
        from harness.gates import load_policy

        policy, policy_source = load_policy(args.policy), str(args.policy)
    return preflight(config, source=str(args.config), suites=_suite_list(args.suites), policy=policy,
                     policy_source=policy_source, junit=getattr(args, "junit", None),
                     summary=getattr(args, "summary", None))


def _cmd_check(args: argparse.Namespace, console: Console) -> int:
    from harness.config import load_config

    config = load_config(args.config)
    if args.out is not None:
        from harness.io import check_output_dir

        check_output_dir(args.out, overwrite=args.overwrite)
    for line in _preflight(args, config):
        console.print(f"[green]ok[/] {line}", highlight=False, soft_wrap=True)
    console.print(f"{args.config}: ready to run (no model was loaded)", highlight=False, soft_wrap=True)
    return EXIT_OK


def _positive(text: str) -> int:
    """argparse type: an integer of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _sign_key(args: argparse.Namespace) -> object:
    """The Ed25519 key of `--sign-key`, loaded before any work so a bad key fails fast (exit 2)."""
    from harness.integrity import load_signing_key

    return load_signing_key(args.sign_key) if args.sign_key else None


def _write_gate_outputs(args: argparse.Namespace, scorecard: Scorecard, gates: list[GateResult],
                        scorecard_path: Path, *, policy_path: Path | None = None, sign_key: object = None) -> None:
    from harness.io import atomic_write_text
    from harness.reports.junit import render_gate_summary, render_junit

    if args.attest:
        from harness.attest import write_attestation
        from harness.integrity import scorecard_sha256, sha256_hex

        policy_digest = sha256_hex(policy_path.read_bytes()) if policy_path is not None else None
        write_attestation(args.attest, scorecard, gates, scorecard_sha256(scorecard_path),
                          policy_sha256=policy_digest, key=sign_key)  # type: ignore[arg-type]

    if args.junit:
        atomic_write_text(args.junit, render_junit(scorecard, gates))
    if args.summary:  # appended, as GitHub's $GITHUB_STEP_SUMMARY expects
        with open(args.summary, "a", encoding="utf-8") as handle:
            handle.write(render_gate_summary(scorecard, gates))


def _cmd_gate(args: argparse.Namespace, console: Console) -> int:
    from harness.gates import apply_policy, gates_passed, load_policy
    from harness.scorecard import read_scorecard

    scorecard = read_scorecard(args.scorecard)
    gates = apply_policy(scorecard, load_policy(args.policy))
    for g in gates:
        mark = "[green]pass[/]" if g.passed else ("[red]FAIL[/]" if g.severity == "error" else "[yellow]WARN[/]")
        value = "–" if g.value is None else f"{g.value:.4g}"
        what = g.detail or f"value {value}"
        console.print(f"{mark} {g.subject} {g.metric}: {what}, required {g.rule}" + (f"; {g.reason}" if g.reason and
                      not g.detail.endswith(g.reason) else ""), highlight=False, soft_wrap=True)
    _write_gate_outputs(args, scorecard, gates, args.scorecard, policy_path=args.policy, sign_key=_sign_key(args))
    return EXIT_OK if gates_passed(gates) else EXIT_GATE


def _cmd_report(args: argparse.Namespace, console: Console) -> int:
    from harness.io import atomic_write_text
    from harness.reports import print_table
    from harness.scorecard import read_scorecard

    scorecard = read_scorecard(args.scorecard)
    if args.policy is not None:  # the policy's gates replace the scorecard's in everything rendered
        from harness.gates import apply_policy, gates_passed, load_policy

        gates = apply_policy(scorecard, load_policy(args.policy))
        scorecard = scorecard.model_copy(update={"gates": gates, "passed": gates_passed(gates)})
    fmt_arg = args.format if args.format is not None else ("" if args.annex else "md")  # --annex alone: annex only
    formats = {f.strip() for f in fmt_arg.split(",") if f.strip()}
    unknown = formats - {"md", "html", "terminal", "csv", "json"}
    if unknown:
        raise InputError(f"--format: unknown format(s) {sorted(unknown)}; expected md, html, terminal, csv, json")
    if args.annex and not 0 < args.ci_width <= 1:
        raise InputError(f"--ci-width {args.ci_width}: expected a width in (0, 1] for rates in [0, 1]")
    out = _report_dir(args, console)
    _check_report_targets(args, out, formats)
    if args.group_by:
        from harness.reports.groups import render_groups_markdown

        text = render_groups_markdown(scorecard, args.group_by)
        atomic_write_text(out / f"groups-{args.group_by}.md", text)
        console.print(text, markup=False, highlight=False)
    if "terminal" in formats:
        print_table(scorecard, console, full=args.full)
    if {"md", "html"} & formats:  # the renderer registry the runner writes run directories with
        from harness.annotations import read_annotations
        from harness.data import iter_jsonl
        from harness.reports import RENDERERS, RenderInput

        samples_path = args.scorecard.parent / "samples.jsonl"
        samples = [obj for _, obj in iter_jsonl(samples_path)] if samples_path.is_file() else None
        inputs = RenderInput(scorecard, samples, read_annotations(args.scorecard.parent / "annotations.jsonl"))
        for name in ("md", "html"):
            if name in formats:
                atomic_write_text(out / RENDERERS[name].filename, RENDERERS[name].render(inputs))
                console.print(f"wrote {out / RENDERERS[name].filename}")
    for name in ("csv", "json"):
        if name in formats:  # the tidy export: one row per subject x metric
            from harness import tidy

            filename, render = (tidy.CSV_FILE, tidy.render_csv) if name == "csv" else (tidy.JSON_FILE, tidy.render_json)
            atomic_write_text(out / filename, render(scorecard))
            console.print(f"wrote {out / filename}")
    if args.annex:
        from harness.reports import RENDERERS
        from harness.reports.annex import render_annex_markdown

        text = render_annex_markdown(scorecard, max_ci_width=args.ci_width)
        annex = out / RENDERERS["annex"].filename  # the name `_check_report_targets` guards
        atomic_write_text(annex, text)
        console.print(text, markup=False, highlight=False, soft_wrap=True)
        console.print(f"wrote {annex}")
    _note_manifest_drift(out, console)
    return EXIT_OK


def _report_dir(args: argparse.Namespace, console: Console) -> Path:
    """Where `report` writes: `--out` (never a symlink or a file), else the scorecard's directory, except a run
    directory with a manifest, which is left as verified: its files go to the sibling `<run-dir>-report/`."""
    from harness.integrity import MANIFEST

    if args.out is not None:
        if args.out.is_symlink() or (args.out.exists() and not args.out.is_dir()):
            raise InputError(f"--out {args.out}: expected a directory (not a symbolic link or a file)")
        return args.out
    here = args.scorecard.parent
    if (here / MANIFEST).is_file():
        out = here.resolve().with_name(f"{here.resolve().name}-report")
        console.print(f"{here} is a run directory with a manifest: writing to {out} to keep it verifiable",
                      highlight=False, soft_wrap=True)
        return out
    return here


def _check_report_targets(args: argparse.Namespace, out: Path, formats: set[str]) -> None:
    """`--out DIR` is the user's directory: files of the same names there are replaced only with `--overwrite`."""
    if args.out is None or args.overwrite or not out.is_dir():
        return
    from harness import tidy
    from harness.reports import RENDERERS

    names = [RENDERERS[f].filename for f in ("md", "html") if f in formats]
    names += [tidy.CSV_FILE] * ("csv" in formats) + [tidy.JSON_FILE] * ("json" in formats)
    names += [f"groups-{args.group_by}.md"] * bool(args.group_by) + [RENDERERS["annex"].filename] * bool(args.annex)
    taken = [n for n in names if (out / n).exists() or (out / n).is_symlink()]
    if taken:
        raise InputError(f"--out {out}: {', '.join(taken)} already exist(s) there; pass --overwrite to replace "
                         "them (nothing was written)")


def _note_manifest_drift(out: Path, console: Console) -> None:
    """Re-rendering into a run directory changes files its manifest recorded: say so, as verify will."""
    from harness.integrity import MANIFEST, verify_run_dir

    if (out / MANIFEST).is_file():
        drift = [p for p in verify_run_dir(out).problems if p.startswith(("changed: ", "extra: "))]
        if drift:
            console.print(f"[yellow]note:[/] {out} no longer matches its {MANIFEST} ({'; '.join(drift)}); "
                          "`ppeval verify` will report it — render with --out DIR to keep the run intact",
                          highlight=False, soft_wrap=True)


def _cmd_verify(args: argparse.Namespace, console: Console) -> int:
    from harness.integrity import load_public_key, verify_run_dir

    key = load_public_key(args.public_key) if args.public_key else None
    result = verify_run_dir(args.run_dir, key)
    if args.attestation:
        from harness.attest import check_attestation
        from harness.integrity import scorecard_sha256

        problems = check_attestation(args.attestation, scorecard_sha256(args.run_dir / "scorecard.json"), key)
        result.problems += problems
        if not problems:
            result.info.append(f"{args.attestation}: in-toto statement names this scorecard"
                               + (" and its signature verifies" if key is not None else ""))
    for line in result.info:
        console.print(f"[dim]{line}[/]", highlight=False, soft_wrap=True)
    for problem in result.problems:
        console.print(f"[red]FAIL[/] {problem}", highlight=False, soft_wrap=True)
    if result.ok:
        console.print(f"[green]verified[/] {args.run_dir}: every file matches manifest.json", highlight=False,
                      soft_wrap=True)
        return EXIT_OK
    console.print(f"[red]verification failed[/] for {args.run_dir}: {len(result.problems)} problem(s)",
                  highlight=False, soft_wrap=True)
    return EXIT_GATE


def _cmd_annotate(args: argparse.Namespace, console: Console) -> int:
    from harness.annotations import append_annotation

    entry = append_annotation(args.run_dir, author=args.author, decision=args.decision, reason=args.reason,
                              subject=args.subject)
    on = f" on subject {entry['subject']}" if "subject" in entry else ""
    console.print(f"appended entry {entry['seq']} ({entry['decision']} by {entry['author']}{on}) to "
                  f"{args.run_dir / 'annotations.jsonl'}; scorecard sha256 {entry['scorecard_sha256'][:16]}…, "
                  f"chain head {entry['sha256']}", highlight=False, soft_wrap=True)
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from harness.compare import (
        compare_gates,
        compare_scorecards,
        parse_mapping,
        render_compare_markdown,
        select_changes,
        summary_line,
    )
    from harness.io import atomic_write_text
    from harness.reports.cells import fmt
    from harness.scorecard import read_scorecard

    old, new = read_scorecard(args.old), read_scorecard(args.new)
    if args.markdown is not None:
        from harness.preflight import check_output_file

        check_output_file(args.markdown, "--markdown")
    mapping = parse_mapping(args.map, old, new)
    every = compare_scorecards(old, new, force=args.force, mapping=mapping)
    changes = select_changes(every, every=args.all, changed=args.changed, significant=args.significant)
    summary = summary_line(every, len(changes)) + ("" if args.all else " (headline metrics; --all for every one)")
    colours = {"better": "green", "worse": "red"}
    table = Table("subject", "metric", "old", "new", "change", title=f"{old.run.id} → {new.run.id}")
    for c in changes:
        change = "" if c.change is None else f"{c.change:+.3g}{' *' if c.significant else ''}"
        style = colours.get(c.verdict, "dim" if c.verdict in ("added", "removed") else "")
        subject = c.subject + (f" (was {c.old_subject})" if c.old_subject else "")
        table.add_row(subject, Text(c.metric, overflow="fold"), fmt(c.old), fmt(c.new), change, style=style)
    console.print(table)
    gates = compare_gates(old, new, mapping)
    if gates:
        gate_table = Table("subject", "metric", "rule", "old", "new", title="gates")
        for g in gates:
            style = "red" if g.new == "FAIL" and g.old != "FAIL" else ("green" if g.old == "FAIL" != g.new else "")
            gate_table.add_row(g.subject, Text(g.metric, overflow="fold"), g.rule, g.old, g.new, style=style)
        console.print(gate_table)
    console.print(summary, highlight=False, soft_wrap=True)
    if args.markdown:
        atomic_write_text(args.markdown, render_compare_markdown(old, new, changes, gates, summary))
    return EXIT_OK


def _cmd_suites(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from harness.registry import describe_suites

    infos = describe_suites()
    table = Table("suite", "version", "origin", "metrics")
    for info in infos:
        table.add_row(info.name, info.version, info.origin, str(len(info.metrics)) if info.metrics else "undeclared")
    console.print(table)
    if args.metrics:  # every declaration: what `[[policy.gate]]` may name
        metrics = Table(title="declared metrics (`<suite>.<key>`)")
        for column in ("metric", "better", "unit", "kind", "meaning"):
            metrics.add_column(column, overflow="fold")  # names wrap, never cut
        for info in infos:
            for spec in info.metrics:
                better = f"near {spec.target:g}" if spec.direction == "two-sided" else spec.direction
                metrics.add_row(f"{info.name}.{spec.key}", better, spec.unit or "–",
                                "headline" if spec.headline else "breakdown", spec.meaning)
        console.print(metrics)
    return EXIT_OK


def _cmd_canaries_make(args: argparse.Namespace, console: Console) -> int:
    from harness.canaries import SecretSpace, make_canaries, write_canaries

    reps = []
    for part in (r.strip() for r in args.reps.split(",")):
        if not (part.isdigit() and int(part) >= 1):
            raise InputError(f"canaries make: --reps {args.reps!r}: {part!r} is not a whole number of at least 1; "
                             "expected comma-separated repetition counts such as 1,2,4,8,16")
        reps.append(int(part))
    try:
        space = SecretSpace(args.alphabet, args.length)
        canaries = make_canaries(args.template, n_per_bucket=args.n_per_bucket, repetitions=reps, space=space,
                                 seed=args.seed)
    except ValueError as exc:
        raise InputError(f"canaries make: {exc}") from None
    write_canaries(args.out, canaries)
    inserted = sum(c.inserted for c in canaries)
    twins = len(canaries) - inserted
    console.print(f"wrote {len(canaries)} canaries ({inserted} to insert, {twins} twins) to {args.out}")
    return EXIT_OK


def _cmd_canaries_insert(args: argparse.Namespace, console: Console) -> int:
    import json

    from harness.canaries import insert_canaries, read_canaries
    from harness.data import iter_jsonl
    from harness.io import atomic_write_text

    try:
        canaries = read_canaries(args.canaries)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    records = [obj for _, obj in iter_jsonl(args.train)]
    combined = insert_canaries(records, canaries, seed=args.seed)
    atomic_write_text(args.out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in combined))
    console.print(f"wrote {len(combined)} records ({len(combined) - len(records)} canary insertions) to {args.out}")
    return EXIT_OK


def _cmd_canaries_import(args: argparse.Namespace, console: Console) -> int:
    import math
    from collections import Counter

    from harness.canaries import import_canaries, write_canaries

    if args.template is not None and args.prefix is not None:
        raise InputError("canaries import: give --template or --prefix, not both")
    template = args.template if args.prefix is None else args.prefix + "{secret}"
    canaries = import_canaries(args.file, template=template, alphabet=args.alphabet, length=args.length)
    write_canaries(args.out, canaries)
    space = canaries[0].space
    buckets = Counter(c.repetitions for c in canaries if c.inserted)
    twins = sum(not c.inserted for c in canaries)
    console.print(f"wrote {len(canaries)} canaries to {args.out}: "
                  + ", ".join(f"{n} x{r}" for r, n in sorted(buckets.items()))
                  + f", {twins} never-inserted twins (used first as exposure references); secret space "
                  f"{len(space.alphabet)}**{space.length} = {space.size} ({space.alphabet!r})", highlight=False)
    if space.small:
        console.print(f"warning: the secret space is under 2**20: exposure can never exceed "
                      f"{math.log2(space.size):.1f} bits", highlight=False)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppeval", description="Personalization-privacy evaluation harness.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"ppeval {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="build the demo fixtures and run every suite on them")
    demo.add_argument("--out", type=Path, help=OUT_HELP)
    demo.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--suites", help="comma-separated suite names (default: all)")
    demo.add_argument("--limit", type=_positive, metavar="N", help="at most N items per suite (N >= 1)")
    demo.add_argument("--show-pii", action="store_true", help=SHOW_PII_HELP)
    demo.add_argument("--sign-key", type=Path, metavar="PEM", help=SIGN_KEY_HELP)
    demo.add_argument("--workers", type=_positive, metavar="N", help=WORKERS_HELP)
    demo.add_argument("--full", action="store_true", help=FULL_HELP)
    demo.set_defaults(func=_cmd_demo)

    run = sub.add_parser("run", help="run the suites of a config on its base and subjects")
    run.add_argument("config", type=Path)
    run.add_argument("--out", type=Path, help=OUT_HELP)
    run.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    run.add_argument("--suites", help="comma-separated suite names (default: the config's)")
    run.add_argument("--limit", type=_positive, metavar="N", help="at most N items per suite (N >= 1)")
    run.add_argument("--cache-dir", type=Path, metavar="DIR", help=CACHE_DIR_HELP)
    run.add_argument("--show-pii", action="store_true", help=SHOW_PII_HELP)
    run.add_argument("--sign-key", type=Path, metavar="PEM", help=SIGN_KEY_HELP)
    run.add_argument("--workers", type=_positive, metavar="N", help=WORKERS_HELP)
    run.add_argument("--junit", type=Path, help="write the policy gates as JUnit XML")
    run.add_argument("--full", action="store_true", help=FULL_HELP)
    run.add_argument("--summary", type=Path, help="append a Markdown gate summary (e.g. $GITHUB_STEP_SUMMARY)")
    run.add_argument("--attest", type=Path, metavar="FILE", help=ATTEST_HELP)
    run.set_defaults(func=_cmd_run)

    check = sub.add_parser("check", help="validate a config, its models, data and policy without loading a model")
    check.add_argument("config", type=Path)
    check.add_argument("--suites", help="comma-separated suite names (default: the config's)")
    check.add_argument("--policy", type=Path, help="also check this policy file's metric names")
    check.add_argument("--out", type=Path, help="also check that this run directory may be written")
    check.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    check.add_argument("--junit", type=Path, help="also check that this JUnit path may be written")
    check.add_argument("--summary", type=Path, help="also check that this summary path may be written")
    check.set_defaults(func=_cmd_check)

    gate = sub.add_parser("gate", help="apply a policy to a scorecard")
    gate.add_argument("scorecard", type=Path)
    gate.add_argument("--policy", type=Path, required=True)
    gate.add_argument("--junit", type=Path, help="write JUnit XML (one test case per subject x gate)")
    gate.add_argument("--summary", type=Path, help="append a Markdown summary (e.g. $GITHUB_STEP_SUMMARY)")
    gate.add_argument("--attest", type=Path, metavar="FILE", help=ATTEST_HELP)
    gate.add_argument("--sign-key", type=Path, metavar="PEM", help="Ed25519 private key: sign --attest as DSSE")
    gate.set_defaults(func=_cmd_gate)

    report = sub.add_parser("report", help="re-render reports from a scorecard")
    report.add_argument("scorecard", type=Path)
    report.add_argument("--full", action="store_true", help=FULL_HELP)
    report.add_argument("--format", help="comma-separated: md, html, terminal, csv, json (default md; none with "
                        "--annex); csv/json: metrics.csv/.json, one row per subject x metric")
    report.add_argument("--policy", type=Path, help="apply this policy's gates (replacing the scorecard's)")
    report.add_argument("--out", type=Path, help="directory for the files (default: the scorecard's)")
    report.add_argument("--overwrite", action="store_true",
                        help="replace files of the report's names that --out DIR already holds")
    report.add_argument("--group-by", help="a subject tag: per tag value, each metric's mean, spread, difference")
    report.add_argument("--annex", action="store_true", help="write (and print) annex.md, the compliance annex")
    report.add_argument("--ci-width", type=float, default=0.2,
                        help="annex power rule: flag a headline rate whose 95%% CI is wider than this (default 0.2)")
    report.set_defaults(func=_cmd_report)

    verify = sub.add_parser("verify", help="check a run directory against its manifest, signature and sign-off trail")
    verify.add_argument("run_dir", type=Path)
    verify.add_argument("--public-key", type=Path, metavar="PEM", help="Ed25519 public key to check manifest.json.sig")
    verify.add_argument("--attestation", type=Path, metavar="FILE",
                        help="an in-toto statement or DSSE envelope from --attest: check it names this scorecard")
    verify.set_defaults(func=_cmd_verify)

    annotate = sub.add_parser("annotate", help="append a reviewer's decision to the run's sign-off trail")
    annotate.add_argument("run_dir", type=Path)
    annotate.add_argument("--author", required=True)
    annotate.add_argument("--decision", required=True, choices=["approve", "reject", "needs-work"])
    annotate.add_argument("--reason", required=True)
    annotate.add_argument("--subject", metavar="NAME", help="a decision on one subject (adapter) of the run")
    annotate.set_defaults(func=_cmd_annotate)

    compare = sub.add_parser("compare", help="two scorecards side by side, with significant changes")
    compare.add_argument("old", type=Path)
    compare.add_argument("new", type=Path)
    compare.add_argument("--force", action="store_true", help="compare even if the suites' data differ")
    compare.add_argument("--markdown", type=Path, help="also write the comparison as Markdown")
    compare.add_argument("--all", action="store_true", help="every metric, breakdowns included (default: headline)")
    compare.add_argument("--changed", action="store_true", help="only metrics whose value changed")
    compare.add_argument("--significant", action="store_true", help="only significant changes (and added/removed)")
    compare.add_argument("--map", action="append", metavar="OLD=NEW",
                         help="pair a subject of the old run with its new name (repeatable)")
    compare.set_defaults(func=_cmd_compare)

    suites = sub.add_parser("suites", help="list built-in and installed suites")
    suites.add_argument("--metrics", action="store_true", help="also list every declared metric (key, direction, "
                        "unit, headline or breakdown, meaning)")
    suites.set_defaults(func=_cmd_suites)

    canaries = sub.add_parser("canaries", help="make or import canaries and insert them into training data")
    canary_sub = canaries.add_subparsers(dest="canary_command", required=True)
    make = canary_sub.add_parser("make", help="write canaries and their never-inserted twins")
    make.add_argument("--template", required=True, help='text with one "{secret}", e.g. "my PIN is {secret}"')
    make.add_argument("--n-per-bucket", type=int, default=20)
    make.add_argument("--reps", default="1,2,4,8,16", help="repetition buckets")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--alphabet", default="0123456789", help="the secrets' characters (default: digits)")
    make.add_argument("--length", type=int, default=7, help="the secrets' length (default 7; at least 1,000 "
                                                            "secrets in all, 2**20 or more recommended)")
    make.add_argument("--out", type=Path, required=True)
    make.set_defaults(func=_cmd_canaries_make)
    insert = canary_sub.add_parser("insert", help="insert canaries into a training file")
    insert.add_argument("train", type=Path)
    insert.add_argument("canaries", type=Path)
    insert.add_argument("--out", type=Path, required=True)
    insert.add_argument("--seed", type=int, default=0)
    insert.set_defaults(func=_cmd_canaries_insert)
    imp = canary_sub.add_parser("import", help="convert a team's own canaries (CSV or JSONL) into a canaries file")
    imp.add_argument("file", type=Path, help="rows with secret, repetitions (0: a never-inserted twin), optional "
                                             "canary_id and template or prefix; .csv needs a header")
    imp.add_argument("--template", help='text with one "{secret}", for rows without their own')
    imp.add_argument("--prefix", help="text before the secret (the template is PREFIX{secret})")
    imp.add_argument("--alphabet", help="the secrets' characters (default: the smallest standard alphabet)")
    imp.add_argument("--length", type=int, help="the secrets' length (default: their common length)")
    imp.add_argument("--out", type=Path, required=True)
    imp.set_defaults(func=_cmd_canaries_import)
    return parser


def _missing_extra(exc: Exception) -> str | None:
    from harness.extras import missing_extra_message

    return missing_extra_message(exc) if isinstance(exc, ModuleNotFoundError) else None


def _os_error_message(exc: OSError) -> str:
    """A file-system failure with its path and what to do (a full disk above all: nothing half-written is left)."""
    import errno

    where = exc.filename or "a file"
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return (f"no space left on the device writing {where}: free space there, or write elsewhere (`--out DIR` for "
                "the run directory, `--cache-dir DIR` for the result cache); nothing partial was kept")
    return f"{exc.strerror or exc} ({where}) (run with --debug for the traceback)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console()
    errors = Console(stderr=True)
    try:
        return int(args.func(args, console))
    except PPEvalError as exc:
        if args.debug:
            traceback.print_exc()
        label = "error" if exc.exit_code == EXIT_INPUT else "failed"
        errors.print(Text.assemble((f"{label}: ", "bold red"), str(exc)), highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        errors.print("[red]interrupted[/]; results computed so far are cached: run the same command to resume")
        return EXIT_RUNTIME
    except OSError as exc:
        if args.debug:
            traceback.print_exc()
        errors.print(Text.assemble(("failed: ", "bold red"), _os_error_message(exc)), highlight=False, soft_wrap=True)
        return EXIT_RUNTIME
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        hint = _missing_extra(exc)
        if hint is not None:  # an optional install is missing: the user's setup, not a bug (exit 2)
            errors.print(Text.assemble(("error: ", "bold red"), hint), highlight=False, soft_wrap=True)
            return EXIT_INPUT
        message = f"{type(exc).__name__}: {exc} (run with --debug for the traceback)"
        errors.print(Text.assemble(("failed: ", "bold red"), message), highlight=False, soft_wrap=True)
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
