from __future__ import annotations

import email
import email.policy
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from distribute.cli import cli
from distribute.config import bundled


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_render_seed_writes_three_files(seed_path: Path, workspace: Path) -> None:
    code, out, err = run("render", str(seed_path), "--out", "out")
    assert code == 0, err
    assert err == ""  # no cssutils or premailer noise
    assert "Subject: Institut Mines-Télécom among the Top 50 patent applicants" in out
    assert "Preheader: Institut Mines-Télécom (IMT) puts its research" in out
    assert "HTML part:" in out and "Text part:" in out
    assert sorted(p.name for p in (workspace / "out").iterdir()) == [
        "email.eml",
        "email.html",
        "email.txt",
        "posts",
    ]
    message = email.message_from_bytes(
        (workspace / "out" / "email.eml").read_bytes(), policy=email.policy.default
    )
    assert message["To"] == "Jane Doe <jane.doe@example.com>"
    html = (workspace / "out" / "email.html").read_text(encoding="utf-8")
    assert "Dear Jane," in html and 'style="' in html


def test_render_to_option_and_default_out(example_path: Path, workspace: Path) -> None:
    release = workspace / "rel" / "hydrogen.md"
    release.parent.mkdir()
    shutil.copy(example_path, release)
    code, _out, err = run("render", str(release), "--to", "Marc Petit <marc@example.net>")
    assert code == 0, err
    raw = (workspace / "rel" / "out" / "email.eml").read_bytes()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["To"] == "Marc Petit <marc@example.net>"
    assert message["Subject"].startswith("EMBARGOED until")


def test_undefined_variable_names_template_and_line(example_path: Path, workspace: Path) -> None:
    templates = workspace / "templates" / "email"
    templates.mkdir(parents=True)
    shipped = bundled("templates") / "email"
    for name in ("press-release.html.j2", "press-release.css"):
        shutil.copy(shipped / name, templates / name)
    (templates / "press-release.txt.j2").write_text(
        "{{ release.title }}\n\n{{ release.no_such_field }}\n", encoding="utf-8"
    )
    code, out, err = run("render", str(example_path), "--out", "out")
    assert code == 1
    assert err.startswith("Error: ")
    assert "press-release.txt.j2:3: undefined variable" in err
    assert "no_such_field" in err
    assert "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1
    assert not (workspace / "out").exists()


def test_unknown_recipient_field(example_path: Path, workspace: Path) -> None:
    templates = workspace / "templates" / "email"
    templates.mkdir(parents=True)
    (templates / "press-release.txt.j2").write_text("{{ recipient.nickname }}\n", "utf-8")
    code, _, err = run("render", str(example_path), "--out", "out")
    assert code == 1
    assert "press-release.txt.j2:1: undefined variable: 'recipient' has no field 'nickname'" in err


def test_template_syntax_error(example_path: Path, workspace: Path) -> None:
    templates = workspace / "templates" / "email"
    templates.mkdir(parents=True)
    (templates / "press-release.txt.j2").write_text("ok\n{% if %}\n", encoding="utf-8")
    code, _, err = run("render", str(example_path), "--out", "out")
    assert code == 1
    assert "press-release.txt.j2:2: template syntax error" in err


def test_missing_release(workspace: Path) -> None:
    code, out, err = run("render", "nope.md")
    assert code == 1
    assert err == "Error: nope.md: release file not found\n"
    assert out == ""


def test_bad_front_matter(workspace: Path) -> None:
    (workspace / "bad.md").write_text("---\ntitle: [oops\n---\n# T\n", encoding="utf-8")
    code, _, err = run("render", "bad.md")
    assert code == 1
    assert err.startswith("Error: bad.md:2: bad front matter:")
    assert len(err.strip().splitlines()) == 1


def test_unreadable_release(workspace: Path) -> None:
    (workspace / "folder.md").mkdir()
    code, _, err = run("render", "folder.md")
    assert code == 1
    assert "folder.md" in err and "Traceback" not in err


def test_bad_to_is_a_usage_error(example_path: Path, workspace: Path) -> None:
    code, _, err = run("render", str(example_path), "--to", "nobody")
    assert code == 2
    assert "'nobody' is not one address" in err


