"""The wire contract between a locker and its cloud: messages, topics, signatures, tokens.

Both ends use it (the agent and ``locker-ctl``), so it imports nothing else of the package.
"""
