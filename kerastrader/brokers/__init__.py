"""Interactive Brokers store, broker and live feed (paper trading): see the paper-trading issue."""
