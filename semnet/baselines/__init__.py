"""Classical baselines (JPEG, WebP, JPEG 2000) sent through the same packet path as the semantic
codecs, optionally behind packet-level erasure FEC, at equal bytes on the wire."""
