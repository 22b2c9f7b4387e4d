"""cschat: a self-hosted live customer-service chat server for small online shops."""

__version__ = "0.1.0"
