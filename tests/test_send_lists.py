"""What a press officer meets at ``send`` and ``recipients``: every invalid row at once,
``--skip-invalid``, list headers in French and English, suppression entries in any spelling
and any file-name case, and a suppression list of one's own beside the sample lists."""

from __future__ import annotations

import csv
import email
import email.policy
import io
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import date
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smtp_double import SmtpServer
from test_suppression import SPELLERS, addresses

from distribute import config
from distribute.cli import cli

ROOT = Path(__file__).resolve().parents[1]
SPELLINGS = "write jo@example.org, Jo Doe <jo@example.org> or mailto:jo@example.org"
HINT = (
    "`distribute recipients check` shows them all; "
    "`distribute send --skip-invalid` sends to the valid rows and lists the others."
)
DRY_END = "This was a dry run: nothing was sent."


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def workspace_at(folder: Path, port: int = 2525, lists: str = '"desk"') -> Path:
    """A workspace in ``folder`` with the example release and a one-step campaign."""
    (folder / "distribute.toml").write_text(
        '[sender]\nfrom = "Valmont Press Office <press@example.org>"\n'
        '[unsubscribe]\nurl = "https://www.example.org/unsubscribe?email={email}"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\nconnections = 1\n',
        encoding="utf-8",
    )
    shutil.copy(ROOT / "releases" / "hydrogen.md", folder / "hydrogen.md")
    (folder / "recipients").mkdir(exist_ok=True)
    campaign = folder / "launch.toml"
    campaign.write_text(
        'name = "launch"\nrelease = "hydrogen.md"\n'
        f'[[email]]\nname = "desk"\nlists = [{lists}]\nat = "2027-03-10 08:00"\n',
        encoding="utf-8",
    )
    return campaign


def put(workspace: Path, name: str, text: str) -> Path:
    path = workspace / "recipients" / name
    path.write_text(text, encoding="utf-8")
    return path


def outbox(workspace: Path, step: str = "desk", campaign: str = "launch") -> list[EmailMessage]:
    folder = workspace / "outbox" / campaign / step / "new"
    return [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for path in sorted(folder.iterdir())
    ]


def mailed(workspace: Path, step: str = "desk", campaign: str = "launch") -> set[str]:
    return {m["To"].addresses[0].addr_spec for m in outbox(workspace, step, campaign)}


def warnings(result: Result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("Warning: ")]


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as smtp:
        yield smtp


# --- every invalid row at once, and --skip-invalid -----------------------------------------


def desk_with_invalid_rows(workspace: Path, bad: int) -> list[str]:
    rows = [f"ok{n}@example.com" for n in range(3)] + [f"bad{n}@" for n in range(bad)]
    put(workspace, "desk.csv", "email\n" + "\n".join(rows) + "\n")
    return [
        f"  recipients/desk.csv:{5 + n}: invalid address 'bad{n}@': "
        "There must be something after the @-sign."
        for n in range(bad)
    ]


def test_send_names_every_invalid_row_up_to_20(workspace: Path, server: SmtpServer) -> None:
    campaign = workspace_at(workspace, server.port)
    lines = desk_with_invalid_rows(workspace, 25)

    result = run("send", str(campaign), "--live")

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: 25 invalid rows in the journalist lists:\n"
        + "\n".join(lines[:20])
        + "\n  ... and 5 more\n"
        + HINT
        + "\n"
    )
    assert not server.received
    assert not (workspace / "distribute.db").exists()


def test_send_names_a_single_invalid_row(workspace: Path) -> None:
    campaign = workspace_at(workspace)
    lines = desk_with_invalid_rows(workspace, 1)

    result = run("send", str(campaign))

    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: 1 invalid row in the journalist lists:\n{lines[0]}\n{HINT}\n",
    )


def test_skip_invalid_sends_to_the_valid_rows_and_lists_the_others(
    workspace: Path, server: SmtpServer
) -> None:
    campaign = workspace_at(workspace, server.port)
    lines = desk_with_invalid_rows(workspace, 2)

    result = run("send", str(campaign), "--live", "--skip-invalid")

    assert result.exit_code == 0, result.output
    assert warnings(result) == [
        f"Warning: recipients/desk.csv:{5 + n}: not mailed: invalid address 'bad{n}@': "
        "There must be something after the @-sign."
        for n in range(2)
    ]
    assert lines  # the same rows the refusal names
    assert sorted(server.handler.per_recipient()) == [f"ok{n}@example.com" for n in range(3)]


