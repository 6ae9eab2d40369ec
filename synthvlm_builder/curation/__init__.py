"""Caption curation: sources (readers), text filters, and the caption stage that runs them and
counts the funnel."""
