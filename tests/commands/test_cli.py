"""The top-level command line: its help names every command, in whole sentences."""

from __future__ import annotations

import pytest

from dcnviz.cli import COMMANDS, main


def test_top_level_help_lists_every_command_after_a_whole_description(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    description = " ".join(out.split("\n\n")[1].split())
    assert description.startswith("dcnviz: ") and description.endswith("options.")  # not cut mid-sentence
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("    ") and line.split()]
    assert [c for c in listed if c in COMMANDS] == list(COMMANDS)
