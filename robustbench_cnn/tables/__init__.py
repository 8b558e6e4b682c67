"""Results tables: long-format pandas tables, written cell by cell, atomically."""
