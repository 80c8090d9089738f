"""The AWS app's long-running loops, run by every task cluster (config.loops)."""

from config.loops import Loop

LOOPS = [Loop(name="events-poller", func="aws_integration.events.polling.run")]
