"""CSS inliners: the HTML of an email with its stylesheet copied into ``style`` attributes.

Mail programs drop ``<style>`` blocks or parts of them, so each element carries its own
styles; ``@media`` rules (narrow screens, dark mode) cannot be inlined and stay in a
``<style>`` block, where the clients that read them let their ``!important`` win.

An inliner is a function from HTML to HTML. premailer is the default. css-inline (Rust)
computes the same styles more than a hundred times faster; its bytes differ, and what
differs is known (``tests/test_inline.py`` checks each element's styles agree):

* declarations are written ``name: value;`` rather than ``name:value`` joined by ``; ``,
  in the order of the rules' specificity, and colours as written (premailer's cssutils
  shortens ``#ffffff`` to ``#fff`` and quotes font names in double quotes);
* its HTML5 parser adds the ``<tbody>`` every browser adds to a table;
* it adds no ``bgcolor`` attribute beside a ``background-color`` (premailer does, for
  Outlook's Word engine, which reads ``bgcolor`` on tables and cells), and the ``@media``
  block is kept as written, before the body, instead of re-serialised at its end.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

from distribute.errors import ConfigError

Inliner = Callable[[str], str]


def premailer(html: str) -> str:
    """Inline CSS with premailer, keeping @media and dark-mode rules in a <style> block."""
    import cssutils
    from premailer import Premailer

    # cssutils reports every property it does not know (mso-hide, -webkit-...) through its
    # own logger and through warnings; neither is news to a press office.
    cssutils.log.setLevel(logging.CRITICAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inliner = Premailer(
            html,
            base_url=None,
            allow_network=False,
            allow_loading_external_files=False,
            keep_style_tags=False,
            strip_important=False,
            remove_classes=False,
            disable_validation=True,
            disable_leftover_css=False,
            cssutils_logging_level=logging.CRITICAL,
        )
        result: str = inliner.transform(pretty_print=False)
    return result


def css_inline(html: str) -> str:
    """Inline CSS with css-inline; nothing is fetched, @media rules stay in a <style> block."""
    try:
        import css_inline as rust
    except ImportError:
        raise ConfigError("css-inline is not installed: pip install css-inline") from None
    result: str = rust.inline(html, keep_at_rules=True, load_remote_stylesheets=False)
    return result


INLINERS: dict[str, Inliner] = {"premailer": premailer, "css-inline": css_inline}
