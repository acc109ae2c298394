from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from twitter_text import extract_urls

from distribute.cli import cli
from distribute.config import Settings, load_settings
from distribute.errors import ConfigError, TemplateError
from distribute.release import Release, load_release, parse_release
from distribute.render.social import (
    NETWORKS,
    PostSet,
    render_posts,
    shorten,
    split_text,
    weighted_length,
)

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "seeds" / "000_3b1625be7b745785.txt"
DATA = Path(__file__).resolve().parent / "data" / "social"
FRENCH = DATA / "release-fr.md"

NNBSP = "\u202f"
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"


@pytest.fixture
def seed() -> Release:
    if not SEED.is_file():
        pytest.skip("../shared/seeds is not beside this checkout")
    return load_release(SEED)


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "distribute.toml").write_text(
        '[sender]\nfrom = "Press Office <press@example.org>"\n', encoding="utf-8"
    )
    return tmp_path


@pytest.fixture
def conf(ws: Path) -> Settings:
    return load_settings(workspace=ws)


def write_template(ws: Path, name: str, source: str) -> Path:
    path = ws / "templates" / "social" / f"{name}.txt.j2"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")
    return path


def release(**fields: object) -> Release:
    defaults: dict[str, object] = {"title": "A headline"}
    return Release(**{**defaults, **fields})  # type: ignore[arg-type]


# ------------------------------------------------------------------ twitter-text conformance

# Cases of twitter-text's conformance/validate.yml (WeightedTweetsWithDiscountedEmojiCounterTest,
# the v3 configuration), rebuilt from their descriptions; ids are the descriptions.
CONFORMANCE = [
    ("Regular Tweet with url", "Hi http://test.co", 26),
    ("Just url", "http://test.co", 23),
    ("Long tweet, overflow at char index 280", "285 chars-" + "xxxxxxxxxx-" * 25, 285),
    (
        "Long tweet with url in the middle, overflow at char index 284",
        "285 chars- http://www.twitter.com/jack " + "xxxxxxxxxx-" * 24,
        299,
    ),
    (
        "Long tweet with url at the end, overflow at char index 265",
        "xxxxxxxxxx-" * 24 + " http://www.twitter.com/jack ",
        289,
    ),
    ("10 url string, no overflow", "https://www.twitter.com/aloha " * 10, 240),
    ("160 CJK char, overflow at char index 140", "故人西辞黄鹤楼，烟花三月下扬州。" * 10, 320),
    ("160 emoji char, overflow at char index 140", "\U0001f637" * 160, 320),
    ("3 latin char + 160 CJK char, overflow at char index 141", "the" + "の" * 160, 323),
    ("'Á' is normalized into 1 char", "A\u0301B", 2),
    ("שּׁ is normalized into 3 chars", "A\ufb2c", 4),
    (
        "282 chars with a normalized character within valid range but outside 280",
        "282 chars-" + "xxxxxxxxxx-" * 24 + "xxxxxA\u0301x",
        281,
    ),
    (
        "Count a mix of single byte single word, and double word unicode characters",
        "H\U0001f431\u263a" + FAMILY,
        7,
    ),
    (
        "Count unicode emoji chars inside the basic multilingual plane",
        "\U0001f637\U0001f47e\U0001f621\U0001f525\U0001f4a9",
        10,
    ),
    (
        "Count unicode emoji chars outside the basic multilingual plane with skin tone modifiers",
        "\U0001f64b\U0001f3fd\U0001f468\u200d\U0001f3a4",
        4,
    ),
    (
        "Handle General Punctuation Characters with visible spaces(u2000-200A), no ZWJ/ZWNJ",
        "This is a tweet with general punctuation characters: "
        + "".join(chr(c) for c in range(0x2000, 0x200C))
        + " ‐ ‑ ‒ – — ― ‖  ‗ ‘ ’ ‚ ‛ “ ” „ ‟ ′ ″ ‴ ‵ ‶ ‷",
        110,
    ),
    ("Handle a 64 character domain without protocol", "randomurl" * 7 + "s.com", 68),
    ("140 family emoji", FAMILY * 140, 280),
    (
        "Unicode 10.0 emoji",
        "Unicode 10.0 emoji: \U0001f92a; \U0001f9d5; \U0001f9d5\U0001f3fe; \U0001f3f4"
        "\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
        34,
    ),
    ("Unicode 9.0 emoji", "Unicode 9.0 emoji: \U0001f920; \U0001f483; \U0001f483\U0001f3fe", 29),
    ("Handle invalid characters", "ABC\u202a\uffffABC\ufffe", 12),
    (
        "Tweet text containing directional characters should be considered valid",
        "\u2066\u202ahttp://foobar.پاکستان/\u202c\u2069",
        31,
    ),
    # The rules X documents for posts, written from the v3 configuration's ranges.
    ("U+202F narrow no-break space weighs 2", f"Bonjour{NNBSP}!", 10),
    ("ellipsis and euro sign weigh 2", "Prix…€", 8),
    ("guillemets, apostrophe and no-break space weigh 1", "«\u00a0l’IMT\u00a0»", 9),
    ("combining acute on e is composed first", "publie\u0301s", 7),
    ("exactly 280 ASCII characters", "x" * 280, 280),
    ("a long path still counts 23", "https://example.org/" + "a" * 300, 23),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in CONFORMANCE], ids=[c[0] for c in CONFORMANCE]
)
def test_weighted_length_matches_twitter_text_conformance(text: str, expected: int) -> None:
    assert weighted_length(text) == expected


