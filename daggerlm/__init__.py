"""daggerlm: DAgger for multi-turn LLM software-engineering agents.

The library holds all domain logic and never imports Prefect; `tasks/` and `flows/` wrap it.
"""

import os

# mini-swe-agent prints a banner on import; our CLI owns the terminal.
os.environ.setdefault("MSWEA_SILENT_STARTUP", "1")

__version__ = "0.1.0"
