"""Pure core: wire format, quantizers, partitioners, interleaving, reassembly, impairments.

Nothing here imports sockets or torch; everything is fed bytes, arrays and clock values.
"""
