"""A page's elements, read with the standard library's HTML parser: enough to ask for an
element by id, by tag and attributes, and for its text, as a browser test would."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The text inside, whitespace runs made one space, trimmed."""
        return " ".join("".join(self._texts()).split())

    def _texts(self) -> Iterator[str]:
        for child in self.children:
            if isinstance(child, str):
                yield child
            else:
                yield from child._texts()

    def walk(self) -> Iterator[Element]:
        for child in self.children:
            if isinstance(child, Element):
                yield child
                yield from child.walk()

    def all(self, tag: str | None = None, **attrs: str | None) -> list[Element]:
        """Descendants with ``tag`` whose attributes are as given (``class_`` for class,
        matched as one of the element's classes; None: the attribute is present)."""
        found = []
        for element in self.walk():
            if tag is not None and element.tag != tag:
                continue
            if all(_matches(element, name.rstrip("_").replace("_", "-")
                            if name != "class_" else "class", value)
                   for name, value in attrs.items()):
                found.append(element)
        return found

    def one(self, tag: str | None = None, **attrs: str | None) -> Element:
        found = self.all(tag, **attrs)
        assert len(found) == 1, f"{len(found)} elements {tag} {attrs}"
        return found[0]

    def by_id(self, ident: str) -> Element:
        return self.one(id=ident)

    def has_id(self, ident: str) -> bool:
        return bool(self.all(id=ident))

    def value_of(self, ident: str) -> str:
        """A form field's value as the browser would send it (a select's selected option, a
        textarea's text, an input's value)."""
        element = self.by_id(ident)
        if element.tag == "select":
            chosen = [o for o in element.all("option") if "selected" in o.attrs]
            return chosen[0].attrs.get("value", "") if chosen else (
                element.all("option")[0].attrs.get("value", ""))
        if element.tag == "textarea":
            return "".join(c for c in element.children if isinstance(c, str))
        return element.attrs.get("value", "")


def _matches(element: Element, name: str, value: str | None) -> bool:
    if name not in element.attrs:
        return False
    if value is None:
        return True
    if name == "class":
        return value in element.attrs["class"].split()
    return element.attrs[name] == value


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, {n: v or "" for n, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Element:
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root