def test_other_networks_count_by_their_rules() -> None:
    url = "https://example.org/" + "a" * 100
    assert weighted_length(f"see {url}", "mastodon") == 4 + 23
    assert weighted_length("hi @alice@social.example.org", "mastodon") == len("hi @alice")
    assert weighted_length(f"see {url}", "bluesky") == 4 + len(url)
    assert weighted_length(FAMILY + "e\u0301" + "\U0001f1eb\U0001f1f7", "bluesky") == 3
    assert (NETWORKS["mastodon"].limit, NETWORKS["bluesky"].limit) == (500, 300)


# ------------------------------------------------------------------ the default post


def test_seed_post_fits_carries_the_url_and_reads_as_a_sentence(
    seed: Release, conf: Settings
) -> None:
    url = "https://www.imt.fr/en/2021/patents"
    posts = render_posts(seed, conf, url=url)
    assert len(posts.parts) == 1
    post = posts.parts[0]
    assert post.length == weighted_length(post.text) <= 280
    assert url in post.text
    first_line = post.text.split("\n")[0]
    assert first_line.startswith("Institut Mines-Télécom among the Top 50 patent applicants.")
    assert re.search(r"[.!?]$", first_line)
    assert not re.search(r"\*|\[|\]\(|<sup>|#{2,}", post.text)
    assert posts.warnings == []


def test_french_release_is_counted_exactly(conf: Settings) -> None:
    posts = render_posts(load_release(FRENCH), conf)
    summary = load_release(FRENCH).summary
    assert summary is not None and summary.count(NNBSP) == 4
    # The summary: 129 code points; 4 U+202F, one "…" and one "€" weigh 2, the guillemets,
    # U+00A0, ’ and accents 1: 135. Then "\n", the URL (23), "\n", "#Innovation #Brevets" (20).
    assert weighted_length(summary) == 135
    assert (
        posts.parts[0].text
        == f"{summary}\nhttps://www.imt.fr/communique-brevets-2021\n#Innovation #Brevets"
    )
    assert posts.parts[0].length == 135 + 1 + 23 + 1 + 20