# --- list headers --------------------------------------------------------------------------


def test_values_under_an_empty_header_cell_are_named_not_dropped(workspace: Path) -> None:
    """Before: a column whose header cell was left empty was silently never read."""
    campaign = workspace_at(workspace)
    put(
        workspace,
        "desk.csv",
        "email,first_name,,last_name,\n"
        "jo@example.org,Jo,Science desk,Doe,\n"
        "al@example.org,Al,,Roe,\n",
    )

    result = run("send", str(campaign))

    assert result.exit_code == 0, result.output
    assert (
        "Warning: recipients/desk.csv: column 3 has no header, so its values are not read: "
        "give it a name in the header line"
    ) in warnings(result)
    check = run("recipients", "check")
    assert (
        "Warning: recipients/desk.csv: column 3 has no header, so its values are not read: "
        "give it a name in the header line"
    ) in check.stdout


def test_a_french_header_is_read_and_the_unused_columns_named(workspace: Path) -> None:
    campaign = workspace_at(workspace)
    put(
        workspace,
        "desk.csv",
        "Email;Prénom;Nom;Média;Langue\nPAUL.LANGEVIN@example.org;Paul;Langevin;Le Journal;fr\n",
    )

    result = run("send", str(campaign))

    assert result.exit_code == 0, result.output
    assert warnings(result) == [
        "Warning: recipients/desk.csv: no template or filter of this campaign uses the columns "
        "Média (read as outlet), Langue (read as language)"
    ]
    (message,) = outbox(workspace)
    assert str(message["To"]) == "Paul Langevin <PAUL.LANGEVIN@example.org>"
    text = message.get_body(("plain",))
    assert text is not None and "Dear Paul," in text.get_content()


@pytest.mark.parametrize(
    "header",
    [
        "E-mail,First Name,Last Name,Outlet",
        "Email Address,first-name,LAST_NAME,Media Outlet",
        "Courriel;Prénom;Nom de famille;Rédaction",
        "Adresse e-mail;PRENOM;nom;Société",
        "adresse électronique,Prénom,Nom,Journal",
    ],
)
def test_usual_header_spellings_are_understood(workspace: Path, header: str) -> None:
    campaign = workspace_at(workspace)
    delimiter = ";" if ";" in header else ","
    row = delimiter.join(["ada@example.org", "Ada", "Lovelace", "Engines"])
    put(workspace, "desk.csv", f"{header}\n{row}\n")

    result = run("send", str(campaign))

    assert result.exit_code == 0, result.output
    (message,) = outbox(workspace)
    assert str(message["To"]) == "Ada Lovelace <ada@example.org>"
    [note] = warnings(result)
    assert note.endswith("(read as outlet)")


def test_a_list_with_no_address_column_lists_the_expected_columns(workspace: Path) -> None:
    campaign = workspace_at(workspace)
    put(workspace, "desk.csv", "Contact;Prénom\npaul@example.org;Paul\n")

    result = run("send", str(campaign))

    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: {workspace / 'recipients' / 'desk.csv'}:1: no email column in the header "
        "line (found: 'Contact', "
        "'Prénom'); expected columns: email (or E-mail, Email Address, Courriel, Adresse "
        "e-mail), first_name (Prénom, First Name), last_name (Nom, Last Name), name, outlet "
        "(Média), beat (Rubrique), language (Langue), timezone, tags\n",
    )


# --- suppression entries -------------------------------------------------------------------


def test_display_name_and_mailto_entries_are_suppressed(workspace: Path) -> None:
    """The review's case: these two were mailed."""
    campaign = workspace_at(workspace)
    put(workspace, "desk.csv", "email\nj1@example.com\nj2@example.com\nkeep@example.com\n")
    put(
        workspace,
        "suppressed.csv",
        "email,reason\nJo Doe <j1@example.com>,asked\nmailto:j2@example.com,asked\n",
    )

    result = run("send", str(campaign))

    assert result.exit_code == 0, result.output
    assert warnings(result) == []
    assert mailed(workspace) == {"keep@example.com"}


