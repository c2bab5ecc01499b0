"""The network layer under every provider and input reader: bounded decoding, the address guard
and the transports built on them. Imports nothing from the rest of the app."""