def test_headline_is_shortened_at_a_word_with_a_counted_ellipsis(conf: Settings) -> None:
    words = " ".join(f"mot{index:03d}" for index in range(80))
    posts = render_posts(release(title=words), conf, url="https://example.org/r")
    text = posts.parts[0].text
    first = text.split("\n")[0]
    assert first.endswith("…") and posts.parts[0].length <= 280
    assert re.fullmatch(r"(mot\d{3} )*mot\d{3}…", first)
    # "…" weighs 2 on X: the line is as long as it can be and no longer.
    assert weighted_length(first) + 1 + 23 <= 280 < weighted_length(first) + 1 + 23 + 7
    assert any("shortened to fit X's limit" in w for w in posts.warnings)


def test_lead_is_used_only_when_it_fits_whole(conf: Settings) -> None:
    lead_text = "**" + "A sentence of the lead that is long. " * 8 + "**"
    rel = parse_release(f"# Short title\n\n{lead_text}\n\nBody.\n")
    text = render_posts(rel, conf, url="https://example.org/r").parts[0].text
    assert text.startswith("Short title. A sentence of the lead that is long.")
    assert "…" not in text and weighted_length(text) <= 280


def test_missing_url_still_renders_with_a_warning(conf: Settings) -> None:
    posts = render_posts(release(title="News"), conf)
    assert posts.parts[0].text == "News."
    assert posts.warnings == [
        "the release has no url: the post carries no link "
        "(add 'url:' to the release's front matter)"
    ]


def test_url_option_overrides_the_front_matter(conf: Settings) -> None:
    rel = release(title="News", url="https://old.example.org/")
    text = render_posts(rel, conf, url="https://new.example.org/", text="{{ release.url }}")
    assert text.parts[0].text == "https://new.example.org/"


# ------------------------------------------------------------------ inline text, errors


def test_inline_text_is_not_html_escaped(conf: Settings) -> None:
    posts = render_posts(release(title="R&D <now>"), conf, text="{{ release.title }} & co")
    assert posts.parts[0].text == "R&D <now> & co"
    assert posts.source == "text"


def test_inline_text_undefined_variable_is_an_error(conf: Settings) -> None:
    with pytest.raises(TemplateError, match="undefined"):
        render_posts(release(), conf, text="{{ release.nope }}")


def test_over_long_post_without_thread_names_template_count_and_limit(
    ws: Path, conf: Settings
) -> None:
    path = write_template(ws, "long", "{{ 'word ' * 62 }}{{ url }}")
    with pytest.raises(TemplateError) as info:
        render_posts(release(), conf, template="long", url="https://example.org/a")
    assert str(info.value) == (
        f"{path}: post is 333 weighted characters, over X's limit of 280; "
        "shorten it or post it as a thread"
    )


def test_to_json_has_parts_with_text_and_length(conf: Settings) -> None:
    posts = render_posts(release(title="News"), conf, url="https://example.org/n")
    assert isinstance(posts, PostSet)
    assert posts.to_json() == {
        "network": "x",
        "limit": 280,
        "parts": [{"text": "News.\nhttps://example.org/n", "length": 29}],
    }


def test_character_x_refuses_is_an_error(conf: Settings) -> None:
    with pytest.raises(TemplateError, match=r"^text: post holds U\+FFFF, a character X refuses$"):
        render_posts(release(), conf, text="Bad \uffff")


def test_unknown_network_is_named(conf: Settings) -> None:
    with pytest.raises(ConfigError, match="unknown social network 'myspace'"):
        render_posts(release(), conf, network="myspace")


def test_mastodon_post_gets_its_own_limit(conf: Settings) -> None:
    text = "{{ 'word ' * 80 }}{{ url }}"
    posts = render_posts(release(), conf, network="mastodon", text=text, url="https://e.org/")
    assert (posts.network, posts.limit, posts.parts[0].length) == ("mastodon", 500, 400 + 23)
    with pytest.raises(TemplateError, match="over X's limit of 280"):
        render_posts(release(), conf, text=text, url="https://e.org/")