SUPPRESSION_PROBLEM = (
    "recipients/Suppressed.csv:3: suppression entry not understood: invalid address 'Jo Doe': "
    f"An email address must have an @-sign. ({SPELLINGS})"
)


def problem_workspace(workspace: Path, port: int = 2525) -> Path:
    campaign = workspace_at(workspace, port)
    put(workspace, "desk.csv", "email\nj1@example.com\nkeep@example.com\n")
    put(workspace, "Suppressed.csv", "email,reason\nj1@example.com,asked\nJo Doe,asked\n")
    return campaign


def test_check_reports_an_entry_not_understood(workspace: Path) -> None:
    problem_workspace(workspace)

    result = run("recipients", "check")

    assert result.exit_code == 1
    assert result.stdout.splitlines()[-3:] == [
        SUPPRESSION_PROBLEM,
        "1 unique addresses to mail; 0 invalid rows, 0 duplicates, 1 suppressed.",
        "1 suppression entry is not understood: a live send refuses to run until it is fixed.",
    ]
    report = json.loads(run("recipients", "check", "--json").stdout)
    assert report["problems"] == [
        {
            "file": "recipients/Suppressed.csv",
            "line": 3,
            "email": "Jo Doe",
            "reason": SUPPRESSION_PROBLEM.split(": ", 1)[1],
            "kind": "suppression",
        }
    ]


def test_a_dry_run_shows_an_entry_not_understood(workspace: Path) -> None:
    campaign = problem_workspace(workspace)

    result = run("send", str(campaign))

    assert result.exit_code == 0, result.output
    assert warnings(result) == [
        f"Warning: {SUPPRESSION_PROBLEM}",
        "Warning: a live send refuses to run until every suppression entry is understood",
    ]
    assert mailed(workspace) == {"keep@example.com"}


def test_a_live_send_stops_on_an_entry_not_understood(workspace: Path, server: SmtpServer) -> None:
    campaign = problem_workspace(workspace, server.port)

    result = run("send", str(campaign), "--live")

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: 1 suppression entry is not understood, so a live send cannot know who must "
        f"not be mailed:\n  {SUPPRESSION_PROBLEM}\n"
        "`distribute recipients check` shows them all.\n"
    )
    assert not server.received
    assert json.loads(run("status", "--json").stdout) == {"campaigns": []}


