from access import permissions


def test_personas_have_their_roles(personas):
    assert permissions.is_admin(personas.admin)
    assert permissions.is_auditor(personas.auditor)
    assert not permissions.is_admin(personas.outsider)
    assert permissions.is_owner(personas.approver, personas.resource)
    assert permissions.is_manager_of(personas.manager, personas.requester)