@pytest.mark.parametrize(
    "to",
    [
        "a@example.com, b@example.com",
        "Jo <jo@example.com> trailing",
        "Jo <jo@example.com",
        "group: jo@example.com;",
        "Jo <a@example.com> <b@example.com>",
        "Doe, Jo <jo@example.com>",
    ],
    ids=["two", "trailing", "unclosed", "group", "two-angles", "unquoted-comma"],
)
def test_to_is_exactly_one_address(example_path: Path, workspace: Path, to: str) -> None:
    """Before: parseaddr kept the first address it found and dropped the rest, exit 0."""
    code, _, err = run("render", str(example_path), "--to", to, "--out", "out")
    assert code == 2
    assert err.endswith(
        f"Error: Invalid value: {to!r} is not one address like "
        "'Jane Doe <jane@example.com>' (a name holding , ; : ( ) goes in double quotes)\n"
    )
    assert not (workspace / "out").exists()


@pytest.mark.parametrize(
    ("to", "header"),
    [
        ('"Doe, Jo" <jo@example.com>', b'To: "Doe, Jo" <jo@example.com>'),
        ("<jo@example.com>", b"To: jo@example.com"),
        ("jo@example.com", b"To: jo@example.com"),
        ("Jo \u202eDoe <jo@example.com>", b"To: Jo Doe <jo@example.com>"),
    ],
    ids=["quoted", "angle", "bare", "bidi-override-dropped"],
)
def test_to_as_a_list_row_would_have_it(
    example_path: Path, workspace: Path, to: str, header: bytes
) -> None:
    code, _, err = run("render", str(example_path), "--to", to, "--out", "out")
    assert code == 0, err
    raw = (workspace / "out" / "email.eml").read_bytes()
    assert header + b"\r\n" in raw


def test_bad_config_is_one_line(workspace: Path, example_path: Path) -> None:
    (workspace / "distribute.toml").write_text("[sender]\nfrom = 'nobody'\n", encoding="utf-8")
    code, _, err = run("render", str(example_path))
    assert code == 1
    assert err == (
        f"Error: {workspace / 'distribute.toml'}:2: [sender] from: 'nobody' is not an email "
        "address\n"
    )


def test_url_option_reaches_email_and_post(seed_path: Path, workspace: Path) -> None:
    url = "https://www.example.org/press/patents"
    code, out, err = run("render", str(seed_path), "--out", "out", "--url", url)
    assert code == 0, err
    assert "no url" not in out
    assert url in (workspace / "out" / "email.txt").read_text(encoding="utf-8").splitlines()
    assert f'href="{url}"' in (workspace / "out" / "email.html").read_text(encoding="utf-8")
    assert url in (workspace / "out" / "posts" / "x.json").read_text(encoding="utf-8")


def test_template_not_utf8(example_path: Path, workspace: Path) -> None:
    templates = workspace / "templates" / "email"
    templates.mkdir(parents=True)
    (templates / "press-release.txt.j2").write_bytes(b"\xff\xfe{{ release.title }}\n")
    code, _out, err = run("render", str(example_path), "--out", "out")
    assert code == 1
    assert (
        err == f"Error: {templates / 'press-release.txt.j2'}: is not UTF-8 text; save it as UTF-8\n"
    )
    assert not (workspace / "out").exists()


def test_template_expression_failure_names_the_line(example_path: Path, workspace: Path) -> None:
    templates = workspace / "templates" / "email"
    templates.mkdir(parents=True)
    (templates / "press-release.txt.j2").write_text(
        "{{ release.title }}\n{{ release.hashtags | length / 0 }}\n", encoding="utf-8"
    )
    code, _, err = run("render", str(example_path), "--out", "out")
    assert code == 1
    assert "press-release.txt.j2:2: template failed: division by zero" in err


def test_output_folder_that_is_a_file(example_path: Path, workspace: Path) -> None:
    (workspace / "afile").write_text("x", encoding="utf-8")
    code, _out, err = run("render", str(example_path), "--out", "afile/sub")
    assert code == 1
    assert err == "Error: afile/sub: Not a directory\n"


