"""The fast check of plain addresses says exactly what email_validator says."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st

from distribute import recipients
from distribute.recipients import address_problem, read_lists

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"
# Characters that are not atext but turn up in lists, each making a near-miss.
NEAR = '. "@<>()[],;:\\\t\x00\x7fé＠'

atoms = st.text(alphabet=ATEXT, min_size=1, max_size=12)
locals_ = st.one_of(
    st.lists(atoms, min_size=1, max_size=4).map(".".join),
    st.text(alphabet=ATEXT + NEAR, max_size=16),
    st.text(alphabet=ATEXT, min_size=60, max_size=250),
    st.builds(lambda a, b: f'"{a}"{b}', atoms, st.sampled_from(["", "x", "."])),
)
labels = st.one_of(
    st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True),
    st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=10),
    st.text(alphabet=string.ascii_lowercase, min_size=58, max_size=66),
    st.sampled_from(["xn--bcher-kva", "XN--80AK6AA92E", "xn--", "-a", "a-", "", "ß", "münchen"]),
)
TLDS = "org com COM fr test localhost invalid onion local arpa 123 a1 1a example xn--p1ai i TEST"
tlds = st.one_of(st.sampled_from(TLDS.split()), labels)
domains = st.builds(lambda ls, tld: ".".join([*ls, tld]), st.lists(labels, max_size=5), tlds)
good_labels = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,10}[A-Za-z0-9])?", fullmatch=True)
plain = st.builds(
    lambda local, ls, tld: f"{local}@{'.'.join([*ls, tld])}",
    st.lists(atoms, min_size=1, max_size=3).map(".".join),
    st.lists(good_labels, min_size=1, max_size=3),
    st.sampled_from(["org", "com", "fr", "COM", "io", "museum"]),
)


@st.composite
def near_misses(draw: st.DrawFn) -> str:
    """A plain address with one character inserted, replaced or removed."""
    address = draw(plain)
    at = draw(st.integers(0, len(address)))
    char = draw(st.sampled_from(NEAR + "-.@_1Aa"))
    how = draw(st.sampled_from(["insert", "replace", "remove"]))
    if how == "insert":
        return address[:at] + char + address[at:]
    if how == "replace":
        return address[:at] + char + address[at + 1 :]
    return address[:at] + address[at + 1 :]


addresses = st.one_of(
    plain,
    near_misses(),
    st.builds(lambda local, domain: f"{local}@{domain}", locals_, domains),
    st.builds(lambda local, domain: f"{local}@{domain}.", locals_, domains),
    st.text(alphabet=ATEXT + NEAR, max_size=30),
)


def full_check(address: str) -> str | None:
    """What address_problem said before the fast path: email_validator on every address."""
    if not address:
        return "empty email"
    if "=?" in address and (problem := recipients.header_text_problem(address)):
        return f"invalid address {address!r}: it {problem}"
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"invalid address {address!r}: {exc}"
    return None


@settings(max_examples=3000, deadline=None)
@given(addresses)
@example("jo@example.org")
@example("a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 61 + ".org")  # 254
@example("a" * 65 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 61 + ".org")  # 255
@example("jo@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + "." + "e" * 57 + ".org")
@example("jo..doe@example.org")
@example(".jo@example.org")
@example("jo.@example.org")
@example("jo@example..org")
@example("jo@-example.org")
@example("jo@example.123")
@example("jo@localhost")
@example("jo@mail.test")
@example("jo@xn--bcher-kva.example")
# 254 characters as written, longer in UTF-8 once the punycode domain is read as Unicode.
@example("a" * 223 + "@xn--fiqaaaaaaaaaaaaaaaaaaa.org")
@example("postmaster@example.org")
@example("Jo Doe <jo@example.org>")
@example("jo@ex_ample.org")
@example("jo@@example.org")
def test_plain_addresses_are_judged_as_email_validator_judges_them(address: str) -> None:
    if recipients._plainly_valid(address):
        validate_email(address, check_deliverability=False)  # raises if the fast path lied
    assert address_problem(address) == full_check(address)


def test_a_list_checks_each_domain_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Addresses at a domain already accepted are not run through email_validator again."""
    checked: list[str] = []

    def counting(address: str, **options: object) -> object:
        checked.append(address)
        return validate_email(address, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(recipients, "validate_email", counting)
    recipients._accepted_domain.cache_clear()
    domains = ["example.org", "example.com", "presse.example.fr"]
    rows = "".join(f"j.{n}@{domains[n % 3]}\n" for n in range(300))
    path = tmp_path / "desk.csv"
    path.write_text("email\n" + rows + "bad..dots@example.org\n", encoding="utf-8")

    audience = read_lists([path], set())

    assert len(audience.recipients) == 300
    [problem] = audience.problems
    assert (problem.line, problem.reason) == (
        302,
        "invalid address 'bad..dots@example.org': "
        "An email address cannot have two periods in a row.",
    )
    assert sorted(checked) == sorted(
        ["a@example.org", "a@example.com", "a@presse.example.fr", "bad..dots@example.org"]
    )
