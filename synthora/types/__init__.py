"""Value types shared by every part of Synthora."""

from synthora.types.enums import MessageRole, ModelBackendType, NodeType
from synthora.types.node import Node

__all__ = ["MessageRole", "ModelBackendType", "Node", "NodeType"]
