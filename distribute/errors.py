"""The errors distribute raises, all rooted at :class:`DistributeError`.

::

    DistributeError            one clear message, exit code 1 (2 for usage errors)
    ├── ConfigError            distribute.toml or the environment is wrong
    ├── ReleaseError           the release file cannot be read or parsed
    ├── TemplateError          a template does not exist, does not parse, or does not render
    ├── RecipientError         a journalist list cannot be read or holds invalid rows
    ├── CampaignError          a campaign file is invalid or cannot be planned
    ├── HeaderError            a value would change a message's header lines
    ├── LedgerError            the state database cannot be opened or used
    ├── WorkspaceError         a file or folder of the workspace cannot be written
    └── DeliveryError          a channel failed to deliver
        ├── SmtpError          the SMTP server refused the connection, the login or a message
        └── SocialError        a social network refused a post

Errors from other libraries are wrapped where they happen, with the file, line, host or
step they concern, so the command line never shows a foreign traceback.
"""

from __future__ import annotations

from pathlib import Path


class DistributeError(Exception):
    """Root of every error distribute reports to its user."""

    exit_code = 1

    def __init__(self, message: str, *, path: Path | str | None = None, line: int | None = None):
        self.message = message
        self.path = path
        self.line = line
        super().__init__(self.format())

    def format(self) -> str:
        """The message, prefixed with ``file:line:`` when it concerns a place in a file."""
        if self.path is None:
            return self.message
        where = str(self.path)
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.message}"


class ConfigError(DistributeError):
    """distribute.toml or an environment variable holds something unusable."""


class ReleaseError(DistributeError):
    """The release Markdown (or its front matter) cannot be read or understood."""


class TemplateError(DistributeError):
    """A Jinja2 template is missing, malformed or uses an undefined variable."""


class RecipientError(DistributeError):
    """A journalist list cannot be read, or a recipient is invalid."""


class CampaignError(DistributeError):
    """A campaign file is invalid, or a step cannot be planned."""


class HeaderError(DistributeError):
    """A value (a name, a subject, an address) would add or change a message's header lines.

    ``field`` names where the value came from (``recipient.outlet``, ``subject``, ``To``...),
    so the caller that knows the file can point at it.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str,
        path: Path | str | None = None,
        line: int | None = None,
    ):
        self.field = field
        super().__init__(message, path=path, line=line)


class LedgerError(DistributeError):
    """The state database cannot be opened, or a step is held by another process."""


class WorkspaceError(DistributeError):
    """An output file or folder (render output, outbox, log) cannot be written."""


class DeliveryError(DistributeError):
    """A channel could not deliver."""


class SmtpError(DeliveryError):
    """The SMTP server refused the connection, the login or a message."""


class SocialError(DeliveryError):
    """A social network refused a post or its credentials."""