# ------------------------------------------------------------------ threads


def test_thread_splits_at_sentences_and_numbers_parts(conf: Settings) -> None:
    sentences = [f"Sentence {n} says something about patents and research." for n in range(12)]
    text = " ".join(sentences) + " https://example.org/x"
    posts = render_posts(release(), conf, text=text, thread=True, numbered=True)
    total = len(posts.parts)
    assert total > 1
    for index, post in enumerate(posts.parts, start=1):
        assert post.length <= 280
        assert post.text.endswith(f" {index}/{total}")
        body = post.text.removesuffix(f" {index}/{total}")
        assert body.endswith((".", "https://example.org/x"))


def test_separator_lines_make_parts(conf: Settings) -> None:
    posts = render_posts(release(), conf, text="One.\n---\nTwo {{ url }}", url="https://e.org/")
    assert [p.text for p in posts.parts] == ["One.", "Two https://e.org/"]


def test_thread_never_breaks_at_a_narrow_no_break_space(conf: Settings) -> None:
    text = " ".join(f"Phrase{NNBSP}{n}{NNBSP}: on avance{NNBSP}!" for n in range(40))
    posts = render_posts(release(), conf, text=text, thread=True)
    assert len(posts.parts) > 1
    for post in posts.parts:
        assert post.length <= 280
        assert not post.text.startswith((NNBSP, ":", "!"))
        assert post.text.endswith(f"avance{NNBSP}!")


def test_explicit_parts_are_numbered_across_the_thread(conf: Settings) -> None:
    text = "First part.\n---\n" + "Second part goes on. " * 20
    posts = render_posts(release(), conf, text=text, numbered=True)
    total = len(posts.parts)
    assert total == 3 and posts.parts[0].text == "First part. 1/3"
    assert [p.text[-3:] for p in posts.parts] == ["1/3", "2/3", "3/3"]


WORD = st.text(
    alphabet=st.sampled_from("abcdeéàxyzçœ日本😀" + NNBSP + "…,.!?"), min_size=1, max_size=12
).filter(lambda w: not w.startswith(("-",)))
URL = st.builds(
    lambda path: f"https://example.org/{path}",
    st.text(alphabet="abcdefghij0123456789/-_", min_size=0, max_size=80),
)
ENTITY = st.builds(
    lambda tag: tag, st.from_regex(r"[@#][A-Za-z][A-Za-z0-9_]{0,14}", fullmatch=True)
)
TEXTS = st.lists(st.one_of(WORD, URL, ENTITY), min_size=1, max_size=150).flatmap(
    lambda words: st.tuples(
        st.just(words), st.lists(st.sampled_from([" ", "\n", "  "]), min_size=len(words))
    )
)
BREAK = re.compile(r"[ \n]+")


@settings(deadline=None, max_examples=60)
@given(TEXTS)
def test_split_parts_fit_keep_words_in_order_and_never_break_a_url(
    case: tuple[list[str], list[str]],
) -> None:
    words, separators = case
    text = "".join(word + sep for word, sep in zip(words, separators, strict=False)).strip(" \n")
    parts = split_text(text, 280, weighted_length)
    assert all(0 < weighted_length(part) <= 280 for part in parts)
    assert [w for part in parts for w in BREAK.split(part)] == BREAK.split(text)
    urls = [u for u in words if u.startswith("https://")]
    found = [u for part in parts for u in BREAK.split(part) if u.startswith("https://")]
    assert found == urls
    assert sorted(u for part in parts for u in extract_urls(part)) == sorted(extract_urls(text))


def test_shorten_prefers_whole_sentences() -> None:
    text = "First sentence is here. Second one is a little longer than the first."
    assert shorten(text, 30, weighted_length) == "First sentence is here."
    assert shorten(text, 30, weighted_length, cut="sentence") == "First sentence is here."
    assert shorten("Alpha beta gamma delta", 13, weighted_length) == "Alpha beta…"
    assert shorten("Alpha beta", 3, weighted_length) == ""


