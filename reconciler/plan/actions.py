"""The one closed set of actions shared by planner, renderers and executor."""

from __future__ import annotations

import enum


class Action(str, enum.Enum):
    NOOP = "no-op"
    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"

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
            case Action.REPLACE:
                return "-/+"
            case Action.DELETE:
                return "-"

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
            case Action.REPLACE:
                return "replaced"
            case Action.DELETE:
                return "destroyed"
