"""Client-side encryption of repository objects in the age format (docs/encryption.md).

``age`` writes and reads age-encryption.org/v1 files (X25519 recipients, ChaCha20-Poly1305
STREAM) as streams in bounded memory; ``keyring`` turns the configuration into the keys a
process may use; ``bech32`` encodes the keys as age prints them.
"""
