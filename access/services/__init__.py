"""The workflows of the access app, one module per concept. Each function that changes
state records its audit events (``audit.services.record_event``) inside one
``transaction.atomic()``, so a change and its event land together or not at all; pages,
the API, the admin, the user import and tasks all call them.

- ``grants``: grants and their assignments in AWS: create, revoke, extend, expire, reconcile.
- ``requests``: access requests: rules, submission, approval stages, decisions, extensions.
- ``pending_requests``: ending a request still pending (canceled, expired).
- ``rules``: request rules and their stages as owners and admins edit them.
- ``owners``: who owns a resource.
- ``roles``: the portal's roles (Admin, Auditor) given to people.
- ``usernames``: usernames for users known by their email.
- ``identity``: what the identity provider tells about a user (their OIDC subject).
- ``change_log``: snapshots and the created / updated / deleted events of edits.
"""
