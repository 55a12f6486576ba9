"""``locker-ctl dashboard``: a live fleet view over MQTT, served to a browser.

The fleet state is built from the lockers' retained ``status`` and ``compartments``
messages, their ``events`` stream and ``telemetry``; the page gets it as one snapshot and then
incremental batches over server-sent events. Actions go through the same contract and
:class:`~locker_agent.ctl.client.FleetClient` as ``locker-ctl send``.
"""
