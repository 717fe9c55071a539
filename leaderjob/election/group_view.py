"""What a group's caller reads of it: the phase, our keys and their revisions (the tokens),
what rode along with the confirmations, the lease, the leases left to revoke, the last contact
with etcd. Read only; :class:`~leaderjob.election.group.Group` is built on it and keeps the
parts these read.
"""

from __future__ import annotations

from collections.abc import Mapping

from leaderjob.election.candidacies import Candidacies
from leaderjob.election.confirm_read import ConfirmRead, Reading
from leaderjob.election.group_lease import GroupLease
from leaderjob.election.machine import Machine, Phase


class GroupView:
    """The read side of a group (the group sets these attributes)."""

    machine: Machine
    candidacies: Candidacies
    reads: ConfirmRead
    lease: GroupLease

    @property
    def phase(self) -> Phase:
        return self.machine.phase

    @property
    def keys(self) -> Mapping[str, str]:
        """Our key per candidacy on the current lease."""
        return self.candidacies.keys

    @property
    def revisions(self) -> Mapping[str, int]:
        """Our key's create revision per candidacy on the current lease."""
        return self.candidacies.revisions

    @property
    def readings(self) -> Mapping[str, Reading]:
        """Per job that leads, the newest reading of its :meth:`read_along` prefix."""
        return self.reads.readings

    @property
    def shared_readings(self) -> Mapping[str, Reading]:
        """Per name, the newest reading of its :meth:`read_while_leading` prefix."""
        return self.reads.shared_readings

    @property
    def lease_id(self) -> int | None:
        return None if self.machine.lease is None else self.machine.lease.lease_id

    def leading(self) -> list[str]:
        return self.machine.leading()

    @property
    def to_revoke(self) -> list[int]:
        return self.lease.to_revoke

    @property
    def last_contact(self) -> float | None:
        return self.lease.last_contact
