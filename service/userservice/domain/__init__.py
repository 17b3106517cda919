"""The rules of the product, free of I/O: entities, validation, filters, page tokens, errors, events."""
