"""Input built to break distribute gets one clear line naming the file (and line) and exit 1.

Each case once ended in a traceback (MemoryError, RecursionError, OverflowError), or worse,
in a process that ate the machine's memory; all go through the command line.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from distribute.cli import cli
from distribute.config import bundled
from distribute.errors import ReleaseError
from distribute.release import parse_release

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def alias_bomb() -> str:
    """Nine levels of nine aliases: 387 million strings once turned into text."""
    levels = ['&a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 9):
        levels.append(f"&a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return "title: [" + ", ".join(levels) + "]"


@pytest.mark.parametrize(
    ("front_matter", "line", "message"),
    [
        (alias_bomb(), 2, "front matter cannot use YAML anchors or aliases (&name, *name)"),
        (
            "title: &t A headline\nsubtitle: *t",
            2,
            "front matter cannot use YAML anchors or aliases (&name, *name)",
        ),
        ("title: " + "[" * 3000, 2, "front matter is nested more than 10 levels deep"),
        ("title: " + "{a: " * 3000, 2, "front matter is nested more than 10 levels deep"),
        (
            "title: T\nhashtags:\n" + "".join(" " * n + "- \n" for n in range(200)),
            13,
            "front matter is nested more than 10 levels deep",
        ),
        ("title: {a: b}", 2, "title must be text"),
    ],
    ids=["alias-bomb", "alias", "brackets", "braces", "block-nesting", "mapping-title"],
)
def test_hostile_front_matter(workspace: Path, front_matter: str, line: int, message: str) -> None:
    (workspace / "r.md").write_text(f"---\n{front_matter}\n---\n\nBody.\n", encoding="utf-8")
    code, out, err = run("render", "r.md", "--out", "out")
    assert (code, out) == (1, "")
    assert err == f"Error: r.md:{line}: {message}\n"
    assert not (workspace / "out").exists()


def test_a_number_too_long_for_python_stays_text(workspace: Path) -> None:
    # int() refuses more than 4,300 digits; front matter never turns text into numbers.
    digits = "1" * 5000
    (workspace / "r.md").write_text(
        f"---\ntitle: A headline\nsubtitle: {digits}\nhashtags: [2027, 0x1F]\n---\n\nBody.\n",
        encoding="utf-8",
    )
    code, _, err = run("render", "r.md", "--out", "out")
    assert code == 0, err
    text = (workspace / "out" / "email.txt").read_text(encoding="utf-8")
    assert digits in text
    assert "#2027 #0x1F" in (workspace / "out" / "posts" / "x.json").read_text(encoding="utf-8")


@pytest.fixture
def campaign_ws(workspace: Path) -> Path:
    shutil.copytree(ROOT / "recipients", workspace / "recipients")
    shutil.copy(ROOT / "releases" / "hydrogen.md", workspace / "hydrogen.md")
    (workspace / "distribute.toml").write_text(
        '[paths]\nrecipients = "recipients"\n', encoding="utf-8"
    )
    return workspace


def test_recursive_macro_in_a_subject(campaign_ws: Path) -> None:
    (campaign_ws / "c.toml").write_text(
        'name = "launch"\nrelease = "hydrogen.md"\n\n[[email]]\nname = "desk"\n'
        'lists = ["science-press"]\nat = "2027-03-10 08:00"\n'
        'subject = "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}"\n',
        encoding="utf-8",
    )
    code, _, err = run("send", "c.toml")
    assert code == 1
    assert err == (
        "Error: c.toml:8: [[email]] 'desk': subject: template error: endless recursion "
        "(a macro that calls itself, or a template that includes itself)\n"
    )
    assert not (campaign_ws / "outbox").exists()


def _override(workspace: Path, name: str, text: str) -> Path:
    folder = workspace / "templates" / "email"
    folder.mkdir(parents=True, exist_ok=True)
    for shipped in (bundled("templates") / "email").iterdir():
        if not (folder / shipped.name).exists():
            shutil.copy(shipped, folder / shipped.name)
    (folder / name).write_text(text, encoding="utf-8")
    return folder / name


def test_template_that_includes_itself(workspace: Path, example_path: Path) -> None:
    path = _override(
        workspace, "press-release.txt.j2", 'Hello\n{% include "email/press-release.txt.j2" %}\n'
    )
    code, out, err = run("render", str(example_path), "--out", "out")
    assert (code, out) == (1, "")
    assert err == (
        f"Error: {path}:2: template error: endless recursion (a macro that calls itself, "
        "or a template that includes itself)\n"
    )
    assert not (workspace / "out").exists()


def test_template_nested_too_deeply_to_compile(workspace: Path, example_path: Path) -> None:
    path = _override(
        workspace, "press-release.txt.j2", "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}"
    )
    code, _, err = run("render", str(example_path), "--out", "out")
    assert code == 1
    assert err == f"Error: {path}: template is nested too deeply for Jinja to compile\n"


def test_template_asking_for_too_much_memory(workspace: Path, example_path: Path) -> None:
    path = _override(workspace, "press-release.txt.j2", "A\n{{ 'x' * 10 ** 19 }}\n")
    code, _, err = run("render", str(example_path), "--out", "out")
    assert code == 1
    assert err == f"Error: {path}:2: template failed: a value is too large to compute\n"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("[smtp]\ntimeout = 1e300\n", "[smtp] timeout must be at most 3600, not 1e+300"),
        ("[smtp]\nretry_delay = 1e300\n", "[smtp] retry_delay must be at most 3600, not 1e+300"),
        ("[smtp]\nmax_retries = 100000\n", "[smtp] max_retries must be at most 10, not 100000"),
        (
            "[smtp]\nrate = 1e-300\n",
            "[smtp] rate must be at least one message an hour (1/3600), not 1e-300",
        ),
        ("[x]\ntimeout = 1e300\n", "[x] timeout must be at most 3600, not 1e+300"),
    ],
    ids=["smtp-timeout", "retry-delay", "max-retries", "rate", "x-timeout"],
)
def test_numbers_too_large_for_the_clock(campaign_ws: Path, settings: str, message: str) -> None:
    config = campaign_ws / "distribute.toml"
    config.write_text(config.read_text(encoding="utf-8") + settings, encoding="utf-8")
    shutil.copy(ROOT / "releases" / "hydrogen.toml", campaign_ws / "hydrogen.toml")
    code, out, err = run("send", "hydrogen.toml", "--live", "--step", "science-desk")
    assert (code, out) == (1, "")
    line = len(config.read_text(encoding="utf-8").splitlines())
    assert err == f"Error: {config}:{line}: {message}\n"


def test_missing_templates_folder_is_an_error(workspace: Path, example_path: Path) -> None:
    (workspace / "distribute.toml").write_text(
        '[paths]\ntemplates = "press-templates"\n', encoding="utf-8"
    )
    code, out, err = run("render", str(example_path), "--out", "out")
    assert (code, out) == (1, "")
    assert err == (
        f"Error: {workspace / 'distribute.toml'}:2: [paths] templates: "
        f"'{workspace / 'press-templates'}' is not a folder\n"
    )


# Every C0 control but tab, line breaks and the PDF page break's form feed; DEL; C1.
BODY_CONTROLS = [chr(c) for c in [*range(0x00, 0x09), *range(0x0E, 0x20), *range(0x7F, 0xA0)]]


@settings(max_examples=150, deadline=None)
@given(
    control=st.sampled_from(BODY_CONTROLS),
    before=st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs", "Zl", "Zp"])),
    paragraph=st.integers(min_value=0, max_value=2),
)
def test_a_control_character_in_a_release_names_its_line(
    control: str, before: str, paragraph: int
) -> None:
    """Never cut at a NUL by the HTML parser, never an escape sequence in a terminal: one
    error naming the release's line, wherever in the body the character sits."""
    paragraphs = ["First paragraph.", "Second paragraph.", "Third paragraph."]
    paragraphs[paragraph] += before + control
    text = "---\ntitle: A launch\n---\n\n# A launch\n\n" + "\n\n".join(paragraphs) + "\n"
    with pytest.raises(ReleaseError) as caught:
        parse_release(text, source=Path("r.md"))
    assert caught.value.format() == (
        f"r.md:{7 + 2 * paragraph}: the release holds a control character "
        f"(U+{ord(control):04X}); remove it"
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [(r'"Launch \0 now"', "U+0000"), (r'"Launch \e[2J now"', "U+001B"), (r'"a\u2028b"', "U+2028")],
    ids=["nul", "escape", "line-separator"],
)
def test_a_control_character_in_a_front_matter_value(
    workspace: Path, value: str, shown: str
) -> None:
    (workspace / "r.md").write_text(
        f"---\ntitle: Launch\nsummary: {value}\n---\n\nBody.\n", encoding="utf-8"
    )
    code, out, err = run("render", "r.md", "--out", "out")
    assert (code, out, err) == (
        1,
        "",
        f"Error: r.md:3: summary holds a control character ({shown})\n",
    )
    assert not (workspace / "out").exists()


