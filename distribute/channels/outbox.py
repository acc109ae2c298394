"""The dry-run channel: the exact bytes that would be sent, one file each, in a Maildir.

A Maildir (``tmp/``, ``new/``, ``cur/``) opens in mutt, Thunderbird (as a local folder)
and most mail tools; each file is also a plain ``.eml``. Files are written to ``tmp/``
then renamed into ``new/``, so a reader never sees half a message.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from distribute.channels.base import Aside, Channel, Envelope, Outcome


def maildir(folder: Path, *, clear: bool = False) -> Path:
    if clear and folder.exists():
        shutil.rmtree(folder)
    for sub in ("tmp", "new", "cur"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return folder


class OutboxChannel(Channel):
    live = False

    def __init__(self, folder: Path):
        self.folder = folder
        # Joined as text: a Path per file costs more than writing a small file.
        self._tmp = os.path.join(folder, "tmp", "")
        self._new = os.path.join(folder, "new", "")

    def open(self) -> None:
        maildir(self.folder)

    def deliver(self, envelope: Envelope, meanwhile: Aside | None = None) -> Outcome:
        key = hashlib.sha256(f"{envelope.message_id}\x00{envelope.recipient}".encode()).hexdigest()
        name = f"{key[:32]}.eml"
        with open(self._tmp + name, "wb") as out:
            out.write(envelope.data)
        os.replace(self._tmp + name, self._new + name)
        if meanwhile is not None:
            meanwhile()  # nothing to overlap here; called so a dry run takes the live path
        return Outcome("sent", 250, f"written to {self._new + name}")


def write_posts(folder: Path, network: str, posts: dict[str, Any]) -> Path:
    """The posts a dry run would have made, as JSON beside the step's messages."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{network}.json"
    path.write_text(json.dumps(posts, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path
