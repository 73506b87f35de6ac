"""netprobe: prove that cluster hosts reach each other through their firewalls."""

__version__ = "0.1.0"
