"""The access workflow's long-running loops, run by every task cluster (config.loops)."""

from config.loops import Loop

LOOPS = [Loop(name="grant-engine", func="access.engine.run")]
