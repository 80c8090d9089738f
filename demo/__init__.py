"""The demo and its stand-ins: the stand-in AWS (a moto server) and identity provider, the
seeded organization, the demo users and app, and the commands that drive them (`demo`,
`seed_aws`, `standin_change`, `create_demo_users`).

Installed only with DEBUG (the demo and the tests); production code never imports it.
"""
