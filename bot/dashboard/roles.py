"""Staff roles: doctors and admins read cases; operators do not."""

from enum import StrEnum


class Role(StrEnum):
    """What a staff member may do."""

    DOCTOR = "doctor"
    OPERATOR = "operator"
    ADMIN = "admin"


CLINICIANS = frozenset({Role.DOCTOR, Role.ADMIN})
