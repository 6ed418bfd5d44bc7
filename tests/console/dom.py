"""A console page read as a browser reads it (a small tree from ``html.parser``), so that a
test asks for an element by id, class or attribute and compares its text exactly."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The text inside, whitespace runs made one space, trimmed."""
        parts: list[str] = []
        for child in self.children:
            parts.append(child if isinstance(child, str) else f" {child.text} ")
        return " ".join("".join(parts).split())

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def all(self, tag: str | None = None, *, cls: str | None = None,
            **attrs: str | None) -> list[Node]:
        """Every element below of ``tag`` with class ``cls`` (or ``class_``) and the
        attributes given (``None``: present with any value; ``data_line`` stands for
        ``data-line``)."""
        if "class_" in attrs:
            cls = attrs.pop("class_")
        found = []
        for child in self.children:
            if isinstance(child, str):
                continue
            if ((tag is None or child.tag == tag) and (cls is None or cls in child.classes)
                    and all(child.attrs.get(k.replace("_", "-")) == v if v is not None
                            else k.replace("_", "-") in child.attrs
                            for k, v in attrs.items())):
                found.append(child)
            found.extend(child.all(tag, cls=cls, **attrs))
        return found

    def one(self, tag: str | None = None, *, cls: str | None = None,
            **attrs: str | None) -> Node:
        found = self.all(tag, cls=cls, **attrs)
        assert len(found) == 1, f"{len(found)} elements {tag} {cls} {attrs}"
        return found[0]

    def by_id(self, id_: str) -> Node:
        return self.one(id=id_)

    def has_id(self, id_: str) -> bool:
        return bool(self.all(id=id_))

    def value_of(self, id_: str) -> str:
        """A form field's value as the browser would send it (a select's selected option, a
        textarea's text, an input's value)."""
        element = self.by_id(id_)
        if element.tag == "select":
            options = element.all("option")
            chosen = [o for o in options if "selected" in o.attrs] or options[:1]
            return chosen[0].attrs.get("value", "") if chosen else ""
        if element.tag == "textarea":
            return "".join(c for c in element.children if isinstance(c, str))
        return element.attrs.get("value", "")


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v if v is not None else "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root
