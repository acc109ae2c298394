"""The whole job on embedded defaults: the example campaign, scheduled and run in seconds.

The bundled example workspace (release, campaign, sample lists, templates) is copied to a
folder; the campaign's steps are moved to a few seconds from now (and the release's
embargo with them, so the embargoed step still comes first); an SMTP server on loopback,
in this process, stores what it receives in a Maildir; the worker runs the schedule until
nothing is left. Only the loopback server ever receives mail, and the post stays a dry run.
"""

from __future__ import annotations

import logging
import mailbox
import re
import shutil
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from distribute.campaign import (
    Campaign,
    CampaignCheck,
    EmailStep,
    _campaign_lines,
    _section_of,
    check_campaign,
    load_campaign,
)
from distribute.config import Settings, bundled, load_settings

CAMPAIGN = "hydrogen.toml"
RELEASE = "hydrogen.md"
SENDER = "Valmont Press Office <press@example.org>"


@dataclass(frozen=True)
class Workspace:
    folder: Path
    campaign: Path
    received: Path  # the Maildir the loopback server stores into


def copy_examples(folder: Path) -> None:
    """The bundled release, campaign, lists and templates, as a press office would edit them."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("releases", "recipients", "templates"):
        shutil.copytree(bundled(name), folder / name, dirs_exist_ok=True)


def write_settings(folder: Path, port: int) -> Settings:
    (folder / "distribute.toml").write_text(
        "# Written by distribute demo: mail goes to its own server on loopback only.\n"
        f'[sender]\nfrom = "{SENDER}"\n'
        '[unsubscribe]\nurl = "https://www.example.org/unsubscribe?email={email}"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\nconnections = 2\n'
        '[paths]\nrecipients = "recipients"\ntemplates = "templates"\n',
        encoding="utf-8",
    )
    return load_settings(workspace=folder)


def retime(campaign: Campaign, start: datetime, gap: timedelta) -> dict[str, datetime]:
    """New times for the campaign's steps, ``gap`` apart from ``start``, in the same order.

    The release's embargo moves to the first step that was at or after it, so a step
    written to go out under embargo still does, and the post still waits for the embargo.
    Rewrites the campaign file and the release in place; returns the new times by step.
    """
    embargo = campaign.release.embargo
    times = {step.name: start + gap * index for index, step in enumerate(campaign.steps)}
    lines = _campaign_lines(campaign)
    text = campaign.path.read_text(encoding="utf-8").splitlines(keepends=True)
    for step in campaign.steps:
        number = lines.of(_section_of(lines, step), "at") if lines else None
        if number is None:
            raise ValueError(f"{campaign.path}: no 'at' line for step {step.name!r}")
        stamp = times[step.name].astimezone(campaign.zone).isoformat(timespec="seconds")
        text[number - 1] = re.sub(r'=\s*".*"', f'= "{stamp}"', text[number - 1], count=1)
    campaign.path.write_text("".join(text), encoding="utf-8")
    if embargo is not None:
        after = [times[s.name] for s in campaign.steps if s.at >= embargo]
        lifted = after[0] if after else start + gap * len(campaign.steps)
        release = campaign.release_path.read_text(encoding="utf-8")
        stamp = lifted.astimezone(campaign.zone).isoformat(timespec="seconds")
        release = re.sub(r"(?m)^embargo:.*$", f"embargo: {stamp}", release, count=1)
        campaign.release_path.write_text(release, encoding="utf-8")
    return times


def modes(campaign: Campaign) -> dict[str, str]:
    """Emails for real (to the loopback server only); posts as a dry run."""
    return {s.name: "live" if isinstance(s, EmailStep) else "dry" for s in campaign.steps}


class MaildirServer:
    """An SMTP server on a free loopback port, in this process, storing mail in a Maildir.

    Each message is stored once per recipient with a ``Delivered-To`` line on top, as a
    mail delivery agent does (RFC 9228), so a mail client shows who got what.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        self.box = mailbox.Maildir(folder, create=True)
        self.port = _free_port()
        self.count = 0
        self._controller: Any = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for recipient in envelope.rcpt_tos:
            self.box.add(f"Delivered-To: {recipient}\r\n".encode() + envelope.original_content)
            self.count += 1
        return "250 2.0.0 stored"

    def __enter__(self) -> MaildirServer:
        from aiosmtpd.controller import Controller

        # aiosmtpd logs every session at INFO to "mail.log": the demo shows its own lines.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare(folder: Path, port: int) -> tuple[Settings, Path]:
    """Copy the examples into ``folder`` and point them at ``port``; the campaign's path."""
    copy_examples(folder)
    return write_settings(folder, port), folder / "releases" / CAMPAIGN


def plan(
    path: Path, settings: Settings, start: datetime, gap: timedelta
) -> tuple[Campaign, CampaignCheck]:
    """Retime the campaign from ``start`` and check it as ``schedule`` does."""
    retime(load_campaign(path, settings), start, gap)
    campaign = load_campaign(path, settings)
    return campaign, check_campaign(campaign, settings, now=datetime.now(UTC))
