"""Tools for testing an application against real parts: a local sqld (started on loopback and
stopped by whoever starts it) and a TCP proxy that adds delay, bandwidth limits and faults
between a client and a server."""

from tiered.devserver import SqldCluster, SqldProcess, find_sqld, free_port
from tiered.netproxy import TcpProxy

__all__ = ["SqldCluster", "SqldProcess", "TcpProxy", "find_sqld", "free_port"]
