"""Reading the one-time link's pages in tests: their headers, checked exactly, and the few
elements the tests look at (by id, as a browser test would)."""

from __future__ import annotations

import base64
import html
import re

import httpx

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "x-robots-tag": "noindex, nofollow",
    "content-security-policy": CSP,
}


def assert_page(response: httpx.Response, status: int) -> str:
    """The page's HTML, once its status and every security header are as they must be."""
    assert response.status_code == status, response.text
    for name, value in PAGE_HEADERS.items():
        assert response.headers[name] == value, name
    return response.text


def _inner(page: str, pattern: str) -> str | None:
    found = re.search(pattern, page, re.S)
    return None if found is None else html.unescape(found.group(1)).strip()


def heading(page: str) -> str | None:
    return _inner(page, r"<h1>(.*?)</h1>")


def by_id(page: str, element_id: str) -> str | None:
    """The text of the element with this id (one with no child elements)."""
    return _inner(page, rf'id="{re.escape(element_id)}"[^>]*>([^<]*)<')


def alert(page: str) -> str | None:
    return _inner(page, r'<p class="error" role="alert">(.*?)</p>')


def reason(page: str) -> str | None:
    return _inner(page, r'<section id="refusal" data-reason="([^"]+)">')


def lang(page: str) -> str | None:
    return _inner(page, r'<html lang="([^"]+)">')


def password_of(page: str) -> str:
    found = by_id(page, "password")
    assert found is not None, "no password on the page"
    return found


def download(page: str, element_id: str) -> tuple[str, str, bytes]:
    """A download link's file name, media type and content."""
    found = re.search(rf'<a id="{element_id}" class="button" href="data:([^;"]+);base64,'
                      r'([A-Za-z0-9+/=]+)" download="([^"]+)">', page)
    assert found is not None, element_id
    return html.unescape(found.group(3)), found.group(1), base64.b64decode(found.group(2))


def install_order(page: str) -> list[str]:
    return re.findall(r'<section id="install-([a-z]+)" class="install">', page)


def no_key_material(text: str) -> None:
    assert "data:application" not in text and 'id="password"' not in text
    assert "UEsDB" not in text and "PRIVATE KEY" not in text  # no zip in base64, no PEM key