def csv_row(*cells: str) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue()


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    entries=st.lists(
        st.tuples(addresses(), st.sampled_from(SPELLERS), st.sampled_from(["", "Jo", "Doe, Jo"])),
        min_size=1,
        max_size=6,
        unique_by=lambda entry: entry[0].lower(),
    ),
    file_name=st.sampled_from(["suppressed.csv", "Suppressed.csv", "SUPPRESSED.CSV"]),
)
def test_every_spelling_is_suppressed_at_send_time(
    entries: list[tuple[str, Callable[[str, str], str], str]], file_name: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        workspace = Path(tmp)
        patch.chdir(workspace)
        campaign = workspace_at(workspace)
        targets = [target for target, _, _ in entries]
        rows = "".join(csv_row(target.upper()) for target in targets)
        put(workspace, "desk.csv", f"email\nkeep@example.com\n{rows}")
        rows = "".join(csv_row(speller(target, name), "asked") for target, speller, name in entries)
        put(workspace, file_name, f"email,reason\n{rows}")

        result = run("send", str(campaign))
        sent = mailed(workspace)

    assert result.exit_code == 0, result.output
    assert warnings(result) == []
    assert sent == {"keep@example.com"}


@pytest.mark.parametrize("names", [["Suppressed.csv"], ["SUPPRESSED.CSV", "suppressed.csv"]])
def test_a_suppression_list_in_any_case_is_read_by_send(workspace: Path, names: list[str]) -> None:
    campaign = workspace_at(workspace)
    put(workspace, "desk.csv", "email\na@example.org\nb@example.org\nkeep@example.org\n")
    for n, name in enumerate(names):
        put(workspace, name, f"email\n{'ab'[n]}@example.org\n")

    result = run("send", str(campaign))

    assert result.exit_code == 0, result.output
    assert mailed(workspace) == {"keep@example.org", "a@example.org", "b@example.org"} - {
        f"{'ab'[n]}@example.org" for n in range(len(names))
    }


def test_two_lists_differing_only_in_case_are_refused(workspace: Path) -> None:
    campaign = workspace_at(workspace, lists='"science-press"')
    put(workspace, "science-press.csv", "email\na@example.org\n")
    put(workspace, "Science-Press.csv", "email\nb@example.org\n")

    sent = run("send", str(campaign))
    checked = run("recipients", "check")

    message = (
        f"Error: {workspace / 'recipients'}: Science-Press.csv and science-press.csv are one "
        "list (their names differ only in letter case): merge them into one file\n"
    )
    assert (sent.exit_code, sent.stderr) == (1, message)
    assert (checked.exit_code, checked.stderr) == (1, message)


def test_a_list_named_in_another_case_is_found(workspace: Path) -> None:
    campaign = workspace_at(workspace, lists='"Science-Press"')
    put(workspace, "science-press.csv", "email\na@example.org\n")

    result = run("send", str(campaign))

    assert result.exit_code == 0, result.output
    assert mailed(workspace) == {"a@example.org"}


def test_suppress_reads_a_pasted_address_and_neutralises_a_formula(workspace: Path) -> None:
    workspace_at(workspace)
    put(workspace, "desk.csv", "email\n=cmd@example.org\nkeep@example.org\n")

    pasted = run("recipients", "suppress", "Jo Doe <Jo@Example.org>")
    formula = run("recipients", "suppress", "mailto:=cmd@example.org", "--reason", "@SUM(1)")
    again = run("recipients", "suppress", "=CMD@example.org")

    assert (pasted.exit_code, pasted.stdout) == (
        0,
        "Suppressed Jo@Example.org in recipients/suppressed.csv.\n",
    )
    assert (formula.exit_code, formula.stdout) == (
        0,
        "Suppressed =cmd@example.org in recipients/suppressed.csv.\n",
    )
    assert (again.exit_code, again.stdout) == (0, "=CMD@example.org is already suppressed.\n")
    today = date.today().isoformat()
    assert (workspace / "recipients" / "suppressed.csv").read_text("utf-8") == (
        f"email,reason,date\nJo@Example.org,,{today}\n'=cmd@example.org,'@SUM(1),{today}\n"
    )
    check = json.loads(run("recipients", "check", "--json").stdout)
    assert [(s["name"], s["suppressed"]) for s in check["lists"]] == [("desk", 1)]


# --- a suppression list of one's own beside the sample lists -------------------------------


def test_suppress_in_an_empty_folder_keeps_the_sample_lists(workspace: Path) -> None:
    example = ROOT / "releases" / "hydrogen.toml"
    before = run("send", str(example), "--step", "science-desk")
    assert before.exit_code == 0, before.output
    assert "alice.hartley@example.com" in mailed(workspace, "science-desk", "hydrogen-platform")

    suppressed = run("recipients", "suppress", "alice.hartley@example.com")
    after = run("send", str(example), "--step", "science-desk")
    checked = json.loads(run("recipients", "check", "--json").stdout)

    assert (suppressed.exit_code, suppressed.stdout) == (
        0,
        "Suppressed alice.hartley@example.com in recipients/suppressed.csv.\n",
    )
    assert after.exit_code == 0, after.output
    assert after.stdout.rstrip().splitlines()[-1].startswith(DRY_END)
    assert "alice.hartley@example.com" not in mailed(workspace, "science-desk", "hydrogen-platform")
    folder = config.bundled("recipients")
    assert {Path(entry["file"]).parent.resolve() for entry in checked["lists"]} == {folder}
    science = next(entry for entry in checked["lists"] if entry["name"] == "science-press")
    assert science["suppressed"] == 2  # the sample list's own, and the workspace's


def test_a_send_points_out_a_list_named_like_the_suppression_list(workspace: Path) -> None:
    campaign = workspace_at(workspace)
    put(workspace, "desk.csv", "email\njo@example.org\n")
    put(workspace, "suppression.csv", "email\njo@example.org\n")

    result = run("send", str(campaign))

    assert result.exit_code == 0, result.output
    assert (
        "Warning: recipients/suppression.csv is read as a mailing list, not as the suppression "
        "list: to suppress its addresses, move them into recipients/suppressed.csv"
    ) in warnings(result)