def test_status_without_anything_planned_creates_nothing(workspace: Path) -> None:
    code, out, _ = run("status")
    assert code == 0
    assert out == "No campaign has been planned yet.\n"
    assert not (workspace / "distribute.db").exists()


def test_missing_database_driver(workspace: Path) -> None:
    (workspace / "distribute.toml").write_text(
        '[state]\nurl = "mysql://press:hunter2@db.example.org/press"\n', encoding="utf-8"
    )
    code, _, err = run("status")
    assert code == 1
    assert err.startswith("Error: cannot open the state database mysql://press:***@db.example")
    assert "its driver is not installed" in err and "hunter2" not in err


def test_brackets_in_a_release_are_text_not_markup(workspace: Path) -> None:
    (workspace / "r.md").write_text(
        "# Results [/note] and [bold]tags[/bold] are text\n\nBody.\n", encoding="utf-8"
    )
    code, out, err = run("render", "r.md", "--out", "out")
    assert code == 0, err
    assert "Subject: Results [/note] and [bold]tags[/bold] are text" in out


def _links_in(html_text: str) -> list[str]:
    return re.findall(r'<(?:a|img)\b[^>]*?\b(?:href|src)="([^"]*)"', html_text)


def test_raw_link_in_a_list_item_is_text(workspace: Path) -> None:
    (workspace / "r.md").write_text(
        "# A fictional launch\n\n"
        '- first item with <a href="javascript:alert(1)">a raw link</a>\n'
        '- second item with <a href="javascript&#58;alert(2)">another</a>\n',
        encoding="utf-8",
    )
    code, _, err = run("render", "r.md", "--out", "out")
    assert code == 0, err
    html_text = (workspace / "out" / "email.html").read_text(encoding="utf-8")
    assert '&lt;a href="javascript:alert(1)"&gt;a raw link&lt;/a&gt;' in html_text
    assert all(link.startswith(("https:", "mailto:")) for link in _links_in(html_text))


@pytest.mark.parametrize(
    ("line", "written", "shown"),
    [
        ("See [the video](javascript&#58;alert(1)).", "javascript:alert(1)", None),
        ("See [the video](JaVaScRiPt:alert(1)).", "JaVaScRiPt:alert(1)", None),
        ("- item [video](%6Aavascript:alert(1))", "%6Aavascript:alert(1)", None),
        ("See <vbscript:msgbox(1)>.", "vbscript:msgbox(1)", None),
        ("See [the page](/en/news).", "/en/news", None),
        ("See [the page](www.example.org).", "www.example.org", None),
        ("[@Valmont](javascript://twitter.com/%0Aalert(1))", None, "javascript://twitter.com/"),
        (
            "<div>\nSee [the file](file:///C:/press/release.pdf).\n</div>",
            "file:///C:/press/release.pdf",
            None,
        ),
    ],
    ids=[
        "entity-colon",
        "mixed-case",
        "percent-in-list",
        "autolink",
        "relative",
        "no-scheme",
        "handle",
        "in-raw-html-block",
    ],
)
def test_link_that_cannot_be_sent_names_its_line(
    workspace: Path, line: str, written: str | None, shown: str | None
) -> None:
    (workspace / "r.md").write_text(
        f"# A fictional launch\n\nFirst paragraph.\n\n{line}\n", encoding="utf-8"
    )
    code, out, err = run("render", "r.md", "--out", "out")
    assert code == 1
    assert out == ""
    if written is not None:
        assert err == (
            f"Error: r.md:5: link to {written!r}: only http, https and mailto links can be "
            "sent; write the full address (https://...)\n"
        )
    else:
        assert err.startswith(f"Error: r.md:5: link to '{shown}")
    assert not (workspace / "out").exists()


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "javascript&#58;alert(1)", "httpx://example.org", "https:", "/news"],
)
def test_url_option_must_be_a_web_address(example_path: Path, workspace: Path, url: str) -> None:
    code, _, err = run("render", str(example_path), "--out", "out", "--url", url)
    assert code == 2
    assert err.endswith(
        f"Error: Invalid value for '--url': {url!r} is not a full address like "
        "https://example.org/news\n"
    )
    assert not (workspace / "out").exists()