@pytest.mark.parametrize(
    ("added", "shown"),
    [
        ('<p onclick="alert(1)">x</p>', "<p onclick> runs a script: an email cannot carry one"),
        ("<script>alert(1)</script>", "<script> runs a script: an email cannot carry one"),
        (
            '<svg><a><set attributeName="href" to="javascript:alert(1)"/></a></svg>',
            "<a href> points to 'javascript:alert(1)': only http, https and mailto links "
            "(and http(s) images) can be sent",
        ),
    ],
    ids=["handler", "script", "svg-animation"],
)
def test_a_template_with_active_content_is_refused(
    workspace: Path, example_path: Path, added: str, shown: str
) -> None:
    shipped = (bundled("templates") / "email" / "press-release.html.j2").read_text("utf-8")
    _override(workspace, "press-release.html.j2", shipped.replace("</body>", f"{added}</body>", 1))
    code, out, err = run("render", str(example_path), "--out", "out")
    assert (code, out) == (1, "")
    assert err == f"Error: templates/email/press-release.html.j2: {shown}\n"
    assert not (workspace / "out").exists()


NUMERIC_SETTINGS = [
    ("smtp", "port"),
    ("smtp", "connections"),
    ("smtp", "timeout"),
    ("smtp", "retry_delay"),
    ("smtp", "rate"),
    ("smtp", "max_retries"),
    ("x", "timeout"),
]


