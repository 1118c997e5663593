"""`--out` never deletes: a run publishes only to a new path or, with --overwrite, over an earlier run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import InputError
from harness.io import check_output_dir, make_staging_dir, publish_directory
from tiny import write_run_config


def _config(tmp_path: Path, tiny) -> Path:
    return write_run_config(tmp_path, tiny)


def _hidden(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def test_out_at_a_directory_of_user_files_exits_2_and_leaves_every_file(tmp_path, tiny, capsys):
    config = _config(tmp_path, tiny)
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("keep me")
    assert main(["run", str(config), "--out", str(project)]) == 2
    assert (project / "notes.txt").read_text() == "keep me"
    assert "holds no ppeval run" in capsys.readouterr().err
    assert _hidden(tmp_path) == []  # no staging directory left behind


def test_out_at_the_config_directory_or_the_current_one_is_refused(tmp_path, tiny, monkeypatch):
    config = _config(tmp_path, tiny)
    monkeypatch.chdir(tmp_path)
    for out in (".", str(tmp_path / "x" / ".."), str(tmp_path)):
        assert main(["run", str(config), "--out", out]) == 2
    assert config.is_file()


def test_out_at_a_file_or_a_symlink_is_refused(tmp_path, tiny):
    config = _config(tmp_path, tiny)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert main(["run", str(config), "--out", str(tmp_path / "link")]) == 2
    assert main(["run", str(config), "--out", str(config)]) == 2
    assert config.is_file() and (tmp_path / "link").is_symlink()


def test_a_rerun_replaces_an_earlier_run_only_with_overwrite(tmp_path, tiny):
    config = _config(tmp_path, tiny)
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out)]) == 0
    first = (out / "manifest.json").read_text()
    assert main(["run", str(config), "--out", str(out)]) == 2
    assert (out / "manifest.json").read_text() == first
    assert main(["run", str(config), "--out", str(out), "--overwrite"]) == 0
    assert main(["verify", str(out)]) == 0
    assert _hidden(tmp_path) == []


def test_overwrite_never_drops_a_sign_off_trail_or_foreign_files(tmp_path, tiny):
    config = _config(tmp_path, tiny)
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out)]) == 0
    (out / "mine.txt").write_text("x")
    assert main(["run", str(config), "--out", str(out), "--overwrite"]) == 2
    assert (out / "mine.txt").is_file()
    (out / "mine.txt").unlink()
    assert main(["annotate", str(out), "--author", "a", "--decision", "approve", "--reason", "ok"]) == 0
    trail = (out / "annotations.jsonl").read_text()
    assert main(["run", str(config), "--out", str(out), "--overwrite"]) == 2
    assert (out / "annotations.jsonl").read_text() == trail


def test_publishing_to_a_target_taken_meanwhile_fails_and_cleans_the_staging_directory(tmp_path):
    target = tmp_path / "run"
    staging = make_staging_dir(target)
    (staging / "scorecard.json").write_text("{}")
    target.mkdir()
    (target / "theirs.txt").write_text("theirs")
    with pytest.raises(InputError, match="holds no ppeval run"):
        publish_directory(staging, target)
    assert not staging.exists() and (target / "theirs.txt").read_text() == "theirs"


def test_a_new_path_is_accepted(tmp_path):
    check_output_dir(tmp_path / "new" / "run")
    os.chdir(tmp_path)
    check_output_dir(Path("relative-run"))


def test_report_out_replaces_a_users_files_of_the_same_name_only_with_overwrite(tmp_path, tiny):
    config = _config(tmp_path, tiny)
    assert main(["run", str(config), "--out", str(tmp_path / "run")]) == 0
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "scorecard.md").write_text("the team's own report")
    report = ["report", str(tmp_path / "run" / "scorecard.json"), "--out", str(shared), "--format", "md,html"]
    assert main(report) == 2
    assert (shared / "scorecard.md").read_text() == "the team's own report"
    assert not (shared / "report.html").exists()  # nothing half-written
    assert main([*report, "--overwrite"]) == 0
    assert (shared / "scorecard.md").read_text() != "the team's own report" and (shared / "report.html").is_file()
