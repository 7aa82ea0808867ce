"""The one closed set of actions shared by planner, renderers and executor."""

from __future__ import annotations

import enum


class Action(enum.StrEnum):
    NOOP = "no-op"
    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    CREATE_THEN_DELETE = "create-then-delete"  # replace: the successor exists before the old one goes
    DELETE_THEN_CREATE = "delete-then-create"  # replace: AWS allows only one at a time
    DELETE = "delete"
    ROTATE = "rotate"  # timed: a credential or key material is due for rotation
    REVOKE = "revoke"  # timed: a lease or grant has expired

    @classmethod
    def _missing_(cls, value: object) -> Action | None:
        """Plan files saved before the two kinds of replace: ``replace`` created first."""
        return cls.CREATE_THEN_DELETE if value == "replace" else None

    @property
    def symbol(self) -> str:
        match self:
            case Action.NOOP:
                return " "
            case Action.CREATE:
                return "+"
            case Action.READ:
                return "<="
            case Action.UPDATE:
                return "~"
            case Action.CREATE_THEN_DELETE:
                return "+/-"
            case Action.DELETE_THEN_CREATE:
                return "-/+"
            case Action.DELETE:
                return "-"
            case Action.ROTATE | Action.REVOKE:
                return "!"

    @property
    def verb(self) -> str:
        match self:
            case Action.NOOP:
                return "unchanged"
            case Action.CREATE:
                return "created"
            case Action.READ:
                return "read into state"
            case Action.UPDATE:
                return "updated in place"
            case Action.CREATE_THEN_DELETE:
                return "replaced (the new one created before the old one is destroyed)"
            case Action.DELETE_THEN_CREATE:
                return "replaced (the old one destroyed before the new one is created)"
            case Action.DELETE:
                return "destroyed"
            case Action.ROTATE:
                return "rotated"
            case Action.REVOKE:
                return "revoked"

    @property
    def replaces(self) -> bool:
        """Whether the object is replaced by a new one (either order)."""
        match self:
            case Action.CREATE_THEN_DELETE | Action.DELETE_THEN_CREATE:
                return True
            case Action.NOOP | Action.CREATE | Action.READ | Action.UPDATE | Action.DELETE | Action.ROTATE \
                    | Action.REVOKE:
                return False

    @property
    def timed(self) -> bool:
        """Whether time, not the manifests, asks for it (a kind's ``timed`` hook)."""
        match self:
            case Action.ROTATE | Action.REVOKE:
                return True
            case Action.NOOP | Action.CREATE | Action.READ | Action.UPDATE | Action.CREATE_THEN_DELETE \
                    | Action.DELETE_THEN_CREATE | Action.DELETE:
                return False
