"""TLS to the SMTP server: certificates are verified, an in-house authority via ca_file."""

from __future__ import annotations

from pathlib import Path

from smtp_double import SmtpServer, self_signed
from test_send import PASSWORD, run, status, write_campaign, write_config


def test_starttls_with_ca_file_logs_in_and_sends(workspace: Path) -> None:
    cert, context = self_signed(workspace)
    with SmtpServer(password=PASSWORD, starttls=context) as server:
        write_config(
            workspace, server.port, security="starttls", username="press", ca_file=cert.name
        )
        campaign = write_campaign(workspace, 3)
        result = run("send", str(campaign), "--live", env={"DISTRIBUTE_SMTP_PASSWORD": PASSWORD})
    assert result.exit_code == 0, result.output
    assert len(server.received) == 3
    assert status(workspace)["desk/live"]["sent"] == 3


def test_implicit_tls(workspace: Path) -> None:
    cert, context = self_signed(workspace)
    with SmtpServer(implicit_tls=context) as server:
        write_config(workspace, server.port, security="tls", ca_file=cert.name)
        campaign = write_campaign(workspace, 2)
        result = run("send", str(campaign), "--live")
    assert result.exit_code == 0, result.output
    assert len(server.received) == 2


def test_unknown_certificate_is_refused(workspace: Path) -> None:
    _, context = self_signed(workspace)
    with SmtpServer(password=PASSWORD, starttls=context) as server:
        write_config(workspace, server.port, security="starttls", username="press")
        campaign = write_campaign(workspace, 2)
        result = run("send", str(campaign), "--live", env={"DISTRIBUTE_SMTP_PASSWORD": PASSWORD})
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: cannot connect to the SMTP server 127.0.0.1:{server.port}: "
    )
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not server.received


def test_plain_text_to_a_remote_host_is_refused(workspace: Path) -> None:
    write_config(workspace, 25, host="smtp.example.org")
    campaign = write_campaign(workspace, 1)
    result = run("send", str(campaign), "--live")
    assert result.exit_code == 1
    assert "security = 'none' sends passwords and releases in clear text" in result.stderr
