"""Interactive Brokers: the TWS API wire protocol and a simulated gateway for paper sessions."""
