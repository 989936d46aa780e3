"""Test-wide settings: unit tests never touch the network beyond loopback."""
