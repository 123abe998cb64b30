"""pyfolio analytics and the report writer: run files in, report out."""
