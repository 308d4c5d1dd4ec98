"""Daemons (asyncio): thin I/O shells around the pipeline — sender, proxy, receiver."""
