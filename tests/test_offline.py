"""The suite runs offline: hub access is off and sockets may reach loopback only."""

import os
import socket


def test_hub_is_offline():
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"


def test_socket_connect_is_guarded_by_pytest_socket():
    # pytest-socket swaps in a guard that refuses any host but the allowed loopback ones before a packet
    # leaves; checking the guard is installed avoids ever dialling a real outside address from a test.
    assert "guarded_connect" in socket.socket.connect.__qualname__
