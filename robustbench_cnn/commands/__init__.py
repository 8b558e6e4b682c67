"""Layer 7: the command modules of ``rbc`` (one per command group); ``cli.py`` assembles them."""
