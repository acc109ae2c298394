"""``distribute recipients check`` and ``distribute recipients suppress``."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from distribute import config
from distribute.cli import cli

DATA = Path(__file__).parent / "data" / "lists"
NOT_UTF8 = (
    "is not UTF-8 text: save it as CSV UTF-8"
    " (Excel: File > Save As > 'CSV UTF-8 (Comma delimited)')"
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace (the current folder) whose settings point at ``recipients/``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "distribute.toml").write_text(
        '[paths]\nrecipients = "recipients"\n', encoding="utf-8"
    )
    folder = tmp_path / "recipients"
    folder.mkdir()
    (folder / "science.csv").write_text(
        "email,name,language\nann@example.org,Ann,en\nbo@example.org,Bo,en\ncy@example.org,Cy,en\n",
        encoding="utf-8",
    )
    (folder / "presse.csv").write_text(
        "email,name,language\nANN@example.org,Anne,fr\ndom@example.org,Dom,fr\n",
        encoding="utf-8",
    )
    (folder / "suppressed.csv").write_text(
        "email,reason,date\nCY@example.org,asked,2026-01-02\n", encoding="utf-8"
    )
    return tmp_path


def run(project: Path, *args: str) -> Result:
    config_file = str(project / "distribute.toml")
    return CliRunner().invoke(cli, ["--config", config_file, *args], catch_exceptions=False)


def test_check_prints_a_table_and_the_problems(project: Path) -> None:
    result = run(project, "recipients", "check")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    rows = [line.split() for line in lines if line.startswith("│")]
    assert rows == [
        ["│", "presse", "│", "2", "│", "2", "│", "0", "│", "0", "│", "0", "│"],
        ["│", "science", "│", "3", "│", "3", "│", "0", "│", "1", "│", "1", "│"],
    ]
    assert lines[-2:] == [
        "recipients/science.csv:2: duplicate of ANN@example.org (presse.csv:2), not mailed twice",
        "3 unique addresses to mail; 0 invalid rows, 1 duplicates, 1 suppressed.",
    ]


def test_check_exits_1_on_invalid_rows(project: Path) -> None:
    shutil.copy(DATA / "dirty.csv", project / "dirty.csv")

    result = run(project, "recipients", "check", "dirty.csv")

    assert result.exit_code == 1
    problems = [line for line in result.output.splitlines() if line.startswith("dirty.csv:")]
    assert problems == [
        "dirty.csv:3: invalid address 'pierre dupont@example.org': "
        "The email address contains invalid characters before the @-sign: SPACE.",
        "dirty.csv:4: invalid address 'marie@': There must be something after the @-sign.",
        "dirty.csv:5: invalid address 'paul@@example.net': "
        "The part after the @-sign contains invalid characters: '@'.",
        "dirty.csv:6: empty email",
        "dirty.csv:11: duplicate of jane.doe@example.com (dirty.csv:2), not mailed twice",
        "dirty.csv:12: invalid address 'ok@example.com\\nBcc: x@example.org': "
        "The part after the @-sign contains invalid characters: ':', '@', SPACE, U+000A.",
        "dirty.csv:15: a field spans several lines and holds what looks like another row: "
        "check the quotes near line 15",
    ]
    assert result.output.splitlines()[-1] == (
        "4 unique addresses to mail; 6 invalid rows, 1 duplicates, 0 suppressed."
    )


def test_check_json(project: Path) -> None:
    outside = project.parent / f"{project.name}-elsewhere"
    outside.mkdir()
    shutil.copy(DATA / "dirty.csv", outside / "dirty.csv")
    args = ["recipients", "check", "recipients/science.csv", str(outside / "dirty.csv"), "--json"]

    result = run(project, *args)

    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["lists"] == [
        {
            "name": "science",
            "file": "recipients/science.csv",
            "rows": 3,
            "valid": 3,
            "invalid": 0,
            "duplicates": 0,
            "suppressed": 1,
        },
        {
            "name": "dirty",
            "file": str(outside / "dirty.csv"),
            "rows": 11,
            "valid": 5,
            "invalid": 6,
            "duplicates": 1,
            "suppressed": 0,
        },
    ]
    assert report["problems"][0] == {
        "file": str(outside / "dirty.csv"),
        "line": 3,
        "email": "pierre dupont@example.org",
        "reason": "invalid address 'pierre dupont@example.org': "
        "The email address contains invalid characters before the @-sign: SPACE.",
        "kind": "invalid",
    }
    assert [(p["line"], p["email"]) for p in report["problems"]] == [
        (3, "pierre dupont@example.org"),
        (4, "marie@"),
        (5, "paul@@example.net"),
        (6, ""),
        (11, "JANE.DOE@Example.COM"),
        (12, "ok@example.com\nBcc: x@example.org"),
        (15, "frank@example.org"),
    ]
    # ann and bo from science, plus jane, eve, mallory and zoe from dirty; cy is suppressed.
    assert report["unique"] == 6


def test_check_json_counts_unique_addresses_over_the_lists(project: Path) -> None:
    result = run(project, "recipients", "check", "--json")

    assert result.exit_code == 0
    report = json.loads(result.output)
    assert report["unique"] == 3
    assert report["problems"] == [
        {
            "file": "recipients/science.csv",
            "line": 2,
            "email": "ann@example.org",
            "reason": "duplicate of ANN@example.org (presse.csv:2), not mailed twice",
            "kind": "duplicate",
        }
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["latin1.csv"], f"Error: latin1.csv:2: {NOT_UTF8}"),
        (["missing.csv"], "Error: missing.csv: file not found"),
        (
            ["recipients/suppressed.csv"],
            "Error: recipients/suppressed.csv: is the suppression "
            "list, not a mailing list: it cannot be read as one",
        ),
        (
            ["nocolumn.csv"],
            "Error: nocolumn.csv:1: no email column in the header line (found: 'name'); "
            "expected columns: email (or E-mail, Email Address, Courriel, Adresse e-mail), "
            "first_name (Prénom, First Name), last_name (Nom, Last Name), name, outlet (Média), "
            "beat (Rubrique), language (Langue), timezone, tags",
        ),
    ],
    ids=["not-utf8", "missing", "suppression-list", "no-email-column"],
)
def test_check_errors_are_one_line(project: Path, args: list[str], message: str) -> None:
    shutil.copy(DATA / "latin1.csv", project / "latin1.csv")
    (project / "nocolumn.csv").write_text("name\nAnn\n", encoding="utf-8")

    result = run(project, "recipients", "check", *args)

    assert result.exit_code == 1
    assert result.output == message + "\n"


def test_check_refuses_a_list_with_a_quote_never_closed(project: Path) -> None:
    """The review's case: Bob and Chloé used to vanish into Amélie's first name."""
    (project / "x.csv").write_text(
        'email,first_name\na@example.org,"Amélie\nb@example.org,Bob\nc@example.org,Chloé\n',
        encoding="utf-8",
    )

    result = run(project, "recipients", "check", "--json", "x.csv")

    assert (result.exit_code, result.output) == (
        1,
        "Error: x.csv:2: a quote opened on this line is never closed\n",
    )


def test_check_reports_a_row_that_swallowed_others(project: Path) -> None:
    (project / "x.csv").write_text(
        "email,first_name,outlet\n"
        'a@example.org,"Amélie,Wire\n'  # 2: the quote closes on line 4
        "b@example.org,Bob,Wire\n"
        'c@example.org,"Chloé",Wire\n'
        'd@example.org,Dan,"12 rue Haute,\n75001 Paris"\n'  # 5-6: a legitimate line break
        "e@example.org,Eve,Post\n",
        encoding="utf-8",
    )

    result = run(project, "recipients", "check", "--json", "x.csv")

    assert result.exit_code == 1
    report = json.loads(result.output)
    assert [(s["rows"], s["valid"], s["invalid"]) for s in report["lists"]] == [(3, 2, 1)]
    assert report["problems"] == [
        {
            "file": "x.csv",
            "line": 2,
            "email": "a@example.org",
            "reason": "a field spans several lines and holds what looks like another row: "
            "check the quotes near line 2",
            "kind": "invalid",
        }
    ]
    assert report["unique"] == 2


def test_check_keeps_legitimate_multiline_fields(project: Path) -> None:
    (project / "x.csv").write_text(
        'email,name,address\r\na@example.org,Ann,"12 rue Haute,\r\n75001 Paris"\r\n'
        'b@example.org,"Bo\r\nLee",\r\n',
        encoding="utf-8",
    )

    result = run(project, "recipients", "check", "--json", "x.csv")

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [(s["rows"], s["valid"], s["invalid"]) for s in report["lists"]] == [(2, 2, 0)]
    assert report["problems"] == []


def test_suppress_writes_a_formula_reason_as_text(project: Path) -> None:
    result = run(project, "recipients", "suppress", "dom@example.org", "--reason", "=1+1")

    assert result.exit_code == 0, result.output
    assert (project / "recipients" / "suppressed.csv").read_text(encoding="utf-8") == (
        "email,reason,date\n"
        "CY@example.org,asked,2026-01-02\n"
        f"dom@example.org,'=1+1,{date.today().isoformat()}\n"
    )


def test_check_an_empty_folder(project: Path) -> None:
    for path in (project / "recipients").glob("*.csv"):
        path.unlink()

    result = run(project, "recipients", "check")

    assert (result.exit_code, result.output) == (0, "No lists in recipients.\n")


def test_check_the_sample_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty workspace falls back on the lists shipped with distribute, which are clean."""
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(cli, ["recipients", "check", "--json"], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {entry["name"] for entry in report["lists"]} >= {"science-press", "presse-regionale"}
    assert all(entry["invalid"] == 0 for entry in report["lists"])
    assert report["unique"] >= 24
    folder = config.bundled("recipients")
    assert all(Path(entry["file"]).parent.resolve() == folder for entry in report["lists"])


def test_suppress_adds_then_reports_already_suppressed(project: Path) -> None:
    first = run(project, "recipients", "suppress", " Dom@Example.org ", "--reason", "asked")
    again = run(project, "recipients", "suppress", "DOM@example.org")
    check = run(project, "recipients", "check", "--json")

    assert (first.exit_code, first.output) == (
        0,
        "Suppressed Dom@Example.org in recipients/suppressed.csv.\n",
    )
    assert (again.exit_code, again.output) == (0, "DOM@example.org is already suppressed.\n")
    assert (project / "recipients" / "suppressed.csv").read_text(encoding="utf-8") == (
        "email,reason,date\n"
        "CY@example.org,asked,2026-01-02\n"
        f"Dom@Example.org,asked,{date.today().isoformat()}\n"
    )
    stats = {entry["name"]: entry["suppressed"] for entry in json.loads(check.output)["lists"]}
    assert stats == {"presse": 1, "science": 1}


def test_suppress_rejects_an_invalid_address(project: Path) -> None:
    before = (project / "recipients" / "suppressed.csv").read_bytes()

    result = run(project, "recipients", "suppress", "dom@")

    assert (result.exit_code, result.output) == (
        1,
        "Error: invalid address 'dom@': There must be something after the @-sign.\n",
    )
    assert (project / "recipients" / "suppressed.csv").read_bytes() == before


def test_suppress_never_writes_into_the_sample_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    bundled = config.bundled("recipients") / "suppressed.csv"
    before = bundled.read_bytes()

    result = CliRunner().invoke(
        cli, ["recipients", "suppress", "ann@example.org"], catch_exceptions=False
    )

    assert (result.exit_code, result.output) == (
        0,
        "Suppressed ann@example.org in recipients/suppressed.csv.\n",
    )
    assert bundled.read_bytes() == before
    assert (tmp_path / "recipients" / "suppressed.csv").read_text(encoding="utf-8") == (
        f"email,reason,date\nann@example.org,,{date.today().isoformat()}\n"
    )


def test_the_workspace_suppression_list_applies_to_lists_elsewhere(project: Path) -> None:
    """``suppress`` wrote recipients/suppressed.csv; the lists later moved to a folder named
    in [paths]. Before: that suppression list was no longer read, and Cy was mailed."""
    (project / "distribute.toml").write_text('[paths]\nrecipients = "lists"\n', encoding="utf-8")
    (project / "lists").mkdir()
    for name in ("science.csv", "presse.csv"):
        (project / "recipients" / name).rename(project / "lists" / name)

    result = run(project, "recipients", "check", "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {row["name"]: row["suppressed"] for row in report["lists"]} == {
        "presse": 0,
        "science": 1,
    }


@pytest.mark.parametrize(
    "name", ["suppression.csv", "Suppressed (1).csv", "suppressed.csv.csv", "suppressions.csv"]
)
def test_a_list_named_like_the_suppression_list_is_pointed_out(project: Path, name: str) -> None:
    """Before: read as a mailing list that no campaign names, its addresses never suppressed,
    with no word about it."""
    (project / "recipients" / name).write_text("email\nann@example.org\n", encoding="utf-8")

    result = run(project, "recipients", "check")

    assert (
        f"Warning: recipients/{name} is read as a mailing list, not as the suppression list: "
        "to suppress its addresses, move them into recipients/suppressed.csv"
    ) in result.output
