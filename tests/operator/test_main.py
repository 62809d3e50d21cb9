"""`orpheus-tts operator`'s command line."""

from __future__ import annotations

import pytest

from orpheus_operator.__main__ import parse_args, peering_priority
from orpheus_tts.cli import main as cli_main


def test_replicas_never_tie_on_priority_unless_told() -> None:
    assert peering_priority(7) == 7
    drawn = {peering_priority(None) for _ in range(50)}
    assert len(drawn) == 50 and all(p > 0 for p in drawn)


def test_scope_and_peering_flags() -> None:
    args = parse_args(["-n", "a", "-n", "b", "--peering", "p", "--resync-seconds", "5"])
    assert args.namespace == ["a", "b"] and args.peering == "p" and args.resync_seconds == 5
    with pytest.raises(SystemExit):
        parse_args(["--standalone", "--peering", "p"])  # mutually exclusive


def test_reachable_from_the_orpheus_tts_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(["operator", "--help"])
    assert exited.value.code == 0
    assert "--peering" in capsys.readouterr().out
