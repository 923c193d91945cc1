"""`Node`: who is speaking, and inside whom.

A node is a frozen value with a parent link, so the whole ancestor chain travels inside every
event and its readable path (``agent:assistant/model:ChatBackend``) can be rebuilt from the log
alone, without a registry of live objects.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from synthora.types.enums import NodeType

__all__ = ["Node"]


class Node(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """A participant of a conversation: an agent, a tool, a model backend.

    Nodes compare by value, so two `Node(name="planner", type=NodeType.AGENT)` built in different
    places are the same node, and a scope recognises itself in a backend's ancestry.
    """

    name: str
    type: NodeType
    parent: Node | None = None

    @property
    def ancestors(self) -> tuple[Node, ...]:
        """The chain from the root down to this node's parent."""
        chain: list[Node] = []
        node = self.parent
        while node is not None:
            chain.append(node)
            node = node.parent
        return tuple(reversed(chain))

    @property
    def segment(self) -> str:
        """This node's own part of a path: ``type:name``."""
        return f"{self.type.value}:{self.name}"

    @property
    def path(self) -> str:
        """The readable path from the root, e.g. ``agent:assistant/model:ChatBackend``."""
        return "/".join(node.segment for node in self._lineage())

    def child(self, name: str, type: NodeType) -> Node:
        """A node whose parent is this one."""
        return Node(name=name, type=type, parent=self)

    def within(self, ancestor: Node | None) -> Node:
        """This node placed under `ancestor`, unless its chain already passes through it.

        A run inside ``scope(planner)`` whose backend was built with ``source=planner`` keeps
        its path ``agent:planner/model:…``; a backend from elsewhere is grafted under the scope.
        """
        if ancestor is None or any(_same_node(n, ancestor) for n in self._lineage()):
            return self
        return self._regraft(ancestor)

    def _regraft(self, root: Node) -> Node:
        parent = root if self.parent is None else self.parent._regraft(root)
        return Node(name=self.name, type=self.type, parent=parent)

    def _lineage(self) -> Iterator[Node]:
        yield from self.ancestors
        yield self

    def __str__(self) -> str:
        return self.path


def _same_node(a: Node, b: Node) -> bool:
    """Equal by own identity (name and type), whatever their ancestors: scopes nest by name."""
    return a.name == b.name and a.type == b.type
