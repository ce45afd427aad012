"""Staff roles: doctors and admins read cases; operators and admins edit the prompts."""

from enum import StrEnum


class Role(StrEnum):
    """What a staff member may do."""

    DOCTOR = "doctor"
    OPERATOR = "operator"
    ADMIN = "admin"


CLINICIANS = frozenset({Role.DOCTOR, Role.ADMIN})
PROMPT_EDITORS = frozenset({Role.OPERATOR, Role.ADMIN})
ADMINS = frozenset({Role.ADMIN})
