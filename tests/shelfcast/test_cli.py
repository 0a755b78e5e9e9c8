"""The command line: options anywhere, quiet imports."""

import subprocess
import sys
from pathlib import Path

import pytest

from shelfcast.cli import build_parser, main

# Each command with some of its own arguments, as the words that go together.
COMMANDS: dict[str, list[list[str]]] = {
    "up": [],
    "down": [],
    "ingest": [],
    "simulate": [["--days", "3"], ["--seed", "1"]],
    "replay": [["sales.csv"], ["--rate", "5"]],
    "import": [["sales.csv"], ["--chunk-rows", "10"]],
    "retrain": [["--series", "S1|I1"], ["--cold"]],
    "run": [],
    "prune-models": [["--keep", "3"], ["--dry-run"]],
    "status": [["--json"]],
    "thresholds": [["set"], ["min_new_events=1"], ["min_new_days=2"]],
    "forecasts": [["--follow"]],
    "demo": [["--stores", "1"], ["--items", "2"]],
}


def test_thresholds_set_takes_options_between_its_values(tmp_path: Path) -> None:
    args = ["thresholds", "set", "--data-dir", str(tmp_path), "min_new_events=7", "min_new_days=2"]
    assert main(args) == 0
    assert main(["thresholds", "--data-dir", str(tmp_path), "-v", "set", "cooldown_seconds=5"]) == 0
    text = (tmp_path / "thresholds.json").read_text()
    assert '"min_new_events": 7' in text and '"min_new_days": 2' in text
    assert '"cooldown_seconds": 5.0' in text


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_takes_its_options_anywhere_on_the_line(command: str) -> None:
    parser = build_parser()
    groups = COMMANDS[command]
    values = [word for group in groups for word in group]
    first = [word for group in groups[:1] for word in group]
    rest = [word for group in groups[1:] for word in group]
    lines = [
        [command, *values, "--data-dir", "D", "-v"],
        [command, "--data-dir", "D", "-v", *values],
        [command, *first, "--data-dir", "D", *rest, "-v"],
        ["--data-dir", "D", "-v", command, *values],
    ]
    for line in lines:
        args = parser.parse_args(line)
        assert (args.command, args.data_dir, args.verbose) == (command, Path("D"), True), line
    # After the command wins over before it; neither given leaves the settings' default.
    assert parser.parse_args(["--data-dir", "A", command, "--data-dir", "B", *values]).data_dir == (
        Path("B")
    )
    assert parser.parse_args([command, *values]).data_dir is None


def test_no_command_prints_a_plotly_error() -> None:
    # What every command did: configure logging, then import a module that imports prophet.
    code = (
        "import logging, sys; logging.basicConfig(level=logging.INFO); "
        "import shelfcast.cli, retrain.kernel.fallback"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "plotly" not in done.stderr


def test_thresholds_refuses_values_it_would_ignore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path)]
    assert main(["thresholds", "set", *data]) == 2
    assert "Nothing to set" in capsys.readouterr().err
    assert main(["thresholds", "show", "min_new_events=5", *data]) == 2
    assert "thresholds set min_new_events=5" in capsys.readouterr().err
    assert not (tmp_path / "thresholds.json").exists()


def test_thresholds_history_skips_a_corrupt_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path)]
    assert main(["thresholds", "set", "min_new_events=5", *data]) == 0
    with (tmp_path / "thresholds-audit.jsonl").open("a") as audit:
        audit.write('{"at": "2024-01\n')
    assert main(["thresholds", "set", "min_new_days=3", *data]) == 0
    capsys.readouterr()
    assert main(["thresholds", "history", *data]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(None, 2)[2] for line in lines] == [
        "min_new_events: 1 -> 5",
        "min_new_days: 1 -> 3",
    ]


def test_thresholds_set_sends_the_revision_it_read_and_a_claimed_label(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os
    import pwd

    data = ["--data-dir", str(tmp_path)]
    assert main(["thresholds", "show", *data]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("# revision 0")
    assert main(["thresholds", "set", "--revision", "0", "min_new_events=5", *data]) == 0
    assert main(["thresholds", "set", "--by", "night-shift", "min_new_events=6", *data]) == 0
    capsys.readouterr()
    # A change from revision 1's view of a key changed since (at 2) is refused, saying why.
    assert main(["thresholds", "set", "--revision", "1", "min_new_events=7", *data]) == 2
    assert "min_new_events changed after revision 1" in capsys.readouterr().err
    assert main(["thresholds", "history", *data]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    me = pwd.getpwuid(os.getuid()).pw_name
    assert f"night-shift ({me})" in last and "5 -> 6" in last