@settings(max_examples=200, deadline=None)
@given(
    setting=st.sampled_from(NUMERIC_SETTINGS),
    digits=st.integers(min_value=1, max_value=6000),
    sign=st.sampled_from(["", "-", "+"]),
)
def test_any_integer_in_a_setting_is_read_or_refused_in_one_line(
    tmp_path_factory: pytest.TempPathFactory,
    setting: tuple[str, str],
    digits: int,
    sign: str,
) -> None:
    """However many digits a number has, the settings load or say which line is wrong:
    no OverflowError from a float conversion, no ValueError from Python's digit limit."""
    from distribute.config import load_settings
    from distribute.errors import ConfigError

    folder = tmp_path_factory.mktemp("settings")
    section, key = setting
    (folder / "distribute.toml").write_text(
        f"# settings\n[{section}]\n{key} = {sign}{'9' * digits}\n", encoding="utf-8"
    )
    try:
        loaded = load_settings(workspace=folder)
    except ConfigError as exc:
        assert exc.format().startswith(f"{folder / 'distribute.toml'}:3: "), exc.format()
        return
    assert digits < 16 and loaded is not None


def test_a_campaign_number_too_long_for_python_is_one_line(workspace: Path) -> None:
    (workspace / "c.toml").write_text(
        f'name = "c"\nrelease = "r.md"\nsize = {"1" * 5000}\n', encoding="utf-8"
    )
    code, out, err = run("send", "c.toml")
    assert (code, out, err) == (1, "", "Error: c.toml:3: invalid TOML: a number too long to read\n")


def test_too_many_connections_is_refused(workspace: Path) -> None:
    from distribute.config import load_settings
    from distribute.errors import ConfigError

    (workspace / "distribute.toml").write_text("[smtp]\nconnections = 1000000\n", "utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(workspace=workspace)
    assert caught.value.format() == (
        f"{workspace / 'distribute.toml'}:2: [smtp] connections must be at most 100, not 1e+06"
    )