# ------------------------------------------------------------------ command line


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_render_writes_posts_json_and_prints_counts(seed: Release, ws: Path) -> None:
    url = "https://www.imt.fr/en/2021/patents"
    code, out, err = run("render", str(SEED), "--out", "out", "--url", url)
    assert code == 0, err
    data = json.loads((ws / "out" / "posts" / "x.json").read_text(encoding="utf-8"))
    assert data["network"] == "x" and data["limit"] == 280
    [part] = data["parts"]
    assert url in part["text"] and part["length"] == weighted_length(part["text"]) <= 280
    assert f"({part['length']}/280)" in out
    assert part["text"].split("\n")[0] in out


def test_cli_render_over_long_post_exits_1(ws: Path) -> None:
    path = write_template(ws, "x", "{{ 'word ' * 62 }}{{ url }}")
    rel = ws / "release.md"
    rel.write_text("# News\n\nBody.\n", encoding="utf-8")
    code, _, err = run("render", str(rel), "--url", "https://example.org/a", "--out", "out")
    assert code == 1
    assert err == (
        f"Error: {path}: post is 333 weighted characters, over X's limit of 280; "
        "shorten it or post it as a thread\n"
    )
    assert not (ws / "out").exists()


@pytest.mark.parametrize(
    "text",
    [
        "Amélie Verdier : « Nous formerons des techniciens. »",
        "Verdier\u202f: «\u202fVraiment\u202f?\u202f»",
        "He said: “We will train technicians.”",
    ],
    ids=["guillemets-space", "guillemets-narrow-space", "english-quotes"],
)
def test_a_closing_quote_ends_the_sentence(text: str) -> None:
    from distribute.render.social import sentence

    assert sentence(text) == text


def test_thread_parts_never_start_with_a_closing_guillemet() -> None:
    from distribute.render.social import split_text

    text = "« " + "mot " * 60 + "fin. » Suite " + "mot " * 40 + "fin."
    parts = split_text(text, 280, lambda part: weighted_length(part, "x"))
    assert len(parts) == 2
    assert parts[0].endswith("fin. »")
    assert parts[1].startswith("Suite")


# ------------------------------------------------------------------ empty values, cut points


def test_a_missing_lead_prints_nothing_and_a_present_one_its_words(ws: Path) -> None:
    write_template(ws, "x", "{{ release.title }} {{ release.lead }} {{ release.subtitle }}")
    (ws / "bare.md").write_text("# Plain news\n\nA paragraph.\n", encoding="utf-8")
    (ws / "led.md").write_text("# Led news\n\n**The lead says it all.**\n\nMore.\n", "utf-8")
    for name in ("bare", "led"):
        code, _, err = run("render", f"{name}.md", "--url", "https://e.org/a", "--out", name)
        assert code == 0, err
    bare = json.loads((ws / "bare" / "posts" / "x.json").read_text(encoding="utf-8"))
    led = json.loads((ws / "led" / "posts" / "x.json").read_text(encoding="utf-8"))
    assert [p["text"] for p in bare["parts"]] == ["Plain news"]
    assert [p["text"] for p in led["parts"]] == ["Led news The lead says it all."]


def test_a_sentence_a_word_too_long_moves_whole_to_the_next_part() -> None:
    first = "The platform runs the AASM 2.6 scoring rules on every night of recordings. " * 3
    last = "Each night is then scored by two sleep technicians as the AASM 2.6 manual."
    text = (first + "Then " + "word " * 8 + last).strip()
    parts = split_text(text, 280, weighted_length, reserve=4)
    assert len(parts) == 2
    assert parts[0].endswith("recordings.")
    assert parts[1].endswith("AASM 2.6 manual.")
    assert parts[1].startswith("Then word")


