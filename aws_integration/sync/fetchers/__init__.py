"""Reading AWS: one function per scope (account × region × service), run on worker
threads, each returning a ScopeResult and never touching the database.

The full sync, the targeted refresh and the benchmark's bare listing all call these.
"""