def test_titled_link_in_a_list_item_is_a_link(workspace: Path) -> None:
    (workspace / "r.md").write_text(
        "# A fictional launch\n\n"
        '- read [the report](https://www.example.org/report "The full report") online\n'
        "- and [the data](https://www.example.org/data)\n",
        encoding="utf-8",
    )
    code, _, err = run("render", "r.md", "--out", "out")
    assert code == 0, err
    html_text = (workspace / "out" / "email.html").read_text(encoding="utf-8")
    assert re.search(
        r'<li>read <a href="https://www.example.org/report" title="The full report"[^>]*>'
        r"the report</a> online</li>",
        html_text,
    )
    text = (workspace / "out" / "email.txt").read_text(encoding="utf-8")
    assert "https://www.example.org/report" in text.splitlines()


@pytest.mark.parametrize(
    ("markup", "message"),
    [
        (
            '<a href="javascript:void(0)">x</a>',
            "<a href> points to 'javascript:void(0)'",
        ),
        (
            '<a href="{{ recipient.outlet }}">x</a>',
            "<a href> points to '{{ recipient.outlet }}'",
        ),
        (
            '<img src="data:image/gif;base64,R0lGOD">',
            "<img src> points to 'data:image/gif;base64,R0lGOD'",
        ),
    ],
    ids=["javascript", "scheme-from-a-list", "data-image"],
)
def test_template_link_that_cannot_be_sent(
    example_path: Path, workspace: Path, markup: str, message: str
) -> None:
    templates = workspace / "templates" / "email"
    templates.mkdir(parents=True)
    shipped = (bundled("templates") / "email" / "press-release.html.j2").read_text("utf-8")
    (templates / "press-release.html.j2").write_text(
        shipped.replace("</body>", f"{markup}\n</body>"), encoding="utf-8"
    )
    code, _, err = run("render", str(example_path), "--out", "out")
    assert code == 1
    assert err == (
        f"Error: {Path('templates/email/press-release.html.j2')}: {message}: only http, https "
        "and mailto links (and http(s) images) can be sent\n"
    )
    assert not (workspace / "out").exists()


def test_release_over_2_mb_is_refused_in_one_line(workspace: Path) -> None:
    (workspace / "big.md").write_text("# Big\n\n" + "x" * (2 * 1024 * 1024), encoding="utf-8")
    code, out, err = run("render", "big.md", "--out", "out")
    assert code == 1
    assert out == ""
    assert err == (
        "Error: big.md: the release is 2,097,159 bytes; a release may be at most 2 MB "
        "(2,097,152 bytes) of Markdown\n"
    )
    assert not (workspace / "out").exists()


def test_recipient_field_lost_while_inlining_is_refused(
    example_path: Path, workspace: Path
) -> None:
    templates = workspace / "templates" / "email"
    templates.mkdir(parents=True)
    shipped = (bundled("templates") / "email" / "press-release.html.j2").read_text("utf-8")
    # premailer rewrites the stylesheet and drops its comments, and the field with them.
    (templates / "press-release.html.j2").write_text(
        shipped.replace("<style>", "<style>\n/* for {{ recipient.email }} */"), encoding="utf-8"
    )
    code, _, err = run("render", str(example_path), "--out", "out")
    assert code == 1
    assert err == (
        f"Error: {Path('templates/email/press-release.html.j2')}: inlining the CSS lost the "
        "recipient field(s) email; nothing was written\n"
    )
    assert not (workspace / "out").exists()


def test_contact_phones_become_tel_links(workspace: Path) -> None:
    (workspace / "r.md").write_text(
        "# A fictional launch\n\nBody.\n\n**Press contact**\n\n"
        "Jane Roe – (+33) 1 23 45 67 89 – jane.roe@example.org\n\n"
        "Jo Poe – +33\u00a06\u00a012\u00a034\u00a056\u00a078\n",
        encoding="utf-8",
    )
    code, _, err = run("render", "r.md", "--out", "out")
    assert code == 0, err
    links = _links_in((workspace / "out" / "email.html").read_text(encoding="utf-8"))
    assert "tel:+33)123456789" in links
    assert "tel:+33612345678" in links
    assert "mailto:jane.roe@example.org" in links