CLAUSE = st.lists(
    st.text(alphabet="abcdefghijklmnop", min_size=1, max_size=10), min_size=1, max_size=12
).map(" ".join)


@settings(deadline=None, max_examples=60)
@given(st.lists(CLAUSE, min_size=2, max_size=25), st.sampled_from([",", ";", ":"]))
def test_a_long_sentence_is_cut_after_a_clause_before_a_word(clauses: list[str], mark: str) -> None:
    text = f"{mark} ".join(clauses) + "."
    parts = split_text(text, 280, weighted_length)
    assert " ".join(parts) == text
    assert all(part.endswith(mark) for part in parts[:-1])


SENTENCE = st.lists(
    st.text(alphabet="abcdefghijklmnop", min_size=1, max_size=10), min_size=1, max_size=30
).map(lambda words: " ".join(words) + st_end_marks[len(words) % len(st_end_marks)])
st_end_marks = [".", "!", "?", f"{NNBSP}!", "…", ". »"]


@settings(deadline=None, max_examples=60)
@given(st.lists(SENTENCE, min_size=1, max_size=40))
def test_parts_end_at_sentence_ends_whenever_every_sentence_fits(sentences: list[str]) -> None:
    text = " ".join(sentences)
    parts = split_text(text, 280, weighted_length)
    assert " ".join(parts) == text
    assert all(weighted_length(part) <= 280 for part in parts)
    assert all(part.endswith(tuple(st_end_marks)) for part in parts)


def test_a_sentence_longer_than_a_post_leaves_no_word_alone(conf: Settings) -> None:
    words = "the sleep laboratory scores every recording of the night with "
    sentence = "Since May " + words * 4 + "the rules of the AASM 2.6 manual."
    assert 280 < weighted_length(sentence) < 300
    posts = render_posts(release(), conf, text=sentence, thread=True, numbered=True)
    texts = [post.text for post in posts.parts]
    assert len(texts) == 2
    assert texts[1].endswith("AASM 2.6 manual. 2/2")
    assert min(len(text) for text in texts) > 100  # halves, not a part and a lone word


# A user-perceived character can be made of any number of code points: a letter under a
# pile of accents ("Zalgo" text), emoji joined by ZWJ. X weighs each code point.
HEAVY = st.builds(
    lambda base, marks, mark: base + mark * marks,
    st.sampled_from(["a", "e", "\U0001f468"]),
    st.integers(min_value=0, max_value=400),
    st.sampled_from(["\u0301", "\u0308", "\u200d\U0001f468", "\ufe0f"]),
)


@settings(deadline=None, max_examples=60)
@given(
    words=st.lists(st.one_of(HEAVY, st.sampled_from(["word", "end."])), min_size=1, max_size=8),
    network=st.sampled_from(sorted(NETWORKS)),
)
def test_a_character_heavier_than_a_post_is_refused_not_split_forever(
    words: list[str], network: str
) -> None:
    """Before: a cluster heavier than a post was cut into itself again and again, for ever."""
    net = NETWORKS[network]
    text = " ".join(words)
    try:
        parts = split_text(text, net.limit, net.counter)
    except ValueError as exc:
        assert "one character" in str(exc)
        return
    assert all(0 < net.counter(part) <= net.limit for part in parts)


def test_hard_split_never_returns_a_piece_over_the_budget() -> None:
    from distribute.render.social import _hard_split

    with pytest.raises(ValueError, match="one character"):
        _hard_split("x" + "a" + "\u0301" * 300, 280, weighted_length)


def test_a_thread_of_accent_soup_is_one_clear_error(conf: Settings) -> None:
    soup = "Launch " + "a" + "\u0301" * 300 + " today."
    with pytest.raises(TemplateError) as caught:
        render_posts(release(), conf, network="x", text=soup, thread=True)
    assert caught.value.format() == (
        "text: cannot split the post: one character ('á' and 299 more code points joined to it) "
        "weighs more than a post"
    )
