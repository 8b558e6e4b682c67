"""Assertions shared by the CLI tests."""

from __future__ import annotations


def assert_one_line_error(result, pattern: str) -> str:
    """``result`` (a click ``CliRunner`` result) is a clean user error: exit code 2, no traceback, exactly one
    ``Error: ...`` line containing ``pattern``; returns that line."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert pattern in lines[0], lines[0]
    return lines[0]
