"""``distribute demo``: the example campaign scheduled and sent to its own SMTP server."""

from __future__ import annotations

import email
import email.policy
import mailbox
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from distribute.campaign import check_campaign, load_campaign
from distribute.cli import cli
from distribute.config import load_settings


def test_demo_runs_the_whole_campaign(workspace: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--out", "demo"])
    assert result.exit_code == 0, result.output
    folder = workspace / "demo"
    out = result.stdout

    # Every step ran, in order, at its time, and the status says so.
    events = [line.split(" ", 1)[1] for line in out.splitlines() if line[:2].isdigit()]
    starts = [e for e in events if e.startswith(("started", "finished"))]
    assert starts == [
        "started science-desk (email, live)",
        "finished science-desk (email, live) sent 19, failed 0, uncertain 0, skipped 1",
        "started presse-regionale (email, live)",
        "finished presse-regionale (email, live) sent 13, failed 0, uncertain 0, skipped 1",
        "started announce-x (x, dry run)",
        "finished announce-x (x, dry run) written 1, failed 0, uncertain 0, skipped 0",
    ]
    assert "received mail (32 messages, one per journalist per email step)" in out

    # What the loopback server stored: one message per journalist per email step, the
    # evening-before step under the embargo banner, the general one without it.
    settings = load_settings(workspace=folder)
    campaign = load_campaign(folder / "releases" / "hydrogen.toml", settings)
    check = check_campaign(campaign, settings, now=datetime.now(UTC))
    expected = Counter(
        (step, recipient.email.lower())
        for step, audience in check.audiences.items()
        for recipient in audience.recipients
    )
    received: Counter[tuple[str, str]] = Counter()
    for _key, stored in mailbox.Maildir(folder / "received", create=False).iteritems():
        message = email.message_from_bytes(stored.as_bytes(), policy=email.policy.default)
        step = "science-desk" if message["Subject"].startswith("EMBARGOED") else "presse-regionale"
        assert message["Delivered-To"].lower() == message["To"].addresses[0].addr_spec.lower()
        received[(step, message["Delivered-To"].lower())] += 1
    assert received == expected
    assert set(received.values()) == {1}

    # The post stayed a dry run, after the embargo; the rendered email is there to open.
    assert (folder / "outbox" / "hydrogen-platform" / "announce-x" / "x.json").is_file()
    assert campaign.release.embargo is not None
    post = campaign.step("announce-x")
    assert post.at >= campaign.release.embargo > campaign.step("science-desk").at
    assert (folder / "email.html").is_file()
    assert (folder / "email.eml").is_file()
    # The demo used its own folder, nothing of the workspace it was started from.
    assert sorted(p.name for p in workspace.iterdir()) == ["demo"]


def test_demo_refuses_a_folder_that_holds_anything(workspace: Path) -> None:
    """A workspace's settings are never overwritten, and a second demo in the same folder
    is refused rather than finding every step done and sending nothing."""
    (workspace / "press").mkdir()
    settings = workspace / "press" / "distribute.toml"
    settings.write_text('[smtp]\nhost = "smtp.example.com"\n', encoding="utf-8")
    (workspace / "empty").mkdir()

    result = CliRunner().invoke(cli, ["demo", "--out", "press"])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1] == (
        "Error: Invalid value for --out: press is not empty; the demo writes a workspace "
        "of its own, so give it a new or empty folder"
    )
    assert settings.read_text(encoding="utf-8") == '[smtp]\nhost = "smtp.example.com"\n'
    assert sorted(p.name for p in (workspace / "press").iterdir()) == ["distribute.toml"]


def test_demo_stopped_by_ctrl_c_says_so_and_exits_130(workspace: Path) -> None:
    """A real process, interrupted once its first step has gone out: it says what it got
    and exits as a shell expects, rather than exiting 0 with a summary of a whole campaign."""
    import os
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "distribute", "demo", "--out", "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"},
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if " finished science-desk " in line:
                break
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, errors
    received = len(list((workspace / "demo" / "received" / "new").iterdir()))
    assert errors.splitlines()[-1] == (
        f"Interrupted by SIGINT before the last step: {received} messages received; the "
        f"demo's workspace is {workspace / 'demo'}"
    )
    assert "Where to look" not in rest
