"""The SMTP channel quotes MAIL FROM and RCPT TO addresses exactly as smtplib does."""

from __future__ import annotations

import smtplib

from hypothesis import example, given, settings
from hypothesis import strategies as st

from distribute.channels.smtp import _quoted

GOOD = list("aZ09._+-")
ODD = list("\"'<>() ,;:\\[]é=?!#%~\t@")
# Mostly the fast path's own characters, with a near-miss now and then (quotes, brackets, a
# comment, a space, an accent, a second @), on either side of the @ or as a whole.
chars = st.sampled_from(GOOD * 10 + ODD)
parts = st.text(chars, max_size=12)
addresses = st.builds(lambda local, domain: f"{local}@{domain}", parts, parts) | st.text(chars)


@settings(max_examples=3000)
@given(address=addresses)
@example(address="j.doe@example.com")
@example(address=".j..doe.@example..com.")
@example(address="j@-example-.com")
@example(address="@example.com")
@example(address="jo@")
@example(address="a@b@c")
@example(address="<jo@example.com>")
@example(address="Jo <jo@example.com>")
@example(address="jo@example.com(Jo)")
def test_an_address_is_quoted_as_smtplib_quotes_it(address: str) -> None:
    assert _quoted(address) == smtplib.quoteaddr(address)
