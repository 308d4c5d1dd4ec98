"""semnet: a networked testbed for semantic image communication under packet loss."""

__version__ = "0.1.0"
