"""Pipeline: frame -> datagrams (sender side), datagrams -> frame (receiver side), offline chain.

The daemons and the offline runner share every piece here; only the sockets differ.
"""
